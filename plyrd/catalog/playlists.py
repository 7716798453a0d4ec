"""Playlists: anyone's ordered picks of tracks, published as fm.plyr.list records (listType playlist) unless private.

A public playlist's record is rewritten through the outbox in the same transaction as each local change; a private
one lives only in this node's database and never reaches a PDS. Turning a playlist private deletes its record;
turning it public publishes a new one. A private playlist does not exist for anyone but its owner (404, never 403),
so its existence does not leak.

Items are the strongRefs they were added with (a record pins one version of a track); `track_id` follows the local
track while it exists, and an item whose track was deleted stays until its owner removes it, like the published
record that still names it.

A library track (the node's music folder) has no record: its item is the node's own, named `plyrd:library:{id}`
(`library_item_uri`, with an empty cid), never in the playlist's record, shown only to those who may see the library,
and gone with its track (plyrd.catalog.tracks `remove_track`). A playlist mixing both publishes only its published
items.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..atproto import lexicon, outbox
from ..db import Database
from ..db.queries import fetchall, fetchone
from ..errors import Forbidden, InvalidInput, NotFound
from ..storage import BlobStore
from .albums import (
    change_cover,
    cover_urls,
    iso,
    parse_uuid,
)
from .artwork import set_artwork
from .lists import LIST_COLLECTION, MAX_ITEMS, RECORD_NAME_BYTES, RECORD_NAME_GRAPHEMES, grapheme_len, put_list_record
from .social import tracks_json
from .tracks import ANONYMOUS, TRACK_SELECT, Audience, Where, is_library, visible

if TYPE_CHECKING:
    from .uploads import StoredFile, Uploads

_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"

LIBRARY_ITEM = "plyrd:library:"  # a library track's item: no record to name, so the node's own name for it


def library_item_uri(track_id: int) -> str:
    return f"{LIBRARY_ITEM}{track_id}"


def published_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The strongRefs a playlist's record holds: its items less the library tracks' (which have no record)."""
    return [{"uri": i["track_uri"], "cid": i["track_cid"]} for i in items
            if not i["track_uri"].startswith(LIBRARY_ITEM)]


PLAYLIST_SELECT = """
SELECT p.*, u.handle AS owner_handle,
       (SELECT count(*) FROM playlist_items i WHERE i.playlist_id = p.id) AS track_count
FROM playlists p JOIN users u ON u.did = p.owner_did
"""


