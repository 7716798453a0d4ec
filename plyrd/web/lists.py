"""Album and playlist endpoints on plyr.fm's paths (/albums/..., /lists/playlists/...), plus the covers they show.

Thin handlers: parse, authorize, call plyrd.catalog.albums / playlists, shape the answer from the local database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response, jsonify, request

from ..catalog import albums, list_refs, playlists
from ..catalog.tracks import visible
from ..errors import InvalidInput
from . import conditional, upload_stream
from .bodies import form_fields, json_body, query_int
from .context import node
from .media import PRIVATE_IMMUTABLE
from .streaming import serve_file
from .viewer import current_audience, current_viewer, require_uploader, require_viewer

albums_bp = Blueprint("albums", __name__)
lists_bp = Blueprint("lists", __name__)


async def _changes() -> dict[str, Any]:
    """PATCH bodies: plyr.fm sends album changes as query parameters and playlist changes as a form; JSON works too."""
    changes: dict[str, Any] = request.args.to_dict()
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        changes.update({k: v[0] for k, v in (await form_fields()).items()})
    elif await request.get_data():
        changes.update(await json_body())
    return changes


async def _cover_files() -> dict[str, upload_stream.UploadedFile]:
    """The files of a cover upload (a multipart form with the image as `image`), stored for the catalog to take."""
    n = node()
    form = await upload_stream.read_multipart(request, store=n.blobs, max_files=1,
                                              max_file_bytes=n.config["media.max_image_mb"] * 1024 * 1024)
    return form.files


def _cover_answer(row: Any, public_url: str) -> dict[str, Any]:
    return {"image_id": row["image_sha"], **albums.cover_urls(row, public_url)}


# ---- albums -----------------------------------------------------------------------------------------------------


@albums_bp.get("/albums/")
async def list_albums() -> Response:
    n = node()
    return jsonify({"albums": await albums.list_albums(n.db, n.config.public_url, current_audience())})


@albums_bp.post("/albums/")
async def create_album() -> Response:
    viewer = await require_uploader()
    n = node()
    album_id = await albums.create_album(n.db, viewer.did, await json_body())
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.get("/albums/<handle>")
async def artist_albums(handle: str) -> Response:
    n = node()
    viewer = current_viewer()

    async def answer() -> dict[str, Any]:
        return {"albums": await albums.list_artist_albums(n.db, handle, n.config.public_url,
                                                          viewer_did=viewer.did if viewer else None)}

    return await conditional.catalog_answer(answer, viewer_dependent=True)  # the artist also sees empty albums


@albums_bp.get("/albums/<handle>/<slug>")
async def album_detail(handle: str, slug: str) -> Response:
    n = node()
    return jsonify(await albums.album_detail(n.db, handle, slug, n.config.public_url, current_audience()))


@albums_bp.get("/albums/<handle>/<slug>/download")
async def album_download(handle: str, slug: str) -> Response:
    """The album as one zip of its originals (stored, not recompressed), streamed as it is written."""
    n = node()
    filename, body = await albums.album_zip(n.db, n.blobs, handle, slug, current_audience())
    response = Response(body, content_type="application/zip")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    response.timeout = None  # a long album to a slow connection takes as long as it takes
    return response


@albums_bp.patch("/albums/<album_id>")
async def update_album(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.update_album(n.db, album_id, viewer.did, await _changes())
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.delete("/albums/<album_id>")
async def delete_album(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    raw = request.args.get("cascade", "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidInput("cascade must be true or false")
    cascade = raw in ("true", "1")
    deleted = await albums.delete_album(n.db, n.blobs, album_id, viewer.did, cascade=cascade)
    return jsonify({"deleted": True, "cascade": cascade, "deleted_track_ids": deleted})


@albums_bp.post("/albums/<album_id>/cover")
@upload_stream.streamed_body
async def album_cover(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.check_owner(n.db, album_id, viewer.did)  # before reading a body that may be 20 MB
    await albums.set_cover(n.db, n.blobs, n.uploads, album_id, viewer.did, await _cover_files())
    return jsonify(_cover_answer(await albums.get_album(n.db, album_id), n.config.public_url))


@albums_bp.delete("/albums/<album_id>/cover")
async def album_cover_delete(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.set_cover(n.db, n.blobs, n.uploads, album_id, viewer.did, None)
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.post("/albums/<album_id>/finalize")
async def album_finalize(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.finalize(n.db, album_id, viewer.did, (await json_body()).get("track_ids"))
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.put("/albums/<album_id>/tracks")
async def album_set_tracks(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.set_order(n.db, album_id, viewer.did, (await json_body()).get("track_ids"))
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.post("/albums/<album_id>/tracks")
async def album_add_track(album_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    body = await json_body()
    await albums.add_track(n.db, album_id, viewer.did, body.get("track_id"), body.get("position"))
    return jsonify(await albums.album_metadata(n.db, album_id, n.config.public_url))


@albums_bp.delete("/albums/<album_id>/tracks/<int:track_id>")
async def album_remove_track(album_id: str, track_id: int) -> Response:
    viewer = require_viewer()
    n = node()
    await albums.remove_track(n.db, album_id, viewer.did, track_id)
    return jsonify({"removed": True, "track_id": track_id})


# ---- playlists --------------------------------------------------------------------------------------------------


@lists_bp.post("/lists/playlists")
async def create_playlist() -> Response:
    viewer = require_viewer()
    n = node()
    playlist_id = await playlists.create_playlist(n.db, viewer.did, await json_body())
    return jsonify(playlists.playlist_json(await playlists.get_playlist(n.db, playlist_id, viewer.did),
                                           n.config.public_url))


@lists_bp.get("/lists/playlists")
async def own_playlists() -> Response:
    viewer = require_viewer()
    n = node()
    return jsonify(await playlists.own_playlists(n.db, viewer.did, n.config.public_url))


@lists_bp.get("/lists/playlists/by-artist/<did>")
async def artist_playlists(did: str) -> Response:
    n = node()
    return jsonify(await playlists.public_playlists(n.db, did, n.config.public_url))


@lists_bp.get("/lists/playlists/by-uri")
async def playlist_by_uri() -> Response:
    n = node()
    uri = request.args.get("uri", "")
    if not uri:
        raise InvalidInput("add ?uri=at://... of the playlist's record")
    row = await playlists.playlist_by_uri(n.db, uri)
    return jsonify(await playlists.playlist_detail(n.db, row, n.config.public_url, current_audience()))


@lists_bp.get("/lists/by-uri")
async def list_by_uri() -> Response:
    """What an fm.plyr.list record is on this node: plyr.fm's {type: album|playlist, id, handle, slug}."""
    return jsonify(await list_refs.list_by_uri(node().db, request.args.get("uri", "")))


