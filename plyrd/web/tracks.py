"""Track endpoints for issue-4 scope: upload (POST /tracks/), upload progress (SSE), detail, delete."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..catalog import feeds, revisions
from ..catalog.editing import edit_track as edit
from ..catalog.social import read_tracks_json, tracks_json
from ..catalog.tracks import delete_track, get_track_row, open_track, open_track_by_uri, read_track
from ..errors import Forbidden, PlyrdError
from . import conditional, upload_stream
from .bodies import query_int
from .context import node
from .limits import limited
from .viewer import current_audience, current_viewer, require_uploader, require_viewer

bp = Blueprint("tracks", __name__)

MAX_FIELD_BYTES = 64 * 1024


@bp.post("/tracks/")
@limited("upload", 20, what="uploads")  # plyr.fm's 20 a minute per artist
@upload_stream.streamed_body
async def upload() -> tuple[Response, int]:
    viewer = await require_uploader()
    n = node()
    form = await upload_stream.read_multipart(
        request, store=n.blobs, max_file_bytes=n.config["storage.max_upload_mb"] * 1024 * 1024,
        max_field_bytes=MAX_FIELD_BYTES, max_files=2,
    )
    upload_id = await n.uploads.accept_upload(viewer.did, form.fields, form.files, resolver=n.identity)
    return jsonify({"upload_id": upload_id, "status": "pending"}), 200


@bp.get("/tracks/uploads/<upload_id>/progress")
async def upload_progress(upload_id: str) -> Response:
    """Server-sent events: one `data:` JSON line per change until the upload completes or fails."""
    n = node()
    events = n.uploads.progress(upload_id)
    first = await anext(events)  # raises NotFound before any byte is sent, so the client gets a clean 404

    async def stream() -> AsyncIterator[bytes]:
        yield f"data: {json.dumps(first)}\n\n".encode()
        try:
            async for event in events:
                yield f"data: {json.dumps(event)}\n\n".encode()
        except PlyrdError as e:
            yield f"data: {json.dumps({'status': 'failed', 'error': e.detail})}\n\n".encode()

    response = Response(stream(), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through as they happen
    response.timeout = None
    return response


@bp.put("/tracks/<int:track_id>/audio")
@limited("upload", 20, what="uploads")  # an upload of audio: the same budget
@upload_stream.streamed_body
async def replace_audio(track_id: int) -> Response:
    """plyr.fm's replace_audio: a multipart form with the new audio as `file`. Answers like an upload (follow
    /tracks/uploads/{upload_id}/progress); the track keeps its id, record, likes, comments and playlist entries."""
    viewer = await require_uploader()
    n = node()
    await n.replacements.check(track_id, viewer.did)  # before reading a body that may be 1.5 GB
    form = await upload_stream.read_multipart(
        request, store=n.blobs, max_file_bytes=n.config["storage.max_upload_mb"] * 1024 * 1024,
        max_field_bytes=MAX_FIELD_BYTES, max_files=1,
    )
    return jsonify(await n.replacements.accept(viewer.did, track_id, form.fields, form.files))


@bp.get("/tracks/<int:track_id>/revisions")
async def track_revisions(track_id: int) -> Response:
    """The track's earlier audio, newest first (its artist only)."""
    viewer = require_viewer()
    n = node()
    return jsonify(await revisions.list_revisions(n.db, n.config, track_id, viewer.did))


@bp.post("/tracks/<int:track_id>/revisions/<int:revision_id>/restore")
async def restore_revision(track_id: int, revision_id: int) -> Response:
    """Make an earlier audio the track's again; answers the revision that now keeps the audio it replaced."""
    viewer = require_viewer()
    n = node()
    return jsonify(await revisions.restore_revision(n.db, n.blobs, n.config, track_id, revision_id, viewer.did))


@bp.get("/tracks/<int:track_id>")
async def track_detail(track_id: int) -> Response:
    audience, public_url = current_audience(), node().config.public_url

    def read(conn: sqlite3.Connection) -> dict[str, Any]:  # the track and its counts: one hop
        return read_tracks_json(conn, [read_track(conn, track_id, audience)], audience.did, public_url, peaks=True)[0]

    return jsonify(await node().db.read_fn(read))


@bp.delete("/tracks/<int:track_id>")
async def track_delete(track_id: int) -> tuple[str, int]:
    viewer = require_viewer()
    n = node()
    await open_track(n.db, track_id, current_audience())  # one they may not see is 404, not "not yours" (403)
    await delete_track(n.db, n.blobs, track_id, did=viewer.did)
    return "", 204


async def _tracks_json(rows: list, *, peaks: bool = False) -> list[dict]:  # type: ignore[type-arg]
    """Tracks with their like and comment counts and whether the viewer likes them (plyr.fm's list shape)."""
    return await tracks_json(node().db, rows, _viewer_did(), node().config.public_url, peaks=peaks)


def _viewer_did() -> str | None:
    viewer = current_viewer()
    return viewer.did if viewer else None


