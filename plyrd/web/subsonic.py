"""`/rest/<method>[.view]`: the Subsonic-compatible API (plyr.fm's `api/subsonic`), thin over plyrd.subsonic.

Every answer to a Subsonic client is HTTP 200: failures are the envelope with status="failed" and a Subsonic error
code, including unknown methods (plyr.fm's catch-all). Binary methods (stream, download, getCoverArt) answer the
file, through the same range-capable serving as /audio and /images.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ..auth.service import Session
from ..catalog import likes, plays
from ..catalog.downloads import track_refusal
from ..catalog.tracks import Audience
from ..errors import Conflict, NotFound, PlyrdError
from ..node import Node
from ..subsonic import catalog as sc
from ..subsonic.auth import authenticate
from ..subsonic.envelope import (
    GENERIC,
    MISSING_PARAMETER,
    NOT_AUTHORIZED,
    NOT_FOUND,
    SubsonicError,
    failed,
    ok,
    to_json,
    to_xml,
)
from .bodies import form_fields
from .context import node
from .streaming import serve_file

SEARCH_INDEX_MAX = 50  # the most answers the search index gives in one go (GET /search/ limit)

bp = Blueprint("subsonic", __name__)

_CALLBACK = re.compile(r"[A-Za-z_$][\w$.]{0,99}")


@dataclass
class Call:
    params: MultiDict[str, str]
    session: Session
    node: Node

    @property
    def did(self) -> str:
        return self.session.did

    @property
    def audience(self) -> Audience:
        """The caller as the catalog's visibility rules see them."""
        return Audience(self.did, is_admin=self.node.auth.is_admin(self.did, self.session.handle))

    def one(self) -> dict[str, str]:
        return {k: v for k, v in self.params.items()}

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if not value:
            raise SubsonicError(MISSING_PARAMETER, f"Required parameter is missing: {name}")
        return value


Handler = Callable[[Call], Awaitable[dict[str, Any] | Response]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name.lower()] = fn
        return fn
    return register


def _render(params: MultiDict[str, str], response: dict[str, Any]) -> Response:
    fmt = (params.get("f") or "xml").lower()
    if fmt == "json":
        return Response(to_json(response), content_type="application/json; charset=utf-8")
    if fmt == "jsonp" and _CALLBACK.fullmatch(callback := params.get("callback") or ""):
        return Response(callback.encode() + b"(" + to_json(response) + b");",
                        content_type="application/javascript; charset=utf-8")
    return Response(to_xml(response), content_type="text/xml; charset=utf-8")


@bp.route("/rest/<name>", methods=["GET", "POST", "HEAD"])
async def rest(name: str) -> Response:
    params: MultiDict[str, str] = MultiDict(request.args)
    if request.method == "POST":
        # Clients may POST the parameters form-encoded (OpenSubsonic's formPost); they never carry a cookie session.
        for key, values in (await form_fields()).items():
            for value in values:
                params.add(key, value)
    name = name.removesuffix(".view")
    try:
        handler = METHODS.get(name.lower())
        if handler is None:
            raise SubsonicError(NOT_FOUND, f"Unknown or unsupported method: {name}")
        n = node()
        session = await authenticate(n.auth, params)
        result = await handler(Call(params, session, n))
    except SubsonicError as e:
        return _render(params, failed(e.code, e.message))
    except NotFound as e:
        return _render(params, failed(NOT_FOUND, e.detail))
    except PlyrdError as e:
        return _render(params, failed(GENERIC, e.detail))
    if isinstance(result, Response):
        return result
    return _render(params, ok(result))


@bp.after_request
async def cors(response: Response) -> Response:
    # Credentials travel as parameters, never cookies, so any origin may call: browser-based Subsonic clients need it.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# ---- system -----------------------------------------------------------------------------------------------------


@method("ping")
async def ping(call: Call) -> dict[str, Any]:
    return {}


@method("getLicense")
async def get_license(call: Call) -> dict[str, Any]:
    return {"license": {"valid": True}}


@method("getMusicFolders")
async def get_music_folders(call: Call) -> dict[str, Any]:
    return {"musicFolders": {"musicFolder": [{"id": 1, "name": "plyrd"}]}}


