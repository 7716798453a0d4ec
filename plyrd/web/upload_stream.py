"""Streaming multipart/form-data uploads with real backpressure and constant memory.

Why this exists: Quart reads the ASGI `receive` channel in its own task and appends every body message to
`request.body` without waiting for the handler, so a fast client fills memory (91-276 MB peaks for a 200 MB upload,
measured). Hypercorn itself already bounds its queue to the app (`max_app_queue_size` messages) and stops reading
the socket when that queue is full, so backpressure only needs Quart's reader to wait for the handler.

How to use it (the app wires it once, a route opts in):

    upload_stream.install(app)                       # in create_app: swaps in StreamingHTTPConnection

    @bp.post("/upload")
    @upload_stream.streamed_body                     # this route's body is pulled, not pushed
    async def upload():
        form = await read_multipart(request, store=node().blobs, max_file_bytes=..., max_field_bytes=...)

For a route marked `streamed_body`, the request body is a `StreamingBody`: Quart's receiver stops pulling from
the ASGI channel while more than HIGH_WATER bytes wait unconsumed, so at most HIGH_WATER + hypercorn's queue
(10 messages of at most 64 KiB) is buffered per upload; the rest waits in the client's TCP window. The route has
no MAX_CONTENT_LENGTH: read_multipart enforces its own limits while streaming and answers 413 (errors.TooLarge)
before reading the rest. A client that disconnects makes Quart cancel the handler; every temporary file is removed
on the way out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from quart import Quart, Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData, Preamble, State

from .. import errors
from ..inputs import check_text
from ..storage import Blob, BlobStore, BlobWriter

HIGH_WATER = 512 * 1024  # unconsumed body bytes at which the receiver pauses
MAX_HEADER_BYTES = 16 * 1024  # a part's headers (and the preamble) may not exceed this
DEFAULT_MAX_PARTS = 32
_MARK = "_plyrd_streamed_body"

F = TypeVar("F", bound=Callable[..., Any])


def streamed_body(view: F) -> F:
    """Mark a view whose request body is streamed with backpressure (see the module docstring)."""
    setattr(view, _MARK, True)
    return view


class StreamingBody(Body):
    """A request body that its receiver refills only as fast as the handler consumes it."""

    def __init__(self, expected_content_length: int | None, *, high_water: int = HIGH_WATER) -> None:
        super().__init__(expected_content_length, None)  # no Quart limit: the reader enforces its own
        self.high_water = high_water
        self._room = asyncio.Event()
        self._room.set()

    def append(self, data: bytes) -> None:
        super().append(data)
        if len(self._data) >= self.high_water:
            self._room.clear()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._room.set()
        return data

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def __await__(self) -> Generator[Any, None, Any]:
        raise RuntimeError("a streamed request body cannot be awaited whole; iterate it (async for chunk in body)")


class StreamingHTTPConnection(ASGIHTTPConnection):
    """Quart's HTTP connection, with a paced receiver for the routes marked `streamed_body`."""

    def _create_request_from_scope(self, send: Any) -> Request:
        request = super()._create_request_from_scope(send)
        if request.method in ("POST", "PUT", "PATCH") and self._streams(request):
            request.body = StreamingBody(request.content_length)
        return request

    def _streams(self, request: Request) -> bool:
        try:
            rule, _ = self.app.create_url_adapter(request).match(return_rule=True)  # type: ignore[union-attr]
        except Exception:
            return False  # 404, 405, a strange Host: Quart's own dispatch answers those as usual
        view = self.app.view_functions.get(rule.endpoint)
        return bool(getattr(view, _MARK, False))

    async def handle_messages(self, request: Request, receive: Any) -> None:
        body = request.body
        if not isinstance(body, StreamingBody):
            await super().handle_messages(request, receive)
            return
        while True:
            await body.wait_for_room()  # the backpressure: do not pull more until the handler took what is here
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                return  # Quart then cancels the handler; read_multipart removes its temporary files


def install(app: Quart) -> None:
    """Use StreamingHTTPConnection for the app (routes not marked `streamed_body` behave exactly as before)."""
    app.asgi_http_class = StreamingHTTPConnection
    # An upload refused before its body was read answers Connection: close (plyrd.web.boundary, for every body).


# --- the multipart reader ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    name: str  # the form field
    filename: str  # as the client named it, without any directory part
    content_type: str
    blob: Blob  # stored (refcount 0 until the caller increfs it; unreferenced blobs are collected after a grace)

    @property
    def size(self) -> int:
        return self.blob.size

    @property
    def sha256(self) -> str:
        return self.blob.sha256

    @property
    def path(self) -> Path:
        return self.blob.path


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)


