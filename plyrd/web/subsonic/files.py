"""Subsonic's binary methods: stream, download and getCoverArt, through the same range-capable serving as
/audio and /images. `stream` transcodes when the call asks (plyrd.subsonic.streaming decides what it sends): a
finished transcode cached earlier is a file read like any other; a live one streams as it is encoded, without
Content-Length (an estimate when the call says estimateContentLength=true) and without ranges (plyrd.web.live_audio,
which the web player's /audio shares). A remote track's audio blob is fetched and verified into the blob store first
(plyrd.network.remote_audio), then served or transcoded as any song's; one with only an audioUrl is relayed from it
as it comes (plyrd.web.relay: no transcoding)."""

from __future__ import annotations

import contextlib

from quart import Response, request

from ... import errors
from ...catalog.downloads import track_refusal
from ...catalog.tracks import is_remote
from ...subsonic import catalog as sc
from ...subsonic import streaming
from ...subsonic.envelope import GENERIC, NOT_AUTHORIZED, SubsonicError
from .. import live_audio
from ..relay import relay
from ..streaming import serve_file
from .call import Call, method

PRIVATE_REVALIDATE = "private, no-cache"


async def _serve(call: Call, file: sc.File) -> Response:
    # Revalidated, never immutable: /rest URLs name a song, album or artist, whose file changes when the audio or
    # the artwork is replaced (the ETag, the file's sha256, tells a client when).
    # Private: the answer depends on the credentials in the request (library files, private playlists' art).
    response = await serve_file(call.node.blobs.path_for(file.sha256), mime=file.mime, etag=file.sha256,
                                download_name=file.download_name, immutable=False)
    response.headers["Cache-Control"] = PRIVATE_REVALIDATE
    return response


@method("stream")
async def stream(call: Call) -> Response:
    """The song as stored, or transcoded as `format`/`maxBitRate`/`timeOffset` ask (see plyrd.subsonic.streaming)."""
    row = await sc.get_song(call.node.db, call.required("id"), call.audience)
    if streaming.from_url(row):
        return await relay(await call.node.remote_audio.open_url(row, request.headers.get("Range")))
    choice = streaming.choose(row, call.params.get("format"), call.params.get("maxBitRate"),
                              call.params.get("timeOffset"))
    # A remote track's original is in the blob store for as long as its file is being opened below.
    async with call.node.remote_audio.held(row) if is_remote(row) else contextlib.nullcontext():
        if isinstance(choice, streaming.Stored):
            return await _serve(call, sc.File(choice.sha256, choice.mime))
        size = choice.estimated_size(row["duration"]) if call.params.get("estimateContentLength") == "true" else None
        try:
            return await live_audio.respond(call.node, choice, lambda sha: _serve(call, sc.File(sha, choice.mime)),
                                            size=size)
        except (errors.Unavailable, errors.Unprocessable) as e:
            raise SubsonicError(GENERIC, e.detail) from None


@method("download")
async def download(call: Call) -> Response:
    """The original, when the track's download policy lets the caller have it (error 50 otherwise); never a
    transcode, whatever the call asks."""
    row = await sc.get_song(call.node.db, call.required("id"), call.audience)
    if (refusal := track_refusal(row, call.did)) is not None:
        raise SubsonicError(NOT_AUTHORIZED, refusal.detail)
    return await _serve(call, sc.original(row))


@method("getCoverArt")
async def get_cover_art(call: Call) -> Response:
    size = call.params.get("size")
    wanted = sc.bounded(size, default=0, maximum=10**6) if size else None
    return await _serve(call, await sc.cover_art(call.node.db, call.required("id"), wanted, call.audience))
