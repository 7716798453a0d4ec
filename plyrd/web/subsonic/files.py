"""Subsonic's binary methods: stream, download and getCoverArt, through the same range-capable serving as
/audio and /images. `stream` transcodes when the call asks (plyrd.subsonic.streaming decides what it sends): a
finished transcode cached earlier is a file read like any other; a live one streams as it is encoded, without
Content-Length (an estimate when the call says estimateContentLength=true) and without ranges."""

from __future__ import annotations

import contextlib
import os
import weakref
from types import TracebackType
from typing import TYPE_CHECKING

from quart import Response, request
from quart.wrappers.response import ResponseBody

from ... import errors
from ...catalog.downloads import track_refusal
from ...node import Node
from ...storage import BlobWriter
from ...subsonic import catalog as sc
from ...subsonic import streaming
from ...subsonic.envelope import GENERIC, NOT_AUTHORIZED, SubsonicError
from ...subsonic.transcode_cache import TranscodeCache
from ..streaming import serve_file
from .call import Call, method

if TYPE_CHECKING:
    # Imported when first needed: PyAV and numpy cost ~35 MB that an idle node must not pay (tests/test_app.py).
    from ...media.live_transcode import LiveStream

_PADDING = bytes(64 * 1024)


class _Transcoding:
    """A node's transcoder (bounded slots) and transcode cache, made on first use."""

    def __init__(self, node: Node) -> None:
        from ...media.live_transcode import LiveTranscoder

        slots = node.config["subsonic.max_transcodes"] or 24 * (os.cpu_count() or 1)
        self.live = LiveTranscoder(slots)
        self.cache = TranscodeCache(node.db, node.blobs, node.config["subsonic.transcode_cache_mb"] * 1024 * 1024)


_per_node: weakref.WeakKeyDictionary[Node, _Transcoding] = weakref.WeakKeyDictionary()


def transcoding(node: Node) -> _Transcoding:
    if (found := _per_node.get(node)) is None:
        found = _per_node[node] = _Transcoding(node)
    return found


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
    choice = streaming.choose(row, call.params.get("format"), call.params.get("maxBitRate"),
                              call.params.get("timeOffset"))
    if isinstance(choice, streaming.Stored):
        return await _serve(call, sc.File(choice.sha256, choice.mime))
    parts = transcoding(call.node)
    if (cached := await parts.cache.lookup(choice)) is not None:
        try:
            return await _serve(call, sc.File(cached, choice.mime))
        except errors.NotFound:
            pass  # evicted between the lookup and the open: encode it again
    size = choice.estimated_size(row["duration"]) if call.params.get("estimateContentLength") == "true" else None
    headers = {"Accept-Ranges": "none", "Cache-Control": "no-store"}
    if size is not None:
        headers["Content-Length"] = str(size)
    if request.method == "HEAD":
        return Response(status=200, headers=headers, content_type=choice.mime)
    from ...media.live_transcode import Busy, Request

    try:
        live = await parts.live.open(Request(call.node.blobs.path_for(choice.source_sha256), choice.format,
                                             choice.bitrate, choice.offset))
    except Busy as e:
        raise SubsonicError(GENERIC, str(e)) from None
    body = _LiveBody(live, parts.cache, choice, size)
    try:
        # The first chunk before answering: a file that cannot be decoded is still an error in the envelope.
        await body.prime()
    except errors.Unprocessable as e:
        body.close()
        raise SubsonicError(GENERIC, e.detail) from None
    except BaseException:
        body.close()
        raise
    response = Response(body, status=200, headers=headers, content_type=choice.mime)
    response.timeout = None  # a whole track to a listener takes as long as the track
    return response


class _LiveBody(ResponseBody):
    """A live transcode as a response body, copied into the blob store as it goes when the result is worth keeping
    (a whole track). `close()` (on the end of the response, or when the response is dropped unsent) stops the encode
    and removes an unfinished copy: a listener who leaves leaves no file and no row."""

    def __init__(self, live: LiveStream, cache: TranscodeCache, choice: streaming.Transcode, size: int | None) -> None:
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
            data = await self._live.next()
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

    def __aiter__(self) -> _LiveBody:
        return self

    async def __aenter__(self) -> _LiveBody:
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
