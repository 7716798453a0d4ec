"""Subsonic's browsing, lists, search and starred reads: artists, albums, songs, genres (playlists: playlists.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from ...catalog.tracks import Audience
from ...subsonic import catalog as sc
from ...subsonic import folders, snapshot, state
from ...subsonic import search as subsonic_search
from .call import Call, method


async def _scope(call: Call) -> folders.Scope:
    """The music folder `musicFolderId` narrows to (every folder the caller may see without it)."""
    return await folders.scope(call.node.db, call.audience, call.params.get("musicFolderId"))


# Each of these methods reads what it answers in one plain function on a reader's thread (Database.read_fn): one
# hop, one snapshot of the database; whole-catalog work comes from plyrd.subsonic.snapshot's kept answers.


def _read_index(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience, did: str,
                folder: str | None) -> list[dict[str, Any]]:
    """The artists by letter (tag artists for the music folder), those the caller starred marked
    (plyrd.subsonic.state)."""
    stars = state.read_artist_stars(conn, did)
    scope = folders.read_scope(conn, audience, folder)
    index = sc.index(sc.read_artists(conn, snaps, audience, scope.where))
    return [{**group, "artist": [state.marked(a, stars) for a in group["artist"]]} for group in index]


def _read_album_list(conn: sqlite3.Connection, snaps: snapshot.Snapshots, params: dict[str, str],
                     audience: Audience, did: str) -> list[dict[str, Any]]:
    scope = folders.read_scope(conn, audience, params.get("musicFolderId"))
    albums, page = sc.read_album_page(conn, snaps, params, audience, scope.where)
    return state.marked_entries(conn, did, albums.entries(page))


def _read_album(conn: sqlite3.Connection, snaps: snapshot.Snapshots, raw_id: str, audience: Audience,
                did: str) -> dict[str, Any]:
    row, songs = sc.read_album(conn, snaps, raw_id, audience)
    liked = sc.read_liked(conn, did, songs)
    (album,) = state.marked_albums(conn, did, [row])
    return {**album, "song": [sc.song(s, liked) for s in songs]}


def _read_random_songs(conn: sqlite3.Connection, snaps: snapshot.Snapshots, params: dict[str, str],
                       audience: Audience, did: str) -> list[dict[str, Any]]:
    scope = folders.read_scope(conn, audience, params.get("musicFolderId"))
    found = sc.read_random_songs(conn, snaps, params, audience, scope.where)
    liked = sc.read_liked(conn, did, found)
    return [sc.song(r, liked) for r in found]


async def _index(call: Call) -> list[dict[str, Any]]:
    db = call.node.db
    return await db.read_fn(_read_index, snapshot.of(db), call.audience, call.did, call.params.get("musicFolderId"))


async def _album_list(call: Call) -> list[dict[str, Any]]:
    db = call.node.db
    return await db.read_fn(_read_album_list, snapshot.of(db), call.one(), call.audience, call.did)


async def _albums(call: Call, rows: list[Any]) -> list[dict[str, Any]]:
    return await call.node.db.read_fn(state.marked_albums, call.did, rows)


@method("getArtists")
async def get_artists(call: Call) -> dict[str, Any]:
    return {"artists": {"ignoredArticles": "", "index": await _index(call)}}


@method("getIndexes")
async def get_indexes(call: Call) -> dict[str, Any]:
    """Folder-style: the uploads' artists (then albums, songs) beside each library folder's top directories, by
    letter, and the songs right at a library folder's top as `child`."""
    db, audience = call.node.db, call.audience
    scope = await _scope(call)
    stars = await state.artist_stars(db, call.did)
    entries = []
    if scope.uploads:
        entries = [state.marked(sc.artist(r), stars)
                   for r in await sc.artists(db, audience, folders.Scope(uploads=True, library=False).where)]
    children: list[dict[str, Any]] = []
    liked = await sc.liked_ids(db, call.did)
    for top in await folders.tops(db, audience, scope):
        entries += [folders.index_entry(sub) for sub in top.subdirectories]
        children += [sc.song(s, liked) for s in top.songs]
    indexes: dict[str, Any] = {"ignoredArticles": "", "lastModified": 0, "index": sc.index_entries(entries)}
    if children:
        indexes["child"] = children
    return {"indexes": indexes}


