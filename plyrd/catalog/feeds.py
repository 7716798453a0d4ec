"""Track listings: the latest and network feeds (cursor pages), top tracks, an artist's, a tag's, your own.

Which tracks each shows is the read model's (plyrd.catalog.tracks): discovery (the latest feed, a tag, top, tag
counts) shows the tracks listed for the viewer and hides those carrying one of their hidden tags (default: "ai"),
except on a tag's own page; an artist's page shows every playable track of theirs the viewer may see, unlisted
ones too, whatever the viewer hides; your own list shows every track of yours, still processing or not.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ..db import Database
from ..db.queries import rows
from ..errors import InvalidInput, NotFound
from ..inputs import INT64_MAX
from ..network.follows import network_reach
from .tracks import (
    TRACK_LIST_SELECT,
    Audience,
    Where,
    artist_shown,
    hidden_tags,
    listed,
    playable,
    read_hidden_tags,
    tagged,
    visible,
    without_tags,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
TAG_PAGE = 1000  # a tag's tracks in one answer (plyr.fm sends them all; past this, next_cursor pages on)
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


def clamp_limit(value: Any, *, default: int, maximum: int) -> int:
    """plyr.fm's lenient limit (its /tracks/top): a whole number is clamped into 1..maximum; anything else is 400."""
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"limit must be a whole number (1 to {maximum} are used)") from None
    return max(1, min(limit, maximum))


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


async def latest(
    db: Database,
    *,
    audience: Audience,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    artist_did: str | None = None,
    tag: str | None = None,
    filter_hidden: bool = True,
) -> Page:
    """Newest first, one page at a time (`read_latest`, one hop)."""
    return await db.read_fn(lambda c: read_latest(c, audience=audience, cursor=cursor, limit=limit,
                                                  artist_did=artist_did, tag=tag, filter_hidden=filter_hidden))


def read_latest(
    conn: sqlite3.Connection,
    *,
    audience: Audience,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    artist_did: str | None = None,
    tag: str | None = None,
    filter_hidden: bool = True,
) -> Page:
    """Newest first, one page at a time; the cursor is the (created_at, id) of the last row seen. Runs on a
    connection's thread (Database.read_fn), so a handler can shape the page in the same hop."""
    if artist_did:
        # an artist's tracks; the node's library is no artist (its tracks are found by discovery, albums, search)
        where = visible(audience) & playable() & Where.of("t.artist_did = ?", artist_did) & artist_shown("t.artist_did")
    else:
        where = listed(audience)
    if tag:
        where &= tagged(tag.strip().lower())
    if filter_hidden and not artist_did:
        where &= without_tags(read_hidden_tags(conn, audience))
    return _newest_first(conn, where, cursor, limit)


async def network(db: Database, *, audience: Audience, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> Page:
    """The network feed: other nodes' tracks the node knows (`listed` with reach "network"), newest first, from
    the artists the viewer follows on Bluesky and those the node's users liked (anonymous visitors: the liked
    ones; plyrd.network.follows `network_reach`), without the viewer's hidden tags. Pages as `latest`."""
    def read(conn: sqlite3.Connection) -> Page:
        where = listed(audience, reach="network") & network_reach(audience.did)
        return _newest_first(conn, where & without_tags(read_hidden_tags(conn, audience)), cursor, limit)

    return await db.read_fn(read)


def _newest_first(conn: sqlite3.Connection, where: Where, cursor: str | None, limit: int) -> Page:
    """One page of the tracks `where` holds, newest first, after the cursor (the (created_at, id) of the last row
    seen), and the cursor of the next page (None on the last)."""
    if cursor:
        created_at, track_id = decode_cursor(cursor)
        # A row-value comparison lets SQLite seek straight to the cursor in tracks_feed; the equivalent OR form
        # scans the index from the newest row, so deep pages got slower (3.6 ms at page ~1,000, against 0.34 ms).
        where &= Where.of("(t.created_at, t.id) < (?, ?)", created_at, track_id)
    found = rows(conn, f"{TRACK_LIST_SELECT} WHERE {where.sql} ORDER BY t.created_at DESC, t.id DESC LIMIT ?",
                 [*where.params, limit + 1])
    more = len(found) > limit
    found = found[:limit]
    next_cursor = encode_cursor(found[-1]["created_at"], found[-1]["id"]) if more and found else None
    return Page(found, next_cursor)


async def top(db: Database, *, audience: Audience, period: str = "all_time", limit: int = 20) -> list[Any]:
    """Most liked within the period (at least one like), as plyr.fm ranks its top list."""
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}")
    span = PERIODS[period]
    since = time.time() - span if span else 0.0
    where = listed(audience) & without_tags(await hidden_tags(db, audience))
    sql = (
        f"{TRACK_LIST_SELECT} JOIN (SELECT track_id, count(*) AS likes FROM likes WHERE created_at >= ?"
        f" GROUP BY track_id) c ON c.track_id = t.id WHERE {where.sql} ORDER BY c.likes DESC, t.created_at DESC LIMIT ?"
    )
    return await db.fetchall(sql, [since, *where.params, limit])


async def own(db: Database, audience: Audience, *, q: str | None, sort: str, limit: int, offset: int) -> list[Any]:
    """The caller's tracks, unlisted and still-processing ones included."""
    orders = {"recent": "t.created_at DESC, t.id DESC", "title": "t.title COLLATE NOCASE, t.id",
              "plays": "t.play_count DESC, t.id DESC"}
    if sort not in orders:
        raise InvalidInput(f"sort must be one of {', '.join(orders)}")
    if offset < 0:
        raise InvalidInput("offset must be 0 or more")
    where = visible(audience) & Where.of("t.artist_did = ?", audience.did)
    if q:
        where &= Where.of("t.title LIKE ? ESCAPE '\\'", "%" + _escape_like(q) + "%")
    return await db.fetchall(f"{TRACK_LIST_SELECT} WHERE {where.sql} ORDER BY {orders[sort]} LIMIT ? OFFSET ?",
                             [*where.params, limit, offset])


async def tag_counts(db: Database, *, audience: Audience, q: str | None, limit: int) -> list[dict[str, Any]]:
    """plyr.fm's tag list: each tag with how many tracks discovery shows `audience` under it and their plays,
    most played first (then by name); `q` is a prefix."""
    where = listed(audience)
    if q:
        where &= Where.of("g.tag LIKE ? ESCAPE '\\'", _escape_like(q.strip().lower()) + "%")
    sql = (f"SELECT g.tag AS name, count(*) AS track_count, coalesce(sum(t.play_count), 0) AS total_plays"
           f" FROM track_tags g JOIN tracks t ON t.id = g.track_id WHERE {where.sql}"
           f" GROUP BY g.tag ORDER BY total_plays DESC, g.tag LIMIT ?")
    return [dict(r) for r in await db.fetchall(sql, [*where.params, limit])]


async def tag_count(db: Database, *, audience: Audience, tag: str) -> int:
    """How many tracks discovery shows `audience` under a tag (already normalized); NotFound when none, as plyr.fm
    answers for a tag it does not have."""
    where = listed(audience) & tagged(tag)
    row = await db.fetchone(f"SELECT count(*) AS n FROM tracks t WHERE {where.sql}", where.params)
    if row is None or row["n"] == 0:
        raise NotFound(f"tag '{tag}' not found")
    return int(row["n"])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