def _name(value: Any) -> str:
    """A playlist's name is its record's name, so it keeps to the lexicon's limits rather than being cut."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name is required")
    value = value.strip()
    if grapheme_len(value) > RECORD_NAME_GRAPHEMES or len(value.encode()) > RECORD_NAME_BYTES:
        raise InvalidInput(f"name must be at most {RECORD_NAME_GRAPHEMES} characters ({RECORD_NAME_BYTES} bytes)")
    return value


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise InvalidInput(f"{name} must be true or false")


def playlist_json(row: sqlite3.Row, public_url: str) -> dict[str, Any]:
    """A playlist's metadata in plyr.fm's field names (atproto_record_uri is null while private)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "owner_did": row["owner_did"],
        "owner_handle": row["owner_handle"],
        "track_count": row["track_count"],
        **cover_urls(row, public_url),
        "show_on_profile": bool(row["show_on_profile"]),
        "is_private": bool(row["is_private"]),
        "atproto_record_uri": row["record_uri"],
        "atproto_record_cid": row["record_cid"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def _load(db: Database, playlist_id: str) -> sqlite3.Row | None:
    return await db.fetchone(PLAYLIST_SELECT + " WHERE p.id = ?", (parse_uuid(playlist_id, "playlist"),))


def playlist_visible(viewer_did: str | None, p: str = "p") -> Where:
    """Playlists a viewer may see (the one rule, as `visible` is for tracks): public ones, and their own private
    ones; one the node's admins took down (plyrd.moderation) only by its owner, who sees why."""
    return Where.of(f"(({p}.is_private = 0 AND {p}.taken_down IS NULL) OR {p}.owner_did = ?)", viewer_did)


def may_see_playlist(row: sqlite3.Row, viewer_did: str | None) -> bool:
    """playlist_visible for a row already read."""
    return row["owner_did"] == viewer_did or (not row["is_private"] and row["taken_down"] is None)


async def get_playlist(db: Database, playlist_id: str, viewer_did: str | None) -> sqlite3.Row:
    """A playlist the viewer may see (playlist_visible); 404 otherwise, as if it did not exist."""
    row = await _load(db, playlist_id)
    if row is None or not may_see_playlist(row, viewer_did):
        raise NotFound("playlist not found")
    return row


async def _owned(conn: aiosqlite.Connection, playlist_id: str, did: str) -> sqlite3.Row:
    """The playlist row, inside a transaction, if `did` owns it: 403 for someone else's public playlist, 404 for
    someone else's private one (it does not exist for them)."""
    row = await fetchone(conn, "SELECT * FROM playlists WHERE id = ?", (parse_uuid(playlist_id, "playlist"),))
    if row is None or (row["is_private"] and row["owner_did"] != did):
        raise NotFound("playlist not found")
    if row["owner_did"] != did:
        raise Forbidden("only the playlist's owner can change it")
    return row


async def check_owner(db: Database, playlist_id: str, did: str) -> None:
    """Ownership checked before expensive work (cover processing); checked again inside the write."""
    row = await get_playlist(db, playlist_id, did)
    if row["owner_did"] != did:
        raise Forbidden("only the playlist's owner can change it")


async def _items(conn: aiosqlite.Connection, playlist_id: str) -> list[sqlite3.Row]:
    return await fetchall(conn, "SELECT * FROM playlist_items WHERE playlist_id = ? ORDER BY position",
                          (playlist_id,))


async def _publish(conn: aiosqlite.Connection, playlist_id: str) -> None:
    """Rewrite a public playlist's record from its current items; a private playlist has none."""
    row = await fetchone(conn, "SELECT * FROM playlists WHERE id = ?", (playlist_id,))
    assert row is not None
    if row["is_private"]:
        return
    items = published_items(await _items(conn, playlist_id))
    await put_list_record(conn, "playlists", row, list_type="playlist", name=row["name"], items=items,
                          did=row["owner_did"])


async def _write_items(conn: aiosqlite.Connection, playlist_id: str, items: list[tuple[Any, ...]]) -> None:
    """Replace the items with (track_id, track_uri, track_cid, added_at) rows in this order, numbered from 0."""
    await conn.execute("DELETE FROM playlist_items WHERE playlist_id = ?", (playlist_id,))
    await conn.executemany(
        "INSERT INTO playlist_items(playlist_id, position, track_id, track_uri, track_cid, added_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", [(playlist_id, i, *item) for i, item in enumerate(items)])
    await conn.execute(f"UPDATE playlists SET updated_at = {_NOW_SQL} WHERE id = ?", (playlist_id,))


async def create_playlist(db: Database, did: str, body: dict[str, Any], *, track_ids: Sequence[int] = (),
                          audience: Audience = ANONYMOUS) -> str:
    """A new playlist; `track_ids` (Subsonic's createPlaylist), tracks `audience` (its owner) may see, are its first
    items, published in its first record."""
    name = _name(body.get("name"))
    private = _flag("is_private", body.get("is_private", False))
    show = _flag("show_on_profile", body.get("show_on_profile", False))
    playlist_id = str(uuid.uuid4())
    async with db.write() as conn:
        await conn.execute("INSERT INTO playlists(id, owner_did, name, is_private, show_on_profile)"
                           " VALUES (?, ?, ?, ?, ?)", (playlist_id, did, name, int(private), int(show)))
        if track_ids:
            await _edit_items(conn, playlist_id, [], track_ids, audience)
        await _publish(conn, playlist_id)
    return playlist_id


async def _edit_items(conn: aiosqlite.Connection, playlist_id: str, kept: list[sqlite3.Row],
                      add: Sequence[int], audience: Audience) -> None:
    """Write the items as `kept` (current item rows, in order) then the tracks `add` names, by id. A track already
    in the playlist is not added twice (a list holds each record once)."""
    items = [(i["track_id"], i["track_uri"], i["track_cid"], i["added_at"]) for i in kept]
    present = {i[1] for i in items}
    now = time.time()
    for track_id in add:
        found, uri, cid = await _resolve_track(conn, {"track_id": track_id}, audience)
        if uri not in present:
            present.add(uri)
            items.append((found, uri, cid, now))
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"a playlist holds at most {MAX_ITEMS} tracks")
    await _write_items(conn, playlist_id, items)


