"""Lists by their record: plyr.fm's routes that name an album, a playlist or a liked list by its fm.plyr.list record
rather than by id. GET /lists/by-uri says what a list record is (and where its page lives); PUT /lists/{rkey}/reorder
puts the caller's list with that record key in a new order, whichever kind it is.

Each kind keeps its own rules (plyrd.catalog.albums, playlists, likes): the new order must name exactly the list's
current tracks, each once, so a reorder made from a stale copy cannot drop or bring back a track.
"""

from __future__ import annotations

from typing import Any

from ..db import Database
from ..errors import InvalidInput, NotFound
from . import albums, likes, playlists
from .lists import LIST_COLLECTION


async def list_by_uri(db: Database, uri: str) -> dict[str, Any]:
    """plyr.fm's ListByUriResponse for an fm.plyr.list record the node knows: an album ({type, id, handle, slug}, the
    pieces of its page's address) or a public playlist ({type, id}); albums first, as plyr.fm looks."""
    if not uri:
        raise InvalidInput("add ?uri=at://... of the list's record")
    album = await db.fetchone("SELECT a.id, a.slug, u.handle, u.did FROM albums a JOIN users u ON u.did = a.artist_did"
                              " WHERE a.record_uri = ?", (uri,))
    if album is not None:
        return {"type": "album", "id": album["id"], "handle": album["handle"] or album["did"], "slug": album["slug"]}
    playlist = await db.fetchone("SELECT id FROM playlists WHERE record_uri = ?", (uri,))
    if playlist is not None:
        return {"type": "playlist", "id": playlist["id"], "handle": None, "slug": None}
    raise NotFound("list not found")


def _item_uris(items: Any) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("uri"), str) for i in items):
        raise InvalidInput("items must be a list of {uri, cid} strongRefs in the new order")
    return [i["uri"] for i in items]


async def reorder_list(db: Database, did: str, rkey: str, items: Any) -> dict[str, Any]:
    """PUT /lists/{rkey}/reorder: the caller's album, public playlist or liked list at
    at://{did}/fm.plyr.list/{rkey}, in the order of `items` ({uri, cid} of each track record). Answers the list
    record's new {uri, cid}, as plyr.fm."""
    uri = f"at://{did}/{LIST_COLLECTION}/{rkey}"
    playlist = await db.fetchone("SELECT id FROM playlists WHERE owner_did = ? AND record_uri = ?", (did, uri))
    if playlist is not None:
        await playlists.reorder(db, playlist["id"], did, items)
        row = await db.fetchone("SELECT record_uri, record_cid FROM playlists WHERE id = ?", (playlist["id"],))
        return {"uri": row["record_uri"], "cid": row["record_cid"]} if row else {"uri": uri, "cid": None}
    album = await db.fetchone("SELECT id FROM albums WHERE artist_did = ? AND record_uri = ?", (did, uri))
    if album is not None:
        uris = _item_uris(items)
        members = {r["record_uri"]: r["track_id"] for r in await db.fetchall(
            "SELECT x.track_id, t.record_uri FROM album_tracks x JOIN tracks t ON t.id = x.track_id"
            " WHERE x.album_id = ?", (album["id"],))}
        if len(uris) != len(members) or set(uris) != set(members):
            raise InvalidInput("items must list exactly the album's current tracks, each once, in the new order")
        await albums.set_order(db, album["id"], did, [members[u] for u in uris])
        row = await db.fetchone("SELECT record_uri, record_cid FROM albums WHERE id = ?", (album["id"],))
        return {"uri": row["record_uri"], "cid": row["record_cid"]} if row else {"uri": uri, "cid": None}
    liked = await db.fetchone("SELECT 1 FROM liked_lists WHERE did = ? AND rkey = ?", (did, rkey))
    if liked is not None:
        _item_uris(items)  # plyr.fm's body: strongRefs (likes.reorder also takes track ids)
        result = await likes.reorder(db, did, items)
        return {"uri": result["uri"], "cid": result["cid"]}
    raise NotFound("list not found")
