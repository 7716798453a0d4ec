"""Track endpoints for issue-4 scope: upload (POST /tracks/), upload progress (SSE), detail, delete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from quart import Blueprint, Response, jsonify, request

from ..catalog.tracks import delete_track, get_track_row, track_json
from ..catalog.uploads import parse_fields
from ..errors import InvalidInput, PlyrdError
from . import upload_stream
from .context import node
from .viewer import require_uploader, require_viewer

bp = Blueprint("tracks", __name__)

MAX_FIELD_BYTES = 64 * 1024


@bp.post("/tracks/")
@upload_stream.streamed_body
async def upload() -> tuple[Response, int]:
    viewer = require_uploader()
    n = node()
    form = await upload_stream.read_multipart(
        request, store=n.blobs, max_file_bytes=n.config["storage.max_upload_mb"] * 1024 * 1024,
        max_field_bytes=MAX_FIELD_BYTES, max_files=2,
    )
    stored = [f.sha256 for f in form.files.values()]
    try:
        audio = form.files.get("file")
        if audio is None:
            raise InvalidInput("add the audio as the multipart field 'file'")
        if set(form.files) - {"file", "image"}:
            raise InvalidInput("only 'file' and 'image' may be files")
        fields = parse_fields(form.fields)
        info = await n.uploads.probe_file(audio.path)
        artwork = None
        if (image := form.files.get("image")) is not None:
            art = await n.uploads.check_image(await _read(image.path))
            artwork = await n.uploads.store_artwork(art)
            stored += list(artwork.values())
        upload_id = await n.uploads.accept(did=viewer.did, fields=fields, audio_sha=audio.sha256, info=info,
                                           filename=audio.filename, artwork=artwork)
    except BaseException:
        # Bad input of any kind: whatever this request stored and nothing else references goes away.
        await n.blobs.remove_unreferenced([s for s in stored if len(s) == 64])
        raise
    return jsonify({"upload_id": upload_id, "status": "pending"}), 200


async def _read(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


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


@bp.get("/tracks/<int:track_id>")
async def track_detail(track_id: int) -> Response:
    n = node()
    return jsonify(track_json(await get_track_row(n.db, track_id), n.config.public_url))


@bp.delete("/tracks/<int:track_id>")
async def track_delete(track_id: int) -> tuple[str, int]:
    viewer = require_viewer()
    n = node()
    await delete_track(n.db, n.blobs, track_id, did=viewer.did)
    return "", 204
