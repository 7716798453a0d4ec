"""Subsonic's binary methods: stream, download and getCoverArt, through the same range-capable serving as
/audio and /images."""

from __future__ import annotations

from quart import Response

from ...catalog.downloads import track_refusal
from ...subsonic import catalog as sc
from ...subsonic.envelope import NOT_AUTHORIZED, SubsonicError
from ..streaming import serve_file
from .call import Call, method


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