@method("getOpenSubsonicExtensions")
async def get_extensions(call: Call) -> dict[str, Any]:
    # formPost is accepted but not advertised: a browser-hosted client on another origin that POSTs would be
    # refused by the node's cross-site check (plyrd.web.viewer), so such clients should keep to GET.
    return {"openSubsonicExtensions": [{"name": "apiKeyAuthentication", "versions": [1]}]}


@method("getUser")
async def get_user(call: Call) -> dict[str, Any]:
    # What this API lets a developer token do: listen, download, scrobble; no playlist editing or admin here.
    return {"user": {"username": call.session.handle or call.did, "scrobblingEnabled": True, "adminRole": False,
                     "settingsRole": False, "downloadRole": True, "uploadRole": False, "playlistRole": False,
                     "coverArtRole": False, "commentRole": False, "podcastRole": False, "streamRole": True,
                     "jukeboxRole": False, "shareRole": False, "videoConversionRole": False, "folder": [1]}}


@method("getScanStatus")
async def get_scan_status(call: Call) -> dict[str, Any]:
    return {"scanStatus": {"scanning": False, "count": await sc.song_count(call.node.db, call.audience)}}


@method("getNowPlaying")
async def get_now_playing(call: Call) -> dict[str, Any]:
    return {"nowPlaying": {}}


# ---- browsing ---------------------------------------------------------------------------------------------------


@method("getArtists")
async def get_artists(call: Call) -> dict[str, Any]:
    return {"artists": {"ignoredArticles": "", "index": sc.index(await sc.artists(call.node.db, call.audience))}}


@method("getIndexes")
async def get_indexes(call: Call) -> dict[str, Any]:
    index = sc.index(await sc.artists(call.node.db, call.audience))
    return {"indexes": {"ignoredArticles": "", "lastModified": 0, "index": index}}


@method("getArtist")
async def get_artist(call: Call) -> dict[str, Any]:
    entry, albums = await sc.get_artist(call.node.db, call.required("id"), call.audience)
    return {"artist": {**entry, "album": [sc.album(a) for a in albums]}}


@method("getAlbum")
async def get_album(call: Call) -> dict[str, Any]:
    row, songs = await sc.get_album(call.node.db, call.required("id"), call.audience)
    liked = await sc.liked_ids(call.node.db, call.did)
    return {"album": {**sc.album(row), "song": [sc.song(s, liked) for s in songs]}}


@method("getMusicDirectory")
async def get_music_directory(call: Call) -> dict[str, Any]:
    """Folder-style browsing: an artist's directory holds their albums, an album's holds its songs."""
    raw = call.required("id")
    db = call.node.db
    if raw.startswith("ar-"):
        entry, albums = await sc.get_artist(db, raw, call.audience)
        return {"directory": {"id": raw, "name": entry["name"], "child": [sc.album(a) for a in albums]}}
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
    rows = await sc.album_list(call.node.db, call.one(), call.audience)
    return {"albumList2": {"album": [sc.album(r) for r in rows]}}


@method("getAlbumList")
async def get_album_list(call: Call) -> dict[str, Any]:
    rows = await sc.album_list(call.node.db, call.one(), call.audience)
    return {"albumList": {"album": [sc.album(r) for r in rows]}}


@method("getRandomSongs")
async def get_random_songs(call: Call) -> dict[str, Any]:
    rows = await sc.random_songs(call.node.db, call.one(), call.audience)
    liked = await sc.liked_ids(call.node.db, call.did)
    return {"randomSongs": {"song": [sc.song(r, liked) for r in rows]}}


@method("getGenres")
async def get_genres(call: Call) -> dict[str, Any]:
    return {"genres": {"genre": await sc.genres(call.node.db, call.audience)}}


@method("search3")
async def search3(call: Call) -> dict[str, Any]:
    """Songs come from the node's search index when it can answer (relevance, typos, folded accents): a query of 2
    to 100 characters whose page lies within the index's first 50 answers. Otherwise, and for artists and albums,
    substring matching (an empty query lists everything, as clients syncing a library expect)."""
    params = call.one()
    ranked = None
    query = (params.get("query") or "").strip().strip('"')
    try:
        count = int(params.get("songCount") or 20)
        offset = int(params.get("songOffset") or 0)
    except ValueError:
        count, offset = 0, 0  # sc.search reports the bad number in Subsonic's words
    if 2 <= len(query) <= 100 and 0 < count and offset >= 0 and offset + count <= SEARCH_INDEX_MAX:
        try:
            found = await call.node.search.search(query, "tracks", str(offset + count), call.audience)
        except PlyrdError:
            found = None  # the index is rebuilding or refuses this query: substring matching still answers
        if found is not None:
            ranked = [int(t["id"]) for t in found["groups"]["tracks"]][offset:]
    return {"searchResult3": await sc.search(call.node.db, params, call.audience, ranked)}