@lists_bp.put("/lists/<rkey>/reorder")
async def list_reorder(rkey: str) -> Response:
    """plyr.fm's reorder of the caller's list by record key (an album, a playlist or the liked list)."""
    viewer = require_viewer()
    return jsonify(await list_refs.reorder_list(node().db, viewer.did, rkey, (await json_body()).get("items")))


@lists_bp.get("/lists/playlists/<playlist_id>")
async def playlist_detail(playlist_id: str) -> Response:
    n = node()
    audience = current_audience()
    row = await playlists.get_playlist(n.db, playlist_id, audience.did)
    return jsonify(await playlists.playlist_detail(n.db, row, n.config.public_url, audience))


@lists_bp.get("/lists/playlists/<playlist_id>/recommendations")
async def playlist_recommendations(playlist_id: str) -> Response:
    """plyr.fm's recommendations for its owner: ?limit= (1-10, default 3) tracks like the playlist's, from the search
    index's similar tracks, none already in it, and only those discovery shows the owner."""
    viewer = require_viewer()
    n = node()
    limit = query_int("limit", default=3, minimum=1, maximum=10)
    await playlists.check_owner(n.db, playlist_id, viewer.did)
    audience = current_audience()
    row = await playlists.get_playlist(n.db, playlist_id, viewer.did)
    seeds = await playlists.playlist_tracks(n.db, row["id"], visible(audience))
    return jsonify(await n.search.recommend(seeds, limit, audience))


