"""What the social modules (likes, comments, plays, preferences, queue, now playing) share: times as ISO strings,
people and tracks as plyr.fm's JSON, the strongRef a like or comment points at."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from ..db import Database
from ..db.queries import run
from ..errors import Conflict, NotFound
from .tracks import Audience, read_track, track_json


def iso(ts: float | None) -> str | None:
    """Unix seconds as plyr.fm's API writes times (`datetime.isoformat()` in UTC)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def track_for_update(conn: aiosqlite.Connection, track_id: int, audience: Audience) -> sqlite3.Row:
    """The track row (with its artist's names) read inside a write transaction, if `audience` may see it (a like,
    a comment or a play acts for someone); NotFound otherwise, as when it does not exist (`read_track` on the
    connection's thread)."""
    return await run(conn, read_track, track_id, audience)


def track_ref(track: sqlite3.Row, action: str) -> tuple[str, str]:
    """The (uri, cid) a like or comment record references; a track not yet published has none to point at."""
    if not track["record_uri"] or not track["record_cid"]:
        raise Conflict(
            f"track {track['id']} cannot be {action} yet: its fm.plyr.track record is not published to the "
            "artist's PDS; try again once it is"
        )
    return track["record_uri"], track["record_cid"]


def person_json(did: str, row: sqlite3.Row | None) -> dict[str, Any]:
    """A person as plyr.fm shows likers and commenters (the DID stands in for an unknown handle)."""
    return {
        "did": did,
        "handle": (row["handle"] if row else None) or did,
        "display_name": row["display_name"] if row else None,
        "avatar_url": row["avatar_url"] if row else None,
    }


async def find_person(db: Database, handle_or_did: str) -> sqlite3.Row:
    """A person the node knows, by handle (plyr.fm's URLs) or DID (accepted wherever a handle is)."""
    if handle_or_did.startswith("did:"):
        row = await db.fetchone("SELECT * FROM users WHERE did = ?", (handle_or_did,))
    else:
        row = await db.fetchone("SELECT * FROM users WHERE handle = ?", (handle_or_did.lower(),))
    if row is None:
        raise NotFound(f"user {handle_or_did} not found")
    return row


async def social_counts(db: Database, track_ids: list[int], viewer_did: str | None) -> dict[int, dict[str, Any]]:
    """like_count, comment_count and is_liked for each track (`read_social_counts` in one hop)."""
    if not track_ids:
        return {}
    return await db.read_fn(read_social_counts, track_ids, viewer_did)


def read_social_counts(conn: sqlite3.Connection, track_ids: list[int],
                       viewer_did: str | None) -> dict[int, dict[str, Any]]:
    """like_count, comment_count and is_liked for each track, in one query whatever the list's length (each count
    is an index lookup: likes_track, comments_track, likes' (did, track_id) key)."""
    if not track_ids:
        return {}
    found = conn.execute(
        "SELECT j.value AS track_id,"
        " (SELECT count(*) FROM likes l WHERE l.track_id = j.value) AS likes,"
        " (SELECT count(*) FROM comments c WHERE c.track_id = j.value AND c.taken_down IS NULL) AS comments,"
        " EXISTS (SELECT 1 FROM likes v WHERE v.did = ? AND v.track_id = j.value) AS liked"
        " FROM json_each(?) j",
        (viewer_did or "", json.dumps(track_ids)),
    ).fetchall()
    return {r["track_id"]: {"like_count": r["likes"], "comment_count": r["comments"], "is_liked": bool(r["liked"])}
            for r in found}


async def tracks_json(db: Database, track_rows: list[sqlite3.Row], viewer_did: str | None,
                      public_url: str, *, peaks: bool = False) -> list[dict[str, Any]]:
    """Tracks as plyr.fm lists them (its TrackResponse): the track's own fields plus like/comment counts and the
    viewer's like, and whether the viewer may download each (without waveform peaks unless asked: see track_json).
    Every answer that shows tracks goes through here (or `shape_tracks`, its form for a function that already
    read the counts on its connection's thread)."""
    counts = await social_counts(db, [r["id"] for r in track_rows], viewer_did)
    return shape_tracks(track_rows, counts, viewer_did, public_url, peaks=peaks)


def read_tracks_json(conn: sqlite3.Connection, track_rows: list[sqlite3.Row], viewer_did: str | None,
                     public_url: str, *, peaks: bool = False) -> list[dict[str, Any]]:
    """`tracks_json` inside a function run on a connection's thread (Database.read_fn / write_fn)."""
    counts = read_social_counts(conn, [r["id"] for r in track_rows], viewer_did)
    return shape_tracks(track_rows, counts, viewer_did, public_url, peaks=peaks)


def shape_tracks(track_rows: list[sqlite3.Row], counts: dict[int, dict[str, Any]], viewer_did: str | None,
                 public_url: str, *, peaks: bool = False) -> list[dict[str, Any]]:
    # Each row as a dict first: a sqlite3.Row finds a column by name by comparing it with every column name in turn,
    # and track_json reads ~50 of TRACK_SELECT's ~60 columns (a 50-track page: 0.98 ms shaped from rows, 0.39 ms
    # from dicts, conversion included).
    return [{**track_json(d, public_url, peaks=peaks, viewer_did=viewer_did), **counts[d["id"]]}
            for d in map(as_dict, track_rows)]


def as_dict(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """A row as a dict (a dict as it is): cheap name lookups for code that reads many columns of it."""
    return row if isinstance(row, dict) else dict(zip(row.keys(), row, strict=True))