@method("getPlaylists")
async def get_playlists(call: Call) -> dict[str, Any]:
    rows = await sc.playlists(call.node.db, call.audience, call.params.get("username") or None)
    return {"playlists": {"playlist": [sc.playlist(r) for r in rows]}}


@method("getPlaylist")
async def get_playlist(call: Call) -> dict[str, Any]:
    row, songs = await sc.get_playlist(call.node.db, call.required("id"), call.audience)
    liked = await sc.liked_ids(call.node.db, call.did)
    return {"playlist": {**sc.playlist(row), "entry": [sc.song(s, liked) for s in songs]}}


@method("getStarred2")
async def get_starred2(call: Call) -> dict[str, Any]:
    return {"starred2": await _starred(call)}


@method("getStarred")
async def get_starred(call: Call) -> dict[str, Any]:
    return {"starred": await _starred(call)}


async def _starred(call: Call) -> dict[str, Any]:
    rows = await sc.starred(call.node.db, call.audience)
    liked = {r["id"] for r in rows}
    return {"artist": [], "album": [], "song": [sc.song(r, liked) for r in rows]}


# ---- files ------------------------------------------------------------------------------------------------------


async def _serve(call: Call, file: sc.File) -> Response:
    return await serve_file(call.node.blobs.path_for(file.sha256), mime=file.mime, etag=file.sha256,
                            download_name=file.download_name)


@method("stream")
async def stream(call: Call) -> Response:
    """The playable file as stored (no on-the-fly transcoding: maxBitRate and format are ignored)."""
    return await _serve(call, sc.stream_file(await sc.get_song(call.node.db, call.required("id"), call.audience)))


@method("download")
async def download(call: Call) -> Response:
    """The original, when the track's download policy lets the caller have it (error 50 otherwise); `stream`
    never asks."""
    row = await sc.get_song(call.node.db, call.required("id"), call.audience)
    if (refusal := track_refusal(row, call.did)) is not None:
        raise SubsonicError(NOT_AUTHORIZED, refusal.detail)
    return await _serve(call, sc.original(row))


@method("getCoverArt")
async def get_cover_art(call: Call) -> Response:
    size = call.params.get("size")
    wanted = sc.bounded(size, default=0, maximum=10**6) if size else None
    return await _serve(call, await sc.cover_art(call.node.db, call.required("id"), wanted, call.audience))


# ---- listening --------------------------------------------------------------------------------------------------


@method("scrobble")
async def scrobble(call: Call) -> dict[str, Any]:
    """submission=false is "now playing": ignored, as plyr.fm does. Otherwise each id counts a play by the same
    rule (and teal.fm scrobble) as POST /tracks/{id}/play."""
    ids = call.params.getlist("id")
    if not ids:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: id")
    if (call.params.get("submission") or "true").lower() == "false":
        return {}
    n = call.node
    listener = plays.Listener.signed_in(call.did, teal_granted=call.session.teal_granted)
    for raw in ids:
        await plays.count_play(n.db, track_id=sc.track_id_of(raw), listener=listener, public_url=n.config.public_url)
    return {}


def _song_ids(call: Call) -> list[int]:
    # plyrd likes tracks only; albumId/artistId stars have nothing to map to and are ignored.
    return [sc.track_id_of(raw) for raw in call.params.getlist("id")]


@method("star")
async def star(call: Call) -> dict[str, Any]:
    """A star is a like (an fm.plyr.like record in the caller's PDS); starring a liked track again is a no-op."""
    for track_id in _song_ids(call):
        try:
            await likes.like(call.node.db, did=call.did, track_id=track_id)
        except Conflict:
            pass
    return {}


@method("unstar")
async def unstar(call: Call) -> dict[str, Any]:
    db = call.node.db
    for track_id in _song_ids(call):
        await sc.get_song(db, f"tr-{track_id}", call.audience)  # an unknown song is error 70; an unliked one is a no-op
        try:
            await likes.unlike(db, did=call.did, track_id=track_id)
        except NotFound:
            pass
    return {}

