"""Subsonic's discovery methods: search2 and the deprecated search, songs by genre, top songs, similar songs,
artist and album info (the queries: plyrd.subsonic.discovery)."""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from ...subsonic import catalog as sc
from ...subsonic import discovery as sd
from .browsing import search3
from .call import Call, method


async def _songs(call: Call, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    liked = await sc.liked_ids(call.node.db, call.did)
    return [sc.song(r, liked) for r in rows]


@method("search2")
async def search2(call: Call) -> dict[str, Any]:
    """search3's answer (the search index's songs, artists and albums: plyrd.subsonic.search) in folder style:
    artists as `Artist`, albums as `Child` directories (catalog.album carries both shapes' fields)."""
    found = cast(dict[str, Any], await search3(call))["searchResult3"]
    artists = [sd.folder_artist(a) for a in found["artist"]]
    return {"searchResult2": {"artist": artists, "album": found["album"], "song": found["song"]}}


@method("search")
async def search(call: Call) -> dict[str, Any]:
    found = await sd.search_v1(call.node.db, call.one(), call.audience)
    return {"searchResult": {"offset": found.offset, "totalHits": found.total,
                             "match": await _songs(call, found.rows)}}


@method("getSongsByGenre")
async def get_songs_by_genre(call: Call) -> dict[str, Any]:
    rows = await sd.songs_by_genre(call.node.db, call.one(), call.audience)
    return {"songsByGenre": {"song": await _songs(call, rows)}}


@method("getTopSongs")
async def get_top_songs(call: Call) -> dict[str, Any]:
    rows = await sd.top_songs(call.node.db, call.one(), call.audience)
    return {"topSongs": {"song": await _songs(call, rows)}}


@method("getSimilarSongs")
async def get_similar_songs(call: Call) -> dict[str, Any]:
    rows = await sd.similar_songs(call.node.db, call.one(), call.audience)
    return {"similarSongs": {"song": await _songs(call, rows)}}


@method("getSimilarSongs2")
async def get_similar_songs2(call: Call) -> dict[str, Any]:
    rows = await sd.similar_songs(call.node.db, call.one(), call.audience)
    return {"similarSongs2": {"song": await _songs(call, rows)}}


@method("getArtistInfo")
async def get_artist_info(call: Call) -> dict[str, Any]:
    info = await sd.artist_info(call.node.db, call.one(), call.audience)
    return {"artistInfo": sd.artist_info_entry(info, id3=False)}


@method("getArtistInfo2")
async def get_artist_info2(call: Call) -> dict[str, Any]:
    info = await sd.artist_info(call.node.db, call.one(), call.audience)
    return {"artistInfo2": sd.artist_info_entry(info, id3=True)}


@method("getAlbumInfo")
@method("getAlbumInfo2")  # answered as `albumInfo` too: albums have no folder form to tell apart
async def get_album_info(call: Call) -> dict[str, Any]:
    return {"albumInfo": await sd.album_info(call.node.db, call.one(), call.audience, call.node.config.public_url)}