async def update_playlist(db: Database, playlist_id: str, did: str, changes: dict[str, Any], *,
                          remove_tracks: Collection[int] = (), add_tracks: Sequence[int] = (),
                          replace_items: bool = False, audience: Audience = ANONYMOUS) -> None:
    """Name, show_on_profile and is_private. Going private deletes the record; going public publishes one.
    Subsonic's updatePlaylist and createPlaylist(playlistId) change the items in the same write, one record for
    all: the items whose track is in `remove_tracks` (or all, `replace_items`) go, then `add_tracks` (tracks
    `audience`, the owner, may see) are appended."""
    unknown = set(changes) - {"name", "show_on_profile", "is_private"}
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}; a playlist has name, show_on_profile and"
                           " is_private")
    async with db.write() as conn:
        row = await _owned(conn, playlist_id, did)
        name = _name(changes["name"]) if changes.get("name") is not None else row["name"]
        show = (_flag("show_on_profile", changes["show_on_profile"]) if changes.get("show_on_profile") is not None
                else bool(row["show_on_profile"]))
        private = (_flag("is_private", changes["is_private"]) if changes.get("is_private") is not None
                   else bool(row["is_private"]))
        if private and not row["is_private"] and row["rkey"]:
            await outbox.enqueue_delete(conn, did=did, collection=LIST_COLLECTION, rkey=row["rkey"])
        await conn.execute(
            "UPDATE playlists SET name = ?, show_on_profile = ?, is_private = ?,"
            " rkey = CASE WHEN ? THEN NULL ELSE rkey END, record_uri = CASE WHEN ? THEN NULL ELSE record_uri END,"
            f" record_cid = CASE WHEN ? THEN NULL ELSE record_cid END, updated_at = {_NOW_SQL} WHERE id = ?",
            (name, int(show), int(private), private, private, private, row["id"]))
        edit = bool(replace_items or remove_tracks or add_tracks)
        if edit:
            kept = [] if replace_items else [i for i in await _items(conn, row["id"])
                                             if i["track_id"] not in remove_tracks]
            await _edit_items(conn, row["id"], kept, add_tracks, audience)
        # A new name or a playlist going public changes what the PDS should hold; show_on_profile is local.
        if not private and (name != row["name"] or row["is_private"] or edit):
            await _publish(conn, row["id"])


async def delete_playlist(db: Database, store: BlobStore, playlist_id: str, did: str) -> None:
    async with db.write() as conn:
        row = await _owned(conn, playlist_id, did)
        released = await set_artwork(conn, store, "playlists", row["id"], None)
        await conn.execute("DELETE FROM playlists WHERE id = ?", (row["id"],))
        if row["rkey"]:
            await outbox.enqueue_delete(conn, did=did, collection=LIST_COLLECTION, rkey=row["rkey"])
    await store.remove_unreferenced(released)


async def _resolve_track(conn: aiosqlite.Connection, body: dict[str, Any],
                         audience: Audience) -> tuple[int, str, str]:
    """(track id, uri, cid) of the track to add, one `audience` may see: by `track_uri` (+ `track_cid`, plyr.fm's
    body) or by `track_id`. A library track's item is the node's own (`library_item_uri`, no cid)."""
    uri, cid, track_id = body.get("track_uri"), body.get("track_cid"), body.get("track_id")
    if uri is not None:
        if not isinstance(uri, str) or not lexicon.is_at_uri(uri):
            raise InvalidInput("track_uri must be an at:// URI of a track record")
        track = await fetchone(conn, "SELECT id, record_uri, record_cid FROM tracks WHERE record_uri = ?", (uri,))
        if track is None:
            raise NotFound("track not found")
    elif track_id is not None:
        if not isinstance(track_id, int) or isinstance(track_id, bool):
            raise InvalidInput("track_id must be a track id (an integer)")
        seen = Where.of("t.id = ?", track_id) & visible(audience)
        track = await fetchone(conn, "SELECT t.id, t.source, t.record_uri, t.record_cid FROM tracks t"
                               f" WHERE {seen.sql}", seen.params)
        if track is None:
            raise NotFound(f"track {track_id} not found")
        if is_library(track):
            return track["id"], library_item_uri(track["id"]), ""
        if not track["record_uri"] or not track["record_cid"]:
            raise InvalidInput(f"track {track_id} has no ATProto record yet; try again once it is published")
    else:
        raise InvalidInput("send track_uri and track_cid (or track_id) of the track to add")
    if cid is None:
        cid = track["record_cid"]
    elif not isinstance(cid, str) or not lexicon.is_cid(cid):
        raise InvalidInput("track_cid must be the CID of the track's record")
    return track["id"], track["record_uri"], cid


async def add_item(db: Database, playlist_id: str, did: str, body: dict[str, Any], audience: Audience) -> None:
    """Append a track (any track with a record, or a library track) that `audience`, the owner, may see."""
    async with db.write() as conn:
        row = await _owned(conn, playlist_id, did)
        items = await _items(conn, row["id"])
        track_id, uri, cid = await _resolve_track(conn, body, audience)
        if any(i["track_uri"] == uri for i in items):
            raise InvalidInput("track already in playlist")
        if len(items) >= MAX_ITEMS:
            raise InvalidInput(f"a playlist holds at most {MAX_ITEMS} tracks")
        await conn.execute(
            "INSERT INTO playlist_items(playlist_id, position, track_id, track_uri, track_cid) VALUES (?, ?, ?, ?, ?)",
            (row["id"], (items[-1]["position"] + 1) if items else 0, track_id, uri, cid))
        await conn.execute(f"UPDATE playlists SET updated_at = {_NOW_SQL} WHERE id = ?", (row["id"],))
        await _publish(conn, row["id"])


