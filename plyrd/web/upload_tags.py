"""POST /tracks/probe-tags: the tags of an audio file the uploader is about to send, read from a sample of it.

The upload page calls it when a file is picked, to prefill the form. The body is the file's first bytes, optionally
followed by its last ones: `?tail=<how many of the body's bytes are the file's end>&size=<the whole file's size>`.
Answers the tags and format as JSON. Nothing is stored: the sample is read in memory and dropped.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..errors import TooLarge
from . import upload_stream
from .context import node
from .viewer import require_uploader

bp = Blueprint("upload_tags", __name__)


@bp.post("/tracks/probe-tags")
@upload_stream.streamed_body  # the app-wide 1 MiB body limit is too small; this route enforces its own
async def probe_tags() -> Response:
    # plyrd.media pulls in PyAV and numpy: imported on first use, so an idle node stays small.
    from ..media.head_tags import HEAD_MAX, TAIL_MAX, read_sample_tags, sample_from_body

    await require_uploader()
    n = node()
    body = await _read_body(HEAD_MAX + TAIL_MAX)
    sample = sample_from_body(body, size=request.args.get("size"), tail=request.args.get("tail"),
                              max_file_bytes=n.config["storage.max_upload_mb"] * 1024 * 1024)
    tags = await n.uploads.slots.run(read_sample_tags, sample)  # PyAV off the event loop, within the thread cap
    return jsonify(tags.as_json())


async def _read_body(limit: int) -> bytes:
    """The whole (small) body, refused with 413 as soon as it passes `limit`, before the rest is read."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"send at most {limit // (1024 * 1024)} MiB: the file's start and end, not all of it")
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > limit:
            raise TooLarge(f"send at most {limit // (1024 * 1024)} MiB: the file's start and end, not all of it")
    return bytes(data)
