"""Subsonic's playlist methods, over the web player's playlists (plyrd.catalog.playlists): the same rows, and the
same fm.plyr.list records reaching the owner's PDS through the outbox. `public=false` is a private playlist (never
on a PDS). Only the owner changes a playlist: someone else's public one is error 50, their private one does not
exist (70)."""

from __future__ import annotations

from typing import Any

from ...catalog import playlists
from ...subsonic import catalog as sc
from ...subsonic import state
from ...subsonic.envelope import GENERIC, MISSING_PARAMETER, SubsonicError
from .call import Call, method


def _public(call: Call) -> dict[str, Any]:
    """`public` as the catalog's is_private change (nothing when absent)."""
    raw = call.params.get("public")
    if raw is None or raw == "":
        return {}
    if raw.lower() not in ("true", "false"):
        raise SubsonicError(GENERIC, "public must be true or false")
    return {"is_private": raw.lower() == "false"}


async def _with_songs(call: Call, raw_id: str) -> dict[str, Any]:
    """A `PlaylistWithSongs`: getPlaylist's answer, and createPlaylist's (OpenSubsonic)."""
    row, songs = await sc.get_playlist(call.node.db, raw_id, call.audience)
    liked = await sc.liked_ids(call.node.db, call.did)
    comments = await state.playlist_comments(call.node.db, [row["id"]])
    return {**sc.playlist(row), "comment": comments.get(row["id"]), "entry": [sc.song(s, liked) for s in songs]}


@method("getPlaylists")
async def get_playlists(call: Call) -> dict[str, Any]:
    rows = await sc.playlists(call.node.db, call.audience, call.params.get("username") or None)
    comments = await state.playlist_comments(call.node.db, (r["id"] for r in rows))
    return {"playlists": {"playlist": [{**sc.playlist(r), "comment": comments.get(r["id"])} for r in rows]}}


@method("getPlaylist")
async def get_playlist(call: Call) -> dict[str, Any]:
    return {"playlist": await _with_songs(call, call.required("id"))}


@method("createPlaylist")
async def create_playlist(call: Call) -> dict[str, Any]:
    """A new playlist named `name` holding the songs `songId` in order; with `playlistId`, that playlist's songs are
    replaced (and it is renamed when `name` is given). Answers the playlist."""
    db, did = call.node.db, call.did
    raw_id = call.params.get("playlistId")
    name = call.params.get("name")
    track_ids = await state.require_songs(db, call.params.getlist("songId"), call.audience)
    if raw_id:
        playlist_id = sc.uuid_of(raw_id, "pl-", "playlist")
        changes = {**({"name": name} if name else {}), **_public(call)}
        await playlists.update_playlist(db, playlist_id, did, changes, add_tracks=track_ids, replace_items=True,
                                        audience=call.audience)
    elif not name:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: name (or playlistId)")
    else:
        playlist_id = await playlists.create_playlist(db, did, {"name": name, **_public(call)}, track_ids=track_ids,
                                                      audience=call.audience)
    return {"playlist": await _with_songs(call, f"pl-{playlist_id}")}


@method("updatePlaylist")
async def update_playlist(call: Call) -> dict[str, Any]:
    """Rename, comment, make public or private, append `songIdToAdd` and remove the songs at `songIndexToRemove`
    (positions in the playlist as getPlaylist lists it to its owner), all in one write and one record."""
    db, did = call.node.db, call.did
    raw_id = call.required("playlistId")
    _, shown = await sc.get_playlist(db, raw_id, call.audience)  # someone else's private playlist is 70
    playlist_id = sc.uuid_of(raw_id, "pl-", "playlist")
    changes: dict[str, Any] = _public(call)
    if call.params.get("name"):
        changes["name"] = call.params["name"]
    raw_comment = call.params.get("comment")
    comment = state.comment_of(raw_comment)
    remove = set()
    for raw in call.params.getlist("songIndexToRemove"):
        index = state.whole("songIndexToRemove", raw)
        if index >= len(shown):
            raise sc.not_found(f"song at index {index}")
        remove.add(shown[index]["id"])
    add = await state.require_songs(db, call.params.getlist("songIdToAdd"), call.audience)
    await playlists.update_playlist(db, playlist_id, did, changes, remove_tracks=remove, add_tracks=add,
                                    audience=call.audience)
    if raw_comment is not None:
        await state.set_playlist_comment(db, playlist_id, comment)
    return {}


@method("deletePlaylist")
async def delete_playlist(call: Call) -> dict[str, Any]:
    n = call.node
    playlist_id = sc.uuid_of(call.required("id"), "pl-", "playlist")
    await playlists.delete_playlist(n.db, n.blobs, playlist_id, call.did)
    return {}
