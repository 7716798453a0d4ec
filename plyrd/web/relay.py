"""Another repo's audio relayed as it comes (plyrd.network.remote_audio `UpstreamAudio`): a remote track whose record
has only an audioUrl, for Subsonic's `stream` and the web player (same origin: Web Audio plays a cross-origin file
that sends no CORS headers as silence). The host's range answer is passed on when the listener asked for a range;
nothing is cached or stored."""

from __future__ import annotations

import logging
from types import TracebackType

from quart import Response, request
from quart.wrappers.response import ResponseBody

from .. import errors
from ..network.remote_audio import UpstreamAudio

log = logging.getLogger("plyrd.web.relay")


async def relay(upstream: UpstreamAudio) -> Response:
    """Answer the current GET or HEAD with `upstream`'s body: its length when the host told one, its range when it
    answered one; never cached (the bytes are not verified, and the host may change them)."""
    headers = {"Cache-Control": "no-store",
               "Accept-Ranges": "bytes" if upstream.partial else "none"}
    if upstream.size is not None:
        headers["Content-Length"] = str(upstream.size)
    if upstream.content_range:
        headers["Content-Range"] = upstream.content_range
    status = 206 if upstream.partial else 200
    if request.method == "HEAD":
        await upstream.aclose()
        return Response(status=status, headers=headers, content_type=upstream.mime)
    response = Response(RelayBody(upstream), status=status, headers=headers, content_type=upstream.mime)
    response.timeout = None  # a whole track to a listener takes as long as the track
    return response


class RelayBody(ResponseBody):
    """An upstream response as a response body; closed (its connection given back) when the body ends or the
    listener goes. A failure mid-way cuts the response: the status was sent already, so it is logged."""

    def __init__(self, upstream: UpstreamAudio) -> None:
        self._upstream = upstream
        self._chunks = upstream.chunks()

    async def __aenter__(self) -> RelayBody:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._chunks.aclose()
        await self._upstream.aclose()

    def __aiter__(self) -> RelayBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._chunks)
        except errors.UpstreamError as e:
            log.warning("relayed audio failed mid-stream", extra={"fields": {"error": e.detail}})
            raise
