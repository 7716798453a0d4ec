"""Timed comments: text pinned to a playback position, on tracks whose artist turned comments on.

Each comment is an `fm.plyr.comment` record in its author's PDS (written, edited and deleted through the outbox in
the same transaction as the local row). plyr.fm's rules: 1-1000 characters, a position within the track, at most
20 comments per track, only the author edits or deletes.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

from ..atproto.lexicon import grapheme_count
from ..atproto.outbox import enqueue_delete, enqueue_put, queue_put
from ..atproto.records import comment_record
from ..atproto.tids import new_tid
from ..db import Database
from ..db.queries import fetchone, one, rows
from ..errors import Forbidden, InvalidInput, NotFound
from ..moderation.suspension import refuse_if_suspended
from . import preferences
from .social import iso, person_json, track_for_update, track_ref, utc
from .tracks import ANONYMOUS, Audience, Where, is_remote, read_track

COLLECTION = "fm.plyr.comment"
MAX_COMMENTS_PER_TRACK = 20
MAX_TEXT = 1000  # graphemes, as people count; the lexicon also caps the record's text at 1000 UTF-8 bytes

COMMENT_SELECT = """
SELECT c.*, u.handle, u.display_name, u.avatar_url FROM comments c LEFT JOIN users u ON u.did = c.did
"""


def clean_text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("text must be a string")
    text = value.strip()
    if not text:
        raise InvalidInput("a comment needs some text")
    if grapheme_count(text) > MAX_TEXT:
        raise InvalidInput(f"a comment is at most {MAX_TEXT} characters")
    if len(text.encode()) > MAX_TEXT:
        # fm.plyr.comment's maxLength counts UTF-8 bytes: longer text would make a record other apps reject.
        raise InvalidInput(f"a comment is at most {MAX_TEXT} bytes of UTF-8 (fewer characters in scripts that "
                           "take several bytes each)")
    return text


def clean_timestamp(value: Any, duration: float) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("timestamp_ms must be a whole number of milliseconds")
    if value < 0:
        raise InvalidInput("timestamp_ms must be 0 or more")
    limit = math.ceil(duration * 1000)
    if value > limit:
        raise InvalidInput(f"timestamp_ms must be within the track ({limit} ms long)")
    return value


def comment_visible(audience: Audience, c: str = "c") -> Where:
    """Comments `audience` sees: all but those the node's admins took down (plyrd.moderation), which only their
    author (who sees why) and admins still see."""
    if audience.is_admin:
        return Where()
    if audience.did is None:
        return Where.of(f"{c}.taken_down IS NULL")
    return Where.of(f"({c}.taken_down IS NULL OR {c}.did = ?)", audience.did)


def comment_json(row: sqlite3.Row) -> dict[str, Any]:
    """A comment in plyr.fm's CommentResponse fields."""
    person = person_json(row["did"], row)
    return {
        "id": row["id"],
        "track_id": row["track_id"],
        "user_did": row["did"],
        "user_handle": person["handle"],
        "user_display_name": person["display_name"],
        "user_avatar_url": person["avatar_url"],
        "text": row["text"],
        "timestamp_ms": row["timestamp_ms"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "taken_down": row["taken_down"],  # plyrd's: why, for its author (nobody else sees a taken-down comment)
    }


async def list_comments(db: Database, track_id: int, audience: Audience) -> dict[str, Any]:
    """All comments ordered by position, and whether the artist takes comments (plyr.fm shows none when off), of a
    track `audience` may see. Library tracks take none (the library, their "artist", never turns comments on).
    One hop: the track, the artist's preference and the comments are read by one function."""
    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        enabled = _takes_comments(conn, read_track(conn, track_id, audience))
        shown = comment_visible(audience)
        found = [] if not enabled else rows(
            conn, COMMENT_SELECT + f" WHERE c.track_id = ? AND {shown.sql} ORDER BY c.timestamp_ms, c.id",
            (track_id, *shown.params))
        comments = [comment_json(r) for r in found]
        return {"comments": comments, "count": len(comments), "comments_enabled": bool(enabled)}

    return await db.read_fn(read)


def _takes_comments(conn: sqlite3.Connection, track: sqlite3.Row) -> bool:
    """Whether a track takes comments: its artist's preference here. Another repo's track (remote) keeps its
    artist's preference in their home service, where no record holds it: the comments the network holds on it
    are shown, and listeners here may add theirs, as they could there."""
    if is_remote(track):
        return True
    return bool(preferences.read(conn, track["artist_did"])["allow_comments"])


def _record(track: sqlite3.Row, text: str, timestamp_ms: int, created_at: float,
            updated_at: float | None) -> dict[str, Any]:
    uri, cid = track_ref(track, "commented on")
    return comment_record({"uri": uri, "cid": cid}, text, timestamp_ms, utc(created_at),
                          utc(updated_at) if updated_at is not None else None)


async def create(db: Database, *, did: str, track_id: int, text: Any, timestamp_ms: Any, audience: Audience,
                 now: float | None = None) -> dict[str, Any]:
    """Comment on a track `audience` (the commenter) may see: one function on the writer's thread."""
    now = time.time() if now is None else now
    text = clean_text(text)

    def write(conn: sqlite3.Connection) -> dict[str, Any]:
        refuse_if_suspended(conn, did, "comment")
        track = read_track(conn, track_id, audience)
        at = clean_timestamp(timestamp_ms, track["duration"])
        if not _takes_comments(conn, track):
            raise Forbidden("the artist has not turned on comments for their tracks")
        track_ref(track, "commented on")
        count = one(conn, "SELECT count(*) AS n FROM comments WHERE track_id = ?", (track_id,))
        if count and count["n"] >= MAX_COMMENTS_PER_TRACK:
            raise InvalidInput(f"track has reached the maximum of {MAX_COMMENTS_PER_TRACK} comments")
        rkey = new_tid()
        comment_id = conn.execute(
            "INSERT INTO comments(track_id, did, text, timestamp_ms, rkey, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (track_id, did, text, at, rkey, now),
        ).lastrowid
        queue_put(conn, did=did, collection=COLLECTION, rkey=rkey, record=_record(track, text, at, now, None))
        row = one(conn, COMMENT_SELECT + " WHERE c.id = ?", (comment_id,))
        assert row is not None
        return comment_json(row)

    return await db.write_fn(write)


async def _own_comment(conn: Any, did: str, comment_id: int, verb: str) -> sqlite3.Row:
    row = await fetchone(conn, "SELECT * FROM comments WHERE id = ?", (comment_id,))
    if row is None:
        raise NotFound(f"comment {comment_id} not found")
    if row["did"] != did:
        raise Forbidden(f"only its author can {verb} a comment")
    return row


async def edit(db: Database, *, did: str, comment_id: int, text: Any, now: float | None = None) -> dict[str, Any]:
    """Change a comment's text (the position stays); the record is rewritten with `updatedAt`."""
    now = time.time() if now is None else now
    text = clean_text(text)
    async with db.write() as conn:
        comment = await _own_comment(conn, did, comment_id, "edit")
        # a comment is a record pointing at a published track's record: on a track anyone may see
        track = await track_for_update(conn, comment["track_id"], ANONYMOUS)
        await conn.execute("UPDATE comments SET text = ?, updated_at = ? WHERE id = ?", (text, now, comment_id))
        await enqueue_put(conn, did=did, collection=COLLECTION, rkey=comment["rkey"],
                          record=_record(track, text, comment["timestamp_ms"], comment["created_at"], now))
        row = await fetchone(conn, COMMENT_SELECT + " WHERE c.id = ?", (comment_id,))
    assert row is not None
    return comment_json(row)


async def delete(db: Database, *, did: str, comment_id: int) -> None:
    async with db.write() as conn:
        comment = await _own_comment(conn, did, comment_id, "delete")
        await conn.execute("DELETE FROM comments WHERE id = ?", (comment_id,))
        await enqueue_delete(conn, did=did, collection=COLLECTION, rkey=comment["rkey"])
