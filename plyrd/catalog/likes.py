"""Likes: one per person per track, mirrored as `fm.plyr.like` records in the liker's PDS through the outbox.

The local row and the outbox entry commit in one transaction, so the API answers from the database at once and the
PDS write happens (with retries) afterwards; an unlike before the like reached the PDS sends nothing.

A like of a library track (the node's music folder, never published) stays on the node: a likes row (its rkey a TID
no record ever gets), no fm.plyr.like record, and the liked list's record names only published tracks.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ..atproto.outbox import QueuedPut, queue_delete, queue_put
from ..atproto.records import like_record, list_record
from ..atproto.tids import new_tid
from ..db import Database
from ..db.queries import fetchall, one, rows, run
from ..errors import Conflict, Forbidden, InvalidInput, Unprocessable
from . import preferences
from .lists import LIST_COLLECTION
from .social import find_person, iso, person_json, track_ref, tracks_json, utc
from .tracks import TRACK_LIST_SELECT, Audience, Where, is_library, open_track, read_track, visible

COLLECTION = "fm.plyr.like"
LIKED_LIST_NAME = "Liked Tracks"
LIST_MAX_ITEMS = 500  # the lexicon's limit: a longer liked list is published up to its first 500
MAX_LIST = 5000  # a reorder names every liked track; far above any real list, it bounds the request


def _like_count(conn: sqlite3.Connection, track_id: int) -> int:
    count = one(conn, "SELECT count(*) AS n FROM likes WHERE track_id = ?", (track_id,))
    return count["n"] if count else 0


async def like(db: Database, *, did: str, track_id: int, audience: Audience,
               now: float | None = None) -> dict[str, Any]:
    """Like a track `audience` (the liker) may see, idempotently as plyr.fm: liking it again answers the same and
    changes nothing. A track whose record is not on its artist's PDS yet has nothing for a like record to point at
    (422, as plyr.fm's missing_atproto_record); a library track's like stays on the node (no record at all).
    The transaction is one function on the writer's thread (`like_in`): the write lock is held for its own time."""
    return await db.write_fn(like_in, did, track_id, audience, time.time() if now is None else now)


def like_in(conn: sqlite3.Connection, did: str, track_id: int, audience: Audience, now: float) -> dict[str, Any]:
    """`like` inside a write transaction (Database.write_fn)."""
    track = read_track(conn, track_id, audience)
    local = is_library(track)
    uri = cid = ""
    if not local:
        try:
            uri, cid = track_ref(track, "liked")
        except Conflict as e:
            raise Unprocessable(f"missing_atproto_record: {e.detail}") from None
    if one(conn, "SELECT 1 FROM likes WHERE did = ? AND track_id = ?", (did, track_id)):
        return {"liked": True, "like_count": _like_count(conn, track_id)}
    rkey = new_tid()
    # In front of the liked list: one less than the smallest position so far.
    conn.execute(
        "INSERT INTO likes(did, track_id, rkey, position, created_at) VALUES (?, ?, ?,"
        " (SELECT coalesce(min(position), 1) - 1 FROM likes WHERE did = ?), ?)",
        (did, track_id, rkey, did, now),
    )
    if not local:
        queue_put(conn, did=did, collection=COLLECTION, rkey=rkey, record=like_record(uri, cid, utc(now)))
        write_liked_list(conn, did, now)
    return {"liked": True, "like_count": _like_count(conn, track_id)}


async def unlike(db: Database, *, did: str, track_id: int, audience: Audience) -> dict[str, Any]:
    """Stop liking a track, idempotently as plyr.fm: unliking a track you do not like answers the same (404 only
    for a track that does not exist, or that `audience`, the liker, may not see). One function on the writer's
    thread (`unlike_in`)."""
    return await db.write_fn(unlike_in, did, track_id, audience)


def unlike_in(conn: sqlite3.Connection, did: str, track_id: int, audience: Audience) -> dict[str, Any]:
    """`unlike` inside a write transaction (Database.write_fn)."""
    track = read_track(conn, track_id, audience)
    row = one(conn, "SELECT rkey FROM likes WHERE did = ? AND track_id = ?", (did, track_id))
    if row is None:
        return {"liked": False, "like_count": _like_count(conn, track_id)}
    conn.execute("DELETE FROM likes WHERE did = ? AND track_id = ?", (did, track_id))
    if not is_library(track):  # a library track's like never had a record
        queue_delete(conn, did=did, collection=COLLECTION, rkey=row["rkey"])
        write_liked_list(conn, did, time.time())
    return {"liked": False, "like_count": _like_count(conn, track_id)}


async def likers(db: Database, track_id: int, audience: Audience) -> dict[str, Any]:
    """Who liked a track, newest first (public, as plyr.fm, to whoever may see the track)."""
    await open_track(db, track_id, audience)
    found = await db.fetchall(
        "SELECT l.did, l.created_at, u.handle, u.display_name, u.avatar_url FROM likes l"
        " LEFT JOIN users u ON u.did = l.did WHERE l.track_id = ? ORDER BY l.created_at DESC, l.id DESC",
        (track_id,),
    )
    users = [{**person_json(r["did"], r), "liked_at": iso(r["created_at"])} for r in found]
    return {"users": users, "count": len(users)}


async def liked_tracks(db: Database, did: str, *, audience: Audience, public_url: str) -> list[dict[str, Any]]:
    """A person's liked tracks that `audience` may see, in their list order (newest first unless they reordered)."""
    where = Where.of("l.did = ?", did) & visible(audience)
    found = await db.fetchall(f"{TRACK_LIST_SELECT} JOIN likes l ON l.track_id = t.id WHERE {where.sql}"
                              " ORDER BY l.position, l.id DESC", where.params)
    return await tracks_json(db, found, audience.did, public_url)


async def public_likes(db: Database, handle: str, *, audience: Audience, public_url: str) -> dict[str, Any]:
    """GET /users/{handle}/likes: shown when the person chose `show_liked_on_profile` (always to themselves)."""
    person = await find_person(db, handle)
    if audience.did != person["did"]:
        async with db.read() as conn:
            prefs = await preferences.load(conn, person["did"])
        if not prefs["show_liked_on_profile"]:
            raise Forbidden(f"{person['handle'] or person['did']} keeps their liked tracks private")
    tracks = await liked_tracks(db, person["did"], audience=audience, public_url=public_url)
    user = person_json(person["did"], person)
    return {"user": user, "tracks": tracks, "count": len(tracks)}


def _item_key(item: Any) -> tuple[str, Any]:
    """A reorder item: a track id, or plyr.fm's strongRef object (`uri` of the track record; `cid` ignored)."""
    if isinstance(item, int) and not isinstance(item, bool):
        return "id", item
    if isinstance(item, dict) and isinstance(item.get("uri"), str):
        return "uri", item["uri"]
    raise InvalidInput("each item must be a track id or a strongRef object {uri, cid} of a liked track")


async def reorder(db: Database, did: str, items: Any, audience: Audience | None = None) -> dict[str, Any]:
    """Put the caller's liked list in the order given. The items must be exactly the liked tracks, each once;
    anything else changes nothing. An order given only as strongRefs (plyr.fm's, from the list record) names the
    liked tracks that have a record; library tracks, which have none, keep their places among them. An order of
    track ids from `audience` (the caller) names the liked tracks they may see, as their liked list shows them; the
    others (taken down since) keep their places. Answers the new order (`track_ids`) and, as plyr.fm, the list
    record's `uri` and `cid` (null when no liked track has a record to list)."""
    if not isinstance(items, list):
        raise InvalidInput("items must be a list of the liked tracks in their new order")
    if len(items) > MAX_LIST:
        raise InvalidInput(f"a liked list holds at most {MAX_LIST} items")
    keys = [_item_key(item) for item in items]
    async with db.write() as conn:
        liked = await fetchall(conn, "SELECT l.track_id, t.record_uri FROM likes l JOIN tracks t ON t.id = l.track_id"
                                 " WHERE l.did = ? ORDER BY l.position, l.id DESC", (did,))
        by_uri = {r["record_uri"]: r["track_id"] for r in liked if r["record_uri"]}
        by_refs = bool(keys) and all(kind == "uri" for kind, _ in keys)
        liked_ids = set(by_uri.values()) if by_refs else {r["track_id"] for r in liked}
        if audience is not None and not by_refs:
            shown = Where.of("l.did = ?", did) & visible(audience)
            liked_ids &= {r["track_id"] for r in await fetchall(
                conn, f"SELECT l.track_id FROM likes l JOIN tracks t ON t.id = l.track_id WHERE {shown.sql}",
                shown.params)}
        order: list[int] = []
        for kind, value in keys:
            track_id = value if kind == "id" else by_uri.get(value)
            if track_id not in liked_ids:
                raise InvalidInput(f"{value} is not one of your liked tracks")
            order.append(track_id)
        if len(set(order)) != len(order):
            raise InvalidInput("each liked track must appear once")
        if len(order) != len(liked_ids):
            missing = sorted(liked_ids - set(order))
            raise InvalidInput(f"the new order must name every liked track; missing: {missing}")
        if len(liked_ids) < len(liked):  # the tracks not named stay where they were, the named fill the other places
            named = iter(order)
            order = [next(named) if r["track_id"] in liked_ids else r["track_id"] for r in liked]
        for position, track_id in enumerate(order):
            await conn.execute("UPDATE likes SET position = ? WHERE did = ? AND track_id = ?",
                               (position, did, track_id))
        ref = await sync_liked_list(conn, did)
    return {"track_ids": order, "uri": ref.uri if ref else None, "cid": ref.cid if ref else None}


async def sync_liked_list(conn: Any, did: str, now: float | None = None) -> QueuedPut | None:
    """`write_liked_list` inside the caller's `db.write()` transaction (one hop)."""
    return await run(conn, write_liked_list, did, time.time() if now is None else now)


def write_liked_list(conn: sqlite3.Connection, did: str, now: float) -> QueuedPut | None:
    """Rewrite the person's "Liked Tracks" list record (plyr.fm keeps one per user) in their order, inside the
    caller's transaction; returns its (uri, cid). Someone who never liked anything gets no list (None)."""
    items = [{"uri": r["record_uri"], "cid": r["record_cid"]} for r in rows(
        conn, "SELECT t.record_uri, t.record_cid FROM likes l JOIN tracks t ON t.id = l.track_id"
              " WHERE l.did = ? AND t.record_uri IS NOT NULL ORDER BY l.position, l.id LIMIT ?", (did, LIST_MAX_ITEMS))]
    existing = one(conn, "SELECT rkey, created_at FROM liked_lists WHERE did = ?", (did,))
    if existing is None:
        if not items:
            return None
        rkey, created = new_tid(), now
        conn.execute("INSERT INTO liked_lists(did, rkey, created_at) VALUES (?, ?, ?)", (did, rkey, created))
    else:
        rkey, created = existing["rkey"], existing["created_at"]
    record = list_record("liked", LIKED_LIST_NAME, items, created_at=utc(created), updated_at=utc(now))
    return queue_put(conn, did=did, collection=LIST_COLLECTION, rkey=rkey, record=record)
