"""What every request must satisfy before routing: a well-formed Host, a body the node can read, ids that fit.

- A `Host` header that is not a host name (a label over 63 characters, stray characters) makes werkzeug fail while
  binding the URL map, before Quart's error handlers exist for the request, so it is refused here, in front of the
  app, with the same `{"detail"}` body the error map gives.
- A body sent with a `Content-Encoding` (gzip, br...) is refused with 415: the node does not decode request bodies.
- `<int:...>` in routes only matches what SQLite can store (64 bits): a larger id is a 404, not an overflow.
- An early refusal of a request whose body was not read says `Connection: close`, so a keep-alive client does not
  send its next request into a connection the server is about to drop.
"""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Quart, Response, request
from quart.wrappers.request import Body
from werkzeug.routing import IntegerConverter

from ..inputs import INT64_MAX

_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\])(?::[0-9]{{1,5}})?$")


class Int64Converter(IntegerConverter):
    """`<int:id>` limited to SQLite's integer range: anything larger does not match the route (404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)


def host_ok(host: str) -> bool:
    return len(host) <= 260 and bool(_HOST.match(host))


def _refusal(status: int, detail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"detail": detail}).encode()
    start = {"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


def _check(scope: dict[str, Any]) -> tuple[int, str] | None:
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    host = headers.get(b"host")
    if host is not None and not host_ok(host.decode("latin-1")):
        return 400, "malformed Host header"
    encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
    if encoding and encoding != "identity":
        return 415, "Content-Encoding is not supported: send the request body uncompressed"
    return None


def register(app: Quart) -> None:
    """Call right after creating the app, before any blueprint adds routes (converters bind when rules are added)."""
    app.url_map.converters["int"] = Int64Converter
    inner = app.asgi_app

    async def checked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (refused := _check(scope)) is not None:
            start, body = _refusal(*refused)
            await send(start)
            await send(body)
            return
        await inner(scope, receive, send)

    app.asgi_app = checked  # type: ignore[method-assign]

    @app.after_request
    async def close_unread_bodies(response: Response) -> Response:
        # Refused before its body was read (401, 403, 404, 413...): the rest of the body is still on the wire and the
        # connection cannot carry another request. Say so, or a keep-alive client's next request is lost.
        body = request.body
        if isinstance(body, Body) and not body._complete.is_set():
            response.headers["Connection"] = "close"
        return response
