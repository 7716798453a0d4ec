"""Per-request bookkeeping: a request id on every response and one structured log line per request."""

from __future__ import annotations

import logging
import re
import secrets
import time

from quart import Quart, Response, g, request

log = logging.getLogger("plyrd.access")

# A proxy's request id is reused (so logs join up across hops) only when it looks like an id, not arbitrary text.
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def register(app: Quart, *, log_requests: bool) -> None:
    @app.before_request
    async def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SANE_ID.match(incoming) else secrets.token_hex(8)
        g.started = time.perf_counter()

    @app.after_request
    async def finish_request(response: Response) -> Response:
        request_id = getattr(g, "request_id", None) or secrets.token_hex(8)
        response.headers["X-Request-ID"] = request_id
        if log_requests:
            started = getattr(g, "started", None)
            duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
            level = logging.WARNING if response.status_code >= 500 else logging.INFO
            log.log(level, "request", extra={"fields": {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "request_id": request_id,
                "client": request.remote_addr,
            }})
        return response