@lists_bp.get("/lists/playlists/<playlist_id>/meta")
async def playlist_meta(playlist_id: str) -> Response:
    n = node()
    viewer = current_viewer()
    row = await playlists.get_playlist(n.db, playlist_id, viewer.did if viewer else None)
    return jsonify(playlists.playlist_json(row, n.config.public_url))


async def _answer(playlist_id: str, did: str) -> Response:
    n = node()
    return jsonify(playlists.playlist_json(await playlists.get_playlist(n.db, playlist_id, did), n.config.public_url))


@lists_bp.patch("/lists/playlists/<playlist_id>")
async def update_playlist(playlist_id: str) -> Response:
    viewer = require_viewer()
    await playlists.update_playlist(node().db, playlist_id, viewer.did, await _changes())
    return await _answer(playlist_id, viewer.did)


@lists_bp.delete("/lists/playlists/<playlist_id>")
async def delete_playlist(playlist_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await playlists.delete_playlist(n.db, n.blobs, playlist_id, viewer.did)
    return jsonify({"deleted": True})


@lists_bp.post("/lists/playlists/<playlist_id>/tracks")
async def playlist_add(playlist_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    body = await json_body()
    if isinstance(body, dict) and isinstance(body.get("track_uri"), str):  # another repo's track: known from here on
        await n.remote_tracks.resolve(body["track_uri"], body.get("track_cid"))
    await playlists.add_item(n.db, playlist_id, viewer.did, body, current_audience())
    return await _answer(playlist_id, viewer.did)


# merge_slashes off: the track URI (at://did/...) keeps its double slash instead of being redirected away.
@lists_bp.delete("/lists/playlists/<playlist_id>/tracks/<path:track_uri>", merge_slashes=False)
async def playlist_remove(playlist_id: str, track_uri: str) -> Response:
    viewer = require_viewer()
    await playlists.remove_item(node().db, playlist_id, viewer.did, track_uri)
    return await _answer(playlist_id, viewer.did)


@lists_bp.put("/lists/playlists/<playlist_id>/reorder")
async def playlist_reorder(playlist_id: str) -> Response:
    viewer = require_viewer()
    await playlists.reorder(node().db, playlist_id, viewer.did, (await json_body()).get("items"))
    return await _answer(playlist_id, viewer.did)


@lists_bp.post("/lists/playlists/<playlist_id>/cover")
@upload_stream.streamed_body
async def playlist_cover(playlist_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await playlists.check_owner(n.db, playlist_id, viewer.did)  # before reading a body that may be 20 MB
    await playlists.set_cover(n.db, n.blobs, n.uploads, playlist_id, viewer.did, await _cover_files())
    row = await playlists.get_playlist(n.db, playlist_id, viewer.did)
    return jsonify(_cover_answer(row, n.config.public_url))


@lists_bp.delete("/lists/playlists/<playlist_id>/cover")
async def playlist_cover_delete(playlist_id: str) -> Response:
    viewer = require_viewer()
    n = node()
    await playlists.set_cover(n.db, n.blobs, n.uploads, playlist_id, viewer.did, None)
    return await _answer(playlist_id, viewer.did)


@lists_bp.route("/lists/covers/<sha>", methods=["GET", "HEAD"])
async def cover(sha: str) -> Response:
    """Album and playlist covers (track artwork is under /images/)."""
    n = node()
    f = await albums.cover_file(n.db, sha, current_audience())
    response = await serve_file(n.blobs.path_for(sha), mime=f.mime, etag=sha)
    if f.library_only:  # a library album's cover is for the node's listeners: no shared cache keeps it
        response.headers["Cache-Control"] = PRIVATE_IMMUTABLE
    return response
