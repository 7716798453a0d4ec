"""Transcodes as HTTP responses, shared by Subsonic's `stream` (plyrd.web.subsonic.files) and the web player's
/audio (plyrd.web.media): a finished transcode cached earlier (plyrd.subsonic.transcode_cache) is a file read like any
other, served by the caller (ranges work); otherwise a live one streams as it is encoded (plyrd.media.live_transcode),
without ranges and without Content-Length unless the caller gives an estimate, and is copied into the cache as it
goes when it is a whole track, so the next play is the cached file.

PyAV is imported on the first live transcode only: an idle node must not load the media stack (tests/test_app.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from quart import Response, request
from quart.wrappers.response import ResponseBody

from .. import errors
from ..node import Node
from ..storage import BlobWriter
from ..subsonic.streaming import Transcode
from ..subsonic.transcode_cache import TranscodeCache

if TYPE_CHECKING:
    # Imported when first needed: PyAV and numpy cost ~35 MB that an idle node must not pay (tests/test_app.py).
    from ..media.live_transcode import LiveStream

log = logging.getLogger("plyrd.live_audio")

_PADDING = bytes(64 * 1024)
LIVE_HEADERS = {"Accept-Ranges": "none", "Cache-Control": "no-store"}


class Transcoding:
    """A node's transcoder (bounded slots) and transcode cache, made on first use."""

    def __init__(self, node: Node) -> None:
        from ..media.live_transcode import LiveTranscoder

        slots = node.config["subsonic.max_transcodes"] or 24 * (os.cpu_count() or 1)
        self.live = LiveTranscoder(slots)
        self.cache = TranscodeCache(node.db, node.blobs, node.config["subsonic.transcode_cache_mb"] * 1024 * 1024)


_per_node: weakref.WeakKeyDictionary[Node, Transcoding] = weakref.WeakKeyDictionary()


def transcoding(node: Node) -> Transcoding:
    if (found := _per_node.get(node)) is None:
        found = _per_node[node] = Transcoding(node)
    return found


async def respond(node: Node, choice: Transcode, serve_cached: Callable[[str], Awaitable[Response]], *,
                  size: int | None = None) -> Response:
    """Answer the current GET or HEAD with `choice`: `serve_cached(blob sha256)` when a finished transcode is cached,
    else a live encode (`size`: the Content-Length to promise, kept exactly; None sends none).

    Raises errors.Unavailable when every transcode slot stayed taken, errors.Unprocessable when the source cannot be
    decoded (both before anything is sent)."""
    parts = transcoding(node)
    if (cached := await parts.cache.lookup(choice)) is not None:
        try:
            return await serve_cached(cached)
        except errors.NotFound:
            pass  # evicted between the lookup and the open: encode it again
    headers = dict(LIVE_HEADERS)
    if size is not None:
        headers["Content-Length"] = str(size)
    if request.method == "HEAD":
        return Response(status=200, headers=headers, content_type=choice.mime)
    from ..media.live_transcode import Busy, Request

    try:
        live = await parts.live.open(Request(node.blobs.path_for(choice.source_sha256), choice.format,
                                             choice.bitrate, choice.offset))
    except Busy as e:
        raise errors.Unavailable(str(e)) from None
    body = LiveBody(live, parts.cache, choice, size)
    try:
        # The first chunk before answering: a file that cannot be decoded is still an error the caller can answer.
        await body.prime()
    except BaseException:
        body.close()
        raise
    response = Response(body, status=200, headers=headers, content_type=choice.mime)
    response.timeout = None  # a whole track to a listener takes as long as the track
    return response


class LiveBody(ResponseBody):
    """A live transcode as a response body, copied into the blob store as it goes when the result is worth keeping
    (a whole track). `close()` (on the end of the response, or when the response is dropped unsent) stops the encode
    and removes an unfinished copy: a listener who leaves leaves no file and no row."""

    def __init__(self, live: LiveStream, cache: TranscodeCache, choice: Transcode, size: int | None) -> None:
        self._live = live
        self._cache = cache
        self._choice = choice
        self._left = size  # bytes still owed when a Content-Length was promised
        self._first: bytes | None = None
        self._writer: BlobWriter | None = None
        self._done = False

    async def prime(self) -> None:
        if self._choice.cacheable and self._cache.max_bytes > 0:
            self._writer = await self._cache.open_writer()
        self._first = await self._live.next()

    async def _next_chunk(self) -> bytes | None:
        if self._first is not None:
            data, self._first = self._first, None
        else:
            try:
                data = await self._live.next()
            except Exception as e:
                # The response is cut here (its copy removed): say why, since the listener only sees it stop.
                log.warning("live transcode failed mid-stream", exc_info=e, extra={"fields": {
                    "source": self._choice.source_sha256, "format": self._choice.format}})
                raise
        if data is None:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                await self._cache.keep(self._choice, writer)
            return None
        if self._writer is not None:
            try:
                await self._writer.write(data)
            except errors.TooLarge:
                self._writer = None  # bigger than the whole cache: not kept (the writer removed its file)
        return data

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        data = await self._next_chunk()
        if self._left is None:
            if data is None:
                self._done = True
                raise StopAsyncIteration
            return data
        # A promised length is kept exactly: the encode's last bytes cut, or the body padded with zeros (players
        # skip them) when the estimate was high.
        if self._left <= 0:
            self._done = True
            self.close()
            raise StopAsyncIteration
        if data is None:
            data = _PADDING[:self._left]
        data = data[:self._left]
        self._left -= len(data)
        return data

    def __aiter__(self) -> LiveBody:
        return self

    async def __aenter__(self) -> LiveBody:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._done = True
        self._live.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to clean
            self.close()
