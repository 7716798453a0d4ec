"""Per-caller rate limits on endpoints, at the rates plyr.fm sets (its inventory: now-playing 120 a minute, uploads
20 a minute):

    @bp.post("/now-playing/")
    @limited("now-playing", 120, per=60, what="now-playing reports")
    async def report_now_playing() -> Response: ...

Each app keeps its own buckets (plyrd.ratelimit, memory only: one process), one limiter per name, keyed by the
signed-in caller's DID, so a developer token and a browser session of one person share a budget. Calls without a
signed-in viewer are not counted: the endpoints guarded here refuse them anyway (401). Over the limit the request
is refused before the view runs, with 429, `{"detail"}` and Retry-After (plyrd.web.errors).

Sign-in is limited by client address and by account instead (nobody is signed in yet): plyrd.auth.service keeps
those buckets, and the web layer hands it `client_address()`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from quart import current_app, request

from ..errors import PlyrdError, RateLimited
from ..ratelimit import RateLimiter, address_key
from .viewer import current_viewer

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

LIMITERS_KEY = "plyrd.rate_limits"


def client_address() -> str:
    """The caller's address as a rate-limit key. `request.remote_addr` is the peer of the TCP connection, or, with
    `server.behind_proxy`, the last X-Forwarded-For entry (hypercorn's ProxyFixMiddleware, trusting one hop,
    rewrites the ASGI client in plyrd.server), which is the address the proxy saw. IPv6 counts by its /64."""
    return address_key(request.remote_addr)


def retry_after_headers(exc: PlyrdError) -> dict[str, str]:
    """Retry-After for a RateLimited that a view turns into a page itself (the error map adds it everywhere else)."""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}


def limiter(name: str, limit: int, per: float) -> RateLimiter:
    """The app's limiter called `name`, made on first use (per app, so in-process test apps do not share one)."""
    limiters: dict[str, RateLimiter] = current_app.extensions.setdefault(LIMITERS_KEY, {})
    found = limiters.get(name)
    if found is None:
        found = limiters[name] = RateLimiter(limit, per)
    return found


def limited(name: str, limit: int, *, per: float = 60.0, what: str | None = None) -> Callable[[F], F]:
    """Allow each signed-in caller `limit` requests per `per` seconds to the decorated view (a burst of `limit`,
    then the steady rate). Put it under the route decorator; other marks on the view (streamed_body) carry over."""

    def decorate(view: F) -> F:
        @functools.wraps(view)  # copies the view's __dict__ too, so upload_stream's mark survives
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            viewer = current_viewer()
            if viewer is not None:
                limiter(name, limit, per).check(viewer.did, what or f"{name} requests")
            return await view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
