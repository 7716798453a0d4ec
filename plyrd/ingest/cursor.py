"""The durable cursor of each followed stream and its counters, in plyrd.db (`ingest_sources`).

The subscriber saves a cursor only once the handler has returned for every event up to it, in one small write that
also adds to the counters; a restart resumes from the saved cursor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..db import Database


@dataclass(slots=True)
class Progress:
    """What happened since the last save: added to the stored counters with the new cursor."""

    seen: int = 0
    kept: int = 0
    malformed: int = 0
    skipped: int = 0
    last_event_at: float | None = None

    def clear(self) -> None:
        self.seen = self.kept = self.malformed = self.skipped = 0
        self.last_event_at = None


class CursorStore:
    def __init__(self, db: Database, source: str, transport: str) -> None:
        self.db = db
        self.source = source
        self.transport = transport

    async def load(self) -> int | None:
        row = await self.db.fetchone("SELECT cursor FROM ingest_sources WHERE source = ?", (self.source,))
        return None if row is None else row["cursor"]

    async def save(self, cursor: int | None, progress: Progress) -> None:
        await self.db.execute(
            """INSERT INTO ingest_sources (source, transport, cursor, seen, kept, malformed, skipped, last_event_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
               ON CONFLICT (source) DO UPDATE SET
                 transport = ?2, cursor = ?3, seen = seen + ?4, kept = kept + ?5, malformed = malformed + ?6,
                 skipped = skipped + ?7, last_event_at = coalesce(?8, last_event_at),
                 updated_at = (julianday('now') - 2440587.5) * 86400.0""",
            (self.source, self.transport, cursor, progress.seen, progress.kept, progress.malformed,
             progress.skipped, progress.last_event_at),
        )

    async def record_error(self, error: str) -> None:
        await self.db.execute(
            """INSERT INTO ingest_sources (source, transport, last_error, last_error_at) VALUES (?1, ?2, ?3, ?4)
               ON CONFLICT (source) DO UPDATE SET last_error = ?3, last_error_at = ?4""",
            (self.source, self.transport, error[:500], time.time()),
        )


async def stored_status(db: Database) -> list[dict[str, Any]]:
    """Every stream the node has followed, with its cursor and counters (for `plyrd status`, admin pages: these
    work without the subscriber running, from the database alone)."""
    rows = await db.fetchall(
        """SELECT source, transport, cursor, seen, kept, malformed, skipped, last_event_at, last_error,
                  last_error_at, updated_at FROM ingest_sources ORDER BY source""")
    return [dict(row) for row in rows]