@bp.get("/tracks/")
@conditional.body_tagged  # its like and comment counts change more often than the catalog
async def latest_tracks() -> Response:
    """The latest feed (cursor pages); ?artist_did= for an artist's page, ?tags= for one tag. ?limit= is clamped to
    1-100, as plyr.fm (its SDK asks for more and takes what comes)."""
    args = request.args
    audience, public_url = current_audience(), node().config.public_url
    cursor = args.get("cursor") or None
    limit = feeds.clamp_limit(args.get("limit"), default=feeds.DEFAULT_LIMIT, maximum=feeds.MAX_LIMIT)
    artist_did = args.get("artist_did") or None
    tag = args.get("tags") or args.get("tag") or None
    filter_hidden = args.get("filter_hidden_tags", "true").lower() != "false"

    def read(conn: sqlite3.Connection) -> dict[str, Any]:  # the page and its counts: one hop
        page = feeds.read_latest(conn, audience=audience, cursor=cursor, limit=limit, artist_did=artist_did,
                                 tag=tag, filter_hidden=filter_hidden)
        return {"tracks": read_tracks_json(conn, page.rows, audience.did, public_url),
                "next_cursor": page.next_cursor, "has_more": page.next_cursor is not None}

    return jsonify(await node().db.read_fn(read))


@bp.get("/tracks/by-uri")
async def track_by_uri() -> Response:
    """A track by its fm.plyr.track record's AT-URI (?uri=at://...), as GET /tracks/{id} answers. For a signed-in
    listener, another repo's track the node does not know yet is read from its artist's PDS first (a remote track);
    visitors get only what the node already knows (no PDS is asked on their behalf)."""
    n = node()
    uri = request.args.get("uri", "")
    if current_viewer() is not None:
        await n.remote_tracks.resolve(uri, request.args.get("cid"))
    row = await open_track_by_uri(n.db, uri, current_audience())
    return jsonify((await _tracks_json([row], peaks=True))[0])


@bp.get("/tracks/top")
async def top_tracks() -> Response:
    """plyr.fm's top tracks: a bare array, most liked first; ?limit= is clamped to 1-50 (default 10)."""
    args = request.args
    rows = await feeds.top(node().db, audience=current_audience(), period=args.get("period", "all_time"),
                           limit=feeds.clamp_limit(args.get("limit"), default=10, maximum=50))
    return jsonify(await _tracks_json(rows))


@bp.get("/tracks/me")
async def my_tracks() -> Response:
    require_viewer()
    args = request.args
    offset = query_int("offset", default=0)
    rows = await feeds.own(node().db, current_audience(), q=args.get("q") or None, sort=args.get("sort", "recent"),
                           limit=feeds.parse_limit(args.get("limit")), offset=offset)
    return jsonify({"tracks": await _tracks_json(rows)})


@bp.get("/tracks/tags")
async def tags() -> Response:
    """plyr.fm's tag list: a bare array of {name, track_count, total_plays}, most played first; ?q= a prefix."""
    args = request.args
    audience, q, limit = current_audience(), args.get("q") or None, feeds.parse_limit(args.get("limit"), default=20)
    return await conditional.catalog_answer(lambda: feeds.tag_counts(node().db, audience=audience, q=q, limit=limit),
                                            viewer_dependent=True)  # tagged for anonymous callers only


@bp.get("/tracks/tags/<path:tag>")  # a tag may hold a slash ("funk / soul")
async def tag_tracks(tag: str) -> Response:
    """plyr.fm's {tag: {name, track_count}, tracks, created_by_handle}: every track discovery shows under the tag,
    newest first (404 for a tag none carries). plyrd pages on past feeds.TAG_PAGE tracks, or ?limit=, with
    ?cursor=next_cursor."""
    n = node()
    audience = current_audience()
    name = tag.strip().lower()
    count = await feeds.tag_count(n.db, audience=audience, tag=name)
    args = request.args
    limit = feeds.parse_limit(args.get("limit"), default=feeds.TAG_PAGE, maximum=feeds.TAG_PAGE)
    page = await feeds.latest(n.db, audience=audience, tag=name, cursor=args.get("cursor"), limit=limit,
                              filter_hidden=False)
    return jsonify({"tag": {"name": name, "track_count": count}, "tracks": await _tracks_json(page.rows),
                    "created_by_handle": None, "next_cursor": page.next_cursor})


@bp.patch("/tracks/<int:track_id>")
@upload_stream.streamed_body
async def edit_track(track_id: int) -> Response:
    """plyr.fm's edit: a form of the fields to change, as plyr.fm takes it: multipart (which may carry a new
    `image`; or remove_image), url-encoded (what its SDK sends without an image), or no body (nothing changes)."""
    viewer = require_viewer()
    n = node()
    row = await open_track(n.db, track_id, current_audience())  # one they may not see is 404, not 403
    if row["artist_did"] != viewer.did:
        raise Forbidden("only the artist can edit this track")
    form = await upload_stream.read_form(request, store=n.blobs, max_file_bytes=n.config["media.max_image_mb"]
                                         * 1024 * 1024, max_field_bytes=MAX_FIELD_BYTES, max_files=1)
    if form.fields or form.files:
        await edit(n.db, n.blobs, n.uploads, n.identity, n.config, track_id, viewer.did, form.fields, form.files)
    return jsonify((await _tracks_json([await get_track_row(n.db, track_id)], peaks=True))[0])