def _boundary(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        raise errors.UnsupportedMedia("expected a multipart/form-data body")
    boundary = options.get("boundary", "")
    if not boundary:
        raise errors.InvalidInput("multipart/form-data body without a boundary")
    if len(boundary) > 70 or not boundary.isascii():
        raise errors.InvalidInput("malformed multipart boundary")
    return boundary.encode("ascii")


def _clean_filename(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255]


async def read_multipart(request: Request, *, store: BlobStore, max_file_bytes: int, max_field_bytes: int = 64 * 1024,
                         max_parts: int = DEFAULT_MAX_PARTS, max_files: int = 4) -> UploadForm:
    """Read a multipart/form-data request body as it streams in.

    Text fields (UTF-8, at most `max_field_bytes` each) are returned in `fields`; each file part is streamed into
    the BlobStore (hashed as it arrives, at most `max_file_bytes`) and returned as a stored Blob in `files`.
    Raises errors.TooLarge (413) as soon as a limit is passed, errors.InvalidInput (400) for a malformed body or
    missing boundary, errors.UnsupportedMedia (415) when the body is not multipart/form-data. Whatever happens
    (including a client disconnect, which cancels the handler) no temporary file is left behind.
    """
    boundary = _boundary(request.headers.get("Content-Type"))
    if not isinstance(request.body, StreamingBody):
        raise RuntimeError("read_multipart needs a route marked @streamed_body on an app with upload_stream.install")
    max_body = max_files * max_file_bytes + max_parts * (max_field_bytes + MAX_HEADER_BYTES)
    if request.content_length is not None and request.content_length > max_body:
        raise errors.TooLarge(f"upload is larger than the limit of {max_file_bytes} bytes")

    reader = _FormReader(store, MultipartDecoder(boundary, max_parts=max_parts), max_file_bytes=max_file_bytes,
                         max_field_bytes=max_field_bytes, max_files=max_files)
    received = 0
    try:
        epilogue = 0
        async for chunk in request.body:
            received += len(chunk)
            if received > max_body:
                raise errors.TooLarge("upload body is larger than the limits allow")
            if not reader.finished:
                await reader.feed(chunk)
                continue
            # After the closing boundary: read a short epilogue (usually CRLF) so the connection can be reused,
            # but stop at MAX_HEADER_BYTES; Hypercorn then closes the connection instead.
            epilogue += len(chunk)
            if epilogue > MAX_HEADER_BYTES:
                break
        if not reader.finished:
            await reader.feed(None)  # end of body: the decoder reports a truncated form as malformed
    except BaseException:
        reader.abort()
        # The files a refused request stored go now (unless something else references the same bytes), not at
        # the next hourly collection; also when the client went away and the request was cancelled.
        await store.remove_unreferenced(f.sha256 for f in reader.form.files.values())
        raise
    return reader.form


async def read_form(request: Request, *, store: BlobStore, max_file_bytes: int, max_field_bytes: int = 64 * 1024,
                    max_parts: int = DEFAULT_MAX_PARTS, max_files: int = 4) -> UploadForm:
    """A form as plyr.fm's clients send an edit: multipart/form-data (files too: read_multipart), url-encoded text
    fields (no files), or no body at all (an empty form). Each field at most once, UTF-8 text without NUL, at most
    `max_field_bytes` each; anything else is 400, another type of body 415."""
    mimetype = parse_options_header(request.headers.get("Content-Type") or "")[0]
    if mimetype == "multipart/form-data":
        return await read_multipart(request, store=store, max_file_bytes=max_file_bytes,
                                    max_field_bytes=max_field_bytes, max_parts=max_parts, max_files=max_files)
    if not isinstance(request.body, StreamingBody):
        raise RuntimeError("read_form needs a route marked @streamed_body on an app with upload_stream.install")
    max_body = max_parts * (max_field_bytes + MAX_HEADER_BYTES)
    if request.content_length is not None and request.content_length > max_body:
        raise errors.TooLarge(f"form body is larger than {max_body} bytes")
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > max_body:
            raise errors.TooLarge(f"form body is larger than {max_body} bytes")
    if not data:
        return UploadForm()  # no body, whatever its declared type: nothing to change
    if mimetype != "application/x-www-form-urlencoded":
        raise errors.UnsupportedMedia("send the form as multipart/form-data or application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(data.decode("ascii"), keep_blank_values=True, strict_parsing=True, encoding="utf-8",
                          errors="strict", max_num_fields=max_parts)
    except (UnicodeDecodeError, ValueError):
        raise errors.InvalidInput("malformed url-encoded form") from None
    form = UploadForm()
    for name, value in pairs:
        if not name:
            raise errors.InvalidInput("malformed url-encoded form: a field without a name")
        if name in form.fields:
            raise errors.InvalidInput(f"field {name!r} appears more than once")
        if len(value.encode("utf-8", "surrogatepass")) > max_field_bytes:
            raise errors.TooLarge(f"field {name!r} is longer than {max_field_bytes} bytes")
        form.fields[check_text(name, field="a form field name")] = check_text(value, field=name)
    return form


class _FormReader:
    """Turns decoder events into fields and stored files; `abort()` removes the file being written."""

    def __init__(self, store: BlobStore, decoder: MultipartDecoder, *, max_file_bytes: int, max_field_bytes: int,
                 max_files: int) -> None:
        self.store = store
        self.decoder = decoder
        self.max_file_bytes = max_file_bytes
        self.max_field_bytes = max_field_bytes
        self.max_files = max_files
        self.form = UploadForm()
        self.part: Field | File | None = None
        self.writer: BlobWriter | None = None
        self.field_buf = bytearray()
        self.finished = False

    async def feed(self, chunk: bytes | None) -> None:
        try:
            self.decoder.receive_data(chunk)
        except HTTPException:
            raise errors.TooLarge("upload part too large") from None
        while not self.finished:
            try:
                event = self.decoder.next_event()
            except HTTPException:
                raise errors.TooLarge("too many parts in the upload") from None
            except (ValueError, AttributeError, TypeError, IndexError) as e:
                # werkzeug reports a truncated or garbled body as ValueError (some malformed headers as others)
                if chunk is None:
                    raise errors.InvalidInput("malformed multipart body: it ends before the closing boundary") from None
                why = f" ({e})" if isinstance(e, ValueError) and "State." not in str(e) else ""
                raise errors.InvalidInput(f"malformed multipart body{why}") from None
            if isinstance(event, NeedData):
                # Outside a part's data the decoder buffers until it finds a boundary or a blank line: bound that.
                if self.part is None and len(self.decoder.buffer) > MAX_HEADER_BYTES:
                    raise errors.InvalidInput("malformed multipart body: no boundary, or part headers too long")
                if chunk is None:
                    raise errors.InvalidInput("malformed multipart body: it ends before the closing boundary")
                return
            await self._handle(event)

    async def _handle(self, event: object) -> None:
        if isinstance(event, Preamble):
            return
        if isinstance(event, Epilogue):
            self.finished = True
            return
        if isinstance(event, Field | File):
            if not event.name:
                raise errors.InvalidInput("malformed multipart body: a part without a name")
            if event.name in self.form.fields or event.name in self.form.files:
                raise errors.InvalidInput(f"field {event.name!r} appears more than once")
            self.part = event
            if isinstance(event, File):
                if len(self.form.files) >= self.max_files:
                    raise errors.TooLarge(f"more than {self.max_files} files in the upload")
                self.writer = await self.store.open_writer(max_bytes=self.max_file_bytes)
            return
        assert isinstance(event, Data)
        if self.part is None:
            raise errors.InvalidInput("malformed multipart body")
        if self.writer is not None:
            if event.data:
                await self.writer.write(event.data)  # TooLarge past max_file_bytes, its file removed
        elif len(self.field_buf) + len(event.data) > self.max_field_bytes:
            raise errors.TooLarge(f"field {self.part.name!r} is longer than {self.max_field_bytes} bytes")
        else:
            self.field_buf += event.data
        if not event.more_data:
            await _finish_part(self.form, self.part, self.writer, self.field_buf)
            self.writer, self.part, self.field_buf = None, None, bytearray()
            if self.decoder.state in (State.EPILOGUE, State.COMPLETE):
                self.finished = True  # the closing boundary: done, without waiting for the end of the body

    def abort(self) -> None:
        """Synchronous so it runs even in a cancelled task. Files already stored are released by read_multipart."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


async def _finish_part(form: UploadForm, part: Field | File, writer: BlobWriter | None, data: bytearray) -> None:
    if isinstance(part, File):
        assert writer is not None
        content_type = part.headers.get("Content-Type", "application/octet-stream")
        blob = await writer.commit(content_type)
        form.files[part.name] = UploadedFile(part.name, _clean_filename(part.filename), content_type, blob)
    else:
        try:
            form.fields[part.name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidInput(f"field {part.name!r} is not valid UTF-8") from None
