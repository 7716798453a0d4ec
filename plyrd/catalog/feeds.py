"""Track listings: the latest feed (cursor pages), top tracks, an artist's tracks, a tag's tracks, your own.

Discovery feeds hide tracks carrying one of the viewer's hidden tags (default: "ai") and unlisted tracks; an
artist's page shows everything they published, whatever the viewer hides.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ..db import Database
from ..errors import InvalidInput
from ..inputs import INT64_MAX
from .tracks import TRACK_SELECT

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
DEFAULT_HIDDEN_TAGS = ["ai"]
PERIODS = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "all_time": None}


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


def parse_limit(value: Any, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"limit must be a whole number from 1 to {maximum}") from None
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be a whole number from 1 to {maximum}")
    return limit


def encode_cursor(created_at: float, track_id: int) -> str:
    raw = json.dumps([created_at, track_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, track_id = json.loads(raw)
        if not isinstance(created_at, int | float) or not isinstance(track_id, int) or isinstance(track_id, bool) \
                or not 0 <= track_id <= INT64_MAX or not math.isfinite(created_at):
            raise ValueError
        return float(created_at), track_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput("malformed cursor: pass back the next_cursor of a previous page") from None


async def hidden_tags(db: Database, did: str | None) -> list[str]:
    if did is None:
        return DEFAULT_HIDDEN_TAGS
    try:
        row = await db.fetchone("SELECT prefs FROM preferences WHERE did = ?", (did,))
    except Exception:  # the preferences table arrives with the social migration
        return DEFAULT_HIDDEN_TAGS
    if row is None:
        return DEFAULT_HIDDEN_TAGS
    tags = json.loads(row["prefs"]).get("hidden_tags", DEFAULT_HIDDEN_TAGS)
    return [t for t in tags if isinstance(t, str)]


def _hide_clause(tags: list[str]) -> tuple[str, list[Any]]:
    if not tags:
        return "", []
    marks = ",".join("?" * len(tags))
    return f" AND NOT EXISTS (SELECT 1 FROM track_tags h WHERE h.track_id = t.id AND h.tag IN ({marks}))", list(tags)


async def latest(
    db: Database,
    *,
    viewer_did: str | None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    artist_did: str | None = None,
    tag: str | None = None,
    filter_hidden: bool = True,
) -> Page:
    """Newest first, one page at a time; the cursor is the (created_at, id) of the last row seen."""
    where = ["t.status = 'ready'"]
    params: list[Any] = []
    if artist_did:
        where.append("t.artist_did = ?")
        params.append(artist_did)
    else:
        where.append("t.unlisted = 0")
    if tag:
        where.append("EXISTS (SELECT 1 FROM track_tags g WHERE g.track_id = t.id AND g.tag = ?)")
        params.append(tag.strip().lower())
    if cursor:
        created_at, track_id = decode_cursor(cursor)
        # A row-value comparison lets SQLite seek straight to the cursor in tracks_feed; the equivalent OR form
        # scans the index from the newest row, so deep pages got slower (3.6 ms at page ~1,000, against 0.34 ms).
        where.append("(t.created_at, t.id) < (?, ?)")
        params += [created_at, track_id]
    sql = TRACK_SELECT + " WHERE " + " AND ".join(where)
    if filter_hidden and not artist_did:
        clause, extra = _hide_clause(await hidden_tags(db, viewer_did))
        sql += clause
        params += extra
    sql += " ORDER BY t.created_at DESC, t.id DESC LIMIT ?"
    rows = await db.fetchall(sql, [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return Page(rows, next_cursor)


async def top(db: Database, *, viewer_did: str | None, period: str = "all_time", limit: int = 20) -> list[Any]:
    """Most liked within the period (at least one like), as plyr.fm ranks its top list."""
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}")
    span = PERIODS[period]
    since = time.time() - span if span else 0.0
    clause, extra = _hide_clause(await hidden_tags(db, viewer_did))
    sql = (
        "SELECT t.*, u.handle AS artist_handle, u.display_name AS artist_display_name, c.likes AS like_count"
        " FROM (SELECT track_id, count(*) AS likes FROM likes WHERE created_at >= ? GROUP BY track_id) c"
        " JOIN tracks t ON t.id = c.track_id JOIN users u ON u.did = t.artist_did"
        " WHERE t.status = 'ready' AND t.unlisted = 0" + clause +
        " ORDER BY c.likes DESC, t.created_at DESC LIMIT ?"
    )
    return await db.fetchall(sql, [since, *extra, limit])


async def own(db: Database, did: str, *, q: str | None, sort: str, limit: int, offset: int) -> list[Any]:
    """The caller's tracks, unlisted and still-processing ones included."""
    orders = {"recent": "t.created_at DESC, t.id DESC", "title": "t.title COLLATE NOCASE, t.id",
              "plays": "t.play_count DESC, t.id DESC"}
    if sort not in orders:
        raise InvalidInput(f"sort must be one of {', '.join(orders)}")
    if offset < 0:
        raise InvalidInput("offset must be 0 or more")
    sql = TRACK_SELECT + " WHERE t.artist_did = ?"
    params: list[Any] = [did]
    if q:
        sql += " AND t.title LIKE ? ESCAPE '\\'"
        params.append("%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    sql += f" ORDER BY {orders[sort]} LIMIT ? OFFSET ?"
    return await db.fetchall(sql, [*params, limit, offset])


async def tag_counts(db: Database, *, q: str | None, limit: int) -> list[dict[str, Any]]:
    sql = ("SELECT g.tag, count(*) AS track_count FROM track_tags g JOIN tracks t ON t.id = g.track_id"
           " WHERE t.status = 'ready' AND t.unlisted = 0")
    params: list[Any] = []
    if q:
        sql += " AND g.tag LIKE ? ESCAPE '\\'"
        params.append(q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    sql += " GROUP BY g.tag ORDER BY track_count DESC, g.tag LIMIT ?"
    return [dict(r) for r in await db.fetchall(sql, [*params, limit])]