async def remove_item(db: Database, playlist_id: str, did: str, track_uri: str) -> None:
    async with db.write() as conn:
        row = await _owned(conn, playlist_id, did)
        items = await _items(conn, row["id"])
        kept = [i for i in items if i["track_uri"] != track_uri]
        if len(kept) == len(items):
            raise NotFound("track not in playlist")
        await _write_items(conn, row["id"], [(i["track_id"], i["track_uri"], i["track_cid"], i["added_at"])
                                             for i in kept])
        await _publish(conn, row["id"])


def _uris(value: Any) -> list[str]:
    """plyr.fm's reorder body lists strongRefs ({uri, cid}); bare URIs are accepted too."""
    if not isinstance(value, list):
        raise InvalidInput("items must be a list of {uri, cid} in the new order")
    uris = []
    for item in value:
        uri = item.get("uri") if isinstance(item, dict) else item
        if not isinstance(uri, str) or not uri:
            raise InvalidInput("items must be a list of {uri, cid} in the new order")
        uris.append(uri)
    return uris


async def reorder(db: Database, playlist_id: str, did: str, items: Any) -> None:
    """Put the items in this order. It must name exactly the current items, each once: a reorder built from a
    stale copy of the playlist would otherwise drop or resurrect tracks."""
    uris = _uris(items)
    async with db.write() as conn:
        row = await _owned(conn, playlist_id, did)
        current = {i["track_uri"]: i for i in await _items(conn, row["id"])}
        if len(uris) != len(current) or set(uris) != set(current):
            raise InvalidInput("items must list exactly the playlist's current tracks, each once, in the new order")
        await _write_items(conn, row["id"], [(current[u]["track_id"], u, current[u]["track_cid"],
                                              current[u]["added_at"]) for u in uris])
        await _publish(conn, row["id"])


async def set_cover(db: Database, store: BlobStore, uploads: Uploads, playlist_id: str, did: str,
                    files: Mapping[str, StoredFile] | None) -> None:
    """Replace the playlist's cover with the image sent (see albums.change_cover), or remove it (`files` None)."""
    await check_owner(db, playlist_id, did)
    await change_cover(db, store, uploads, "playlists", files, lambda conn: _owned(conn, playlist_id, did))


# ---- reading ----------------------------------------------------------------------------------------------------


async def playlist_tracks(db: Database, playlist_id: str, where: Where) -> list[sqlite3.Row]:
    """The playlist's tracks that meet `where` (the read model's visible(audience), perhaps & playable()), in order;
    items whose track is gone are left out."""
    return await db.fetchall(f"{TRACK_SELECT} JOIN playlist_items i ON i.track_id = t.id WHERE i.playlist_id = ?"
                             f" AND {where.sql} ORDER BY i.position", [playlist_id, *where.params])


async def playlist_items(db: Database, playlist_id: str, audience: Audience) -> list[dict[str, Any]]:
    """The items as the strongRefs they were added with, and the local track each follows (None once deleted);
    library tracks' items only for an audience that may see the library."""
    items = await db.fetchall("SELECT * FROM playlist_items WHERE playlist_id = ? ORDER BY position", (playlist_id,))
    return [{"uri": i["track_uri"], "cid": i["track_cid"], "track_id": i["track_id"]} for i in items
            if audience.library or not i["track_uri"].startswith(LIBRARY_ITEM)]


async def playlist_detail(db: Database, row: sqlite3.Row, public_url: str, audience: Audience) -> dict[str, Any]:
    """Metadata, the tracks `audience` may see in order, and the items as strongRefs."""
    tracks = await playlist_tracks(db, row["id"], visible(audience))
    return {
        **playlist_json(row, public_url),
        "tracks": await tracks_json(db, tracks, audience.did, public_url),
        "items": await playlist_items(db, row["id"], audience),
    }


async def own_playlists(db: Database, did: str, public_url: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(PLAYLIST_SELECT + " WHERE p.owner_did = ? ORDER BY p.created_at DESC, p.id", (did,))
    return [playlist_json(r, public_url) for r in rows]


async def public_playlists(db: Database, did: str, public_url: str) -> list[dict[str, Any]]:
    """Someone's public playlists that they show on their profile (plyr.fm's by-artist listing)."""
    rows = await db.fetchall(PLAYLIST_SELECT + " WHERE p.owner_did = ? AND p.is_private = 0 AND p.show_on_profile = 1"
                             " ORDER BY p.created_at DESC, p.id", (did,))
    return [playlist_json(r, public_url) for r in rows]


async def playlist_by_uri(db: Database, uri: str) -> sqlite3.Row:
    row = await db.fetchone(PLAYLIST_SELECT + " WHERE p.record_uri = ?", (uri,))
    if row is None:
        raise NotFound("playlist not found")
    return row
