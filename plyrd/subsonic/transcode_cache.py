"""Finished transcodes of whole tracks, in the blob store, so a second play at the same settings is a file read.

A row of `transcodes` (migration 0020) maps (source blob, format, bitrate) to the blob holding the encoded bytes and
holds one reference on it (BlobStore.incref), so plyrd.storage stays the one owner of when a file is freed. The
bytes are written to the store while they stream to the first listener (`BlobStore.open_writer`) and kept only when
the whole encode completed; a listener who leaves early leaves no file and no row.

- Bounded: past `max_bytes` in total, the least recently played transcodes go first.
- Freed with their source: when the source blob is freed (its track deleted, its audio replaced and the revision
  pruned), plyrd.storage drops these rows and their references in the same transaction.
- Two first plays of one key at once both encode; the second to finish finds the row and lets its copy go (the
  bytes are the same in practice, and content addressing stores them once either way).
"""

from __future__ import annotations

import logging
import time

import aiosqlite

from ..db import Database
from ..db.queries import fetchall, fetchone
from ..storage import BlobStore, BlobWriter
from .streaming import Transcode

log = logging.getLogger("plyrd.subsonic.transcodes")

_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"
TOUCH_EVERY = 60.0  # seconds: a replay marks its row used at most this often (a write per play is not needed)


class TranscodeCache:
    def __init__(self, db: Database, blobs: BlobStore, max_bytes: int) -> None:
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes

    async def lookup(self, t: Transcode) -> str | None:
        """The blob of a finished transcode for `t`, marked as just used; None when there is none."""
        if not t.cacheable:
            return None
        row = await self.db.fetchone(
            "SELECT blob_sha256, last_used_at FROM transcodes WHERE source_sha256 = ? AND format = ? AND bitrate = ?",
            (t.source_sha256, t.format, t.bitrate))
        if row is None:
            return None
        if row["last_used_at"] < time.time() - TOUCH_EVERY:
            async with self.db.write() as conn:
                await conn.execute(
                    f"UPDATE transcodes SET last_used_at = {_NOW_SQL} "
                    "WHERE source_sha256 = ? AND format = ? AND bitrate = ?", (t.source_sha256, t.format, t.bitrate))
        return str(row["blob_sha256"])

    async def open_writer(self) -> BlobWriter:
        return await self.blobs.open_writer(max_bytes=self.max_bytes)

    async def keep(self, t: Transcode, writer: BlobWriter) -> str | None:
        """Store the complete transcode in `writer` under `t`'s key (evicting the least recently used past the bound).
        Returns the blob kept, or None when there was nothing to keep it for (the source was freed meanwhile, or a
        concurrent first play already kept one). Never raises for a cache problem: the listener already has every
        byte, so a failure here is logged and the copy dropped."""
        try:
            async with self.blobs.releasing() as released:
                blob = await writer.commit(t.mime)
                released.append(blob.sha256)
                async with self.db.write() as conn:
                    # Only while the source exists: a row for a freed source would never be dropped with it.
                    row = await fetchone(
                        conn, "INSERT INTO transcodes(source_sha256, format, bitrate, blob_sha256, size) "
                        "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM blobs WHERE sha256 = ? AND refcount > 0) "
                        "ON CONFLICT DO NOTHING RETURNING blob_sha256",
                        (t.source_sha256, t.format, t.bitrate, blob.sha256, blob.size, t.source_sha256))
                    if row is None:
                        return None
                    await self.blobs.incref(conn, blob.sha256)
                    released += await self._evict(conn, keep=t)
                return blob.sha256
        except Exception:
            log.warning("a finished transcode could not be cached", exc_info=True,
                        extra={"fields": {"source": t.source_sha256, "format": t.format, "bitrate": t.bitrate}})
            return None

    async def _evict(self, conn: aiosqlite.Connection, *, keep: Transcode) -> list[str]:
        """Drop least recently used rows (never `keep`'s) until the total fits; returns blobs left unreferenced."""
        total_row = await fetchone(conn, "SELECT coalesce(sum(size), 0) FROM transcodes")
        excess = int(total_row[0]) - self.max_bytes if total_row else 0
        released: list[str] = []
        while excess > 0:
            rows = await fetchall(
                conn, "SELECT source_sha256, format, bitrate, blob_sha256, size FROM transcodes "
                "WHERE NOT (source_sha256 = ? AND format = ? AND bitrate = ?) ORDER BY last_used_at LIMIT 32",
                (keep.source_sha256, keep.format, keep.bitrate))
            if not rows:
                break
            for r in rows:
                if excess <= 0:
                    break
                await conn.execute("DELETE FROM transcodes WHERE source_sha256 = ? AND format = ? AND bitrate = ?",
                                   (r["source_sha256"], r["format"], r["bitrate"]))
                if await self.blobs.decref(conn, r["blob_sha256"]) == 0:
                    released.append(r["blob_sha256"])
                excess -= r["size"]
        return released
