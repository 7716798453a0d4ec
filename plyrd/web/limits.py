"""Per-caller rate limits on endpoints, at the rates plyr.fm sets (its inventory: now-playing 120 a minute, uploads
20 a minute):

    @bp.post("/now-playing/")
    @limited("now-playing", 120, per=60, what="now-playing reports")
    async def report_now_playing() -> Response: ...

Each app keeps its own buckets (plyrd.ratelimit, memory only: one process), one limiter per name, keyed by the
signed-in caller's DID, so a developer token and a browser session of one person share a budget. Calls without a
signed-in viewer are not counted: the endpoints guarded here refuse them anyway (401). Over the limit the request
is refused before the view runs, with 429, `{"detail"}` and Retry-After (plyrd.web.errors).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from quart import current_app

from ..ratelimit import RateLimiter
from .viewer import current_viewer

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

LIMITERS_KEY = "plyrd.rate_limits"


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