@method("getArtist")
async def get_artist(call: Call) -> dict[str, Any]:
    entry, albums = await sc.get_artist(call.node.db, call.required("id"), call.audience)
    entry = state.marked(entry, await state.artist_stars(call.node.db, call.did))
    return {"artist": {**entry, "album": await _albums(call, albums)}}


@method("getAlbum")
async def get_album(call: Call) -> dict[str, Any]:
    db = call.node.db
    return {"album": await db.read_fn(_read_album, snapshot.of(db), call.required("id"), call.audience, call.did)}


@method("getMusicDirectory")
async def get_music_directory(call: Call) -> dict[str, Any]:
    """Folder-style browsing: an artist's directory holds their albums, an album's holds its songs."""
    raw = call.required("id")
    db = call.node.db
    if raw.startswith("dir-"):  # a library directory: its subdirectories, then its songs
        found = await folders.directory(db, call.audience, raw)
        liked = await sc.liked_ids(db, call.did)
        entry: dict[str, Any] = {"id": found.id, "name": found.name}
        if found.parent:
            entry["parent"] = found.parent
        entry["child"] = ([folders.subdirectory_entry(found.id, sub) for sub in found.subdirectories]
                          + [sc.song(s, liked) for s in found.songs])
        return {"directory": entry}
    if raw.startswith("ar-"):
        entry, albums = await sc.get_artist(db, raw, call.audience)
        return {"directory": {"id": raw, "name": entry["name"], "child": await _albums(call, albums)}}
    row, songs = await sc.get_album(db, raw, call.audience)
    liked = await sc.liked_ids(db, call.did)
    return {"directory": {"id": raw, "name": row["name"], "parent": f"ar-{row['artist_did']}",
                          "child": [sc.song(s, liked) for s in songs]}}


@method("getSong")
async def get_song(call: Call) -> dict[str, Any]:
    row = await sc.get_song(call.node.db, call.required("id"), call.audience)
    return {"song": sc.song(row, await sc.liked_ids(call.node.db, call.did))}


@method("getAlbumList2")
async def get_album_list2(call: Call) -> dict[str, Any]:
    return {"albumList2": {"album": await _album_list(call)}}


@method("getAlbumList")
async def get_album_list(call: Call) -> dict[str, Any]:
    return {"albumList": {"album": await _album_list(call)}}


@method("getRandomSongs")
async def get_random_songs(call: Call) -> dict[str, Any]:
    db = call.node.db
    return {"randomSongs": {"song": await db.read_fn(_read_random_songs, snapshot.of(db), call.one(), call.audience,
                                                     call.did)}}


@method("getGenres")
async def get_genres(call: Call) -> dict[str, Any]:
    return {"genres": {"genre": await sc.genres(call.node.db, call.audience)}}


@method("search3")
async def search3(call: Call) -> dict[str, Any]:
    """The node's search index decides what matches and in which order, as GET /search/ (plyrd.subsonic.search);
    an empty query lists everything, as clients syncing a library expect."""
    return {"searchResult3": await subsonic_search.search3(call.node.db, call.node.search, call.one(), call.audience)}


@method("getStarred2")
async def get_starred2(call: Call) -> dict[str, Any]:
    return {"starred2": await _starred(call)}


@method("getStarred")
async def get_starred(call: Call) -> dict[str, Any]:
    return {"starred": await _starred(call)}


async def _starred(call: Call) -> dict[str, Any]:
    """Liked songs, and the albums and artists starred on this node (plyrd.subsonic.state), latest first."""
    db, audience = call.node.db, call.audience
    liked = await sc.liked_ids(db, call.did)
    return {
        "artist": [{**sc.artist(r), "starred": state.iso(at)} for r, at in await state.starred_artists(db, audience)],
        "album": [{**sc.album(r), "starred": state.iso(at)} for r, at in await state.starred_albums(db, audience)],
        "song": [sc.song(r, liked) for r in await sc.starred(db, audience)],
    }
