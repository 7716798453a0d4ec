"""Rate limits in memory, for one process: a token bucket per key (a DID, say), no Redis.

A bucket holds up to `limit` tokens and refills at `limit / per` tokens a second; each request takes one. So a
caller may send `limit` requests at once and then keeps the steady rate: "120 a minute" allows a burst of 120,
then two a second. In the long run that is `limit` per `per`; within one span of `per` seconds, at most twice
`limit` (a full bucket plus its refill), as plyr.fm's fixed one-minute windows allow across a window boundary.

Memory stays bounded whatever the keys: buckets live in an LRU map of at most `max_keys`. Forgetting a bucket (the
least recently used goes first) is the same as giving that key a full one, so eviction can only ever be lenient,
never refuse someone who should pass.

    limiter = RateLimiter(120, per=60)
    limiter.check(did, "now-playing reports")    # RateLimited (429, with retry_after) when over
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from .errors import RateLimited

MAX_KEYS = 10_000


def describe_rate(limit: int, per: float) -> str:
    """"120 a minute", "10 an hour", "5 every 30 s"."""
    names = {1.0: "a second", 60.0: "a minute", 3600.0: "an hour", 86400.0: "a day"}
    return f"{limit} {names.get(float(per), f'every {per:g} s')}"


class RateLimiter:
    """Token buckets by key. Not thread-safe: use it from the event loop, which runs one request's check at a time."""

    def __init__(self, limit: int, per: float, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or per <= 0 or max_keys < 1:
            raise ValueError("a rate limit needs limit >= 1, per > 0 and max_keys >= 1")
        self.limit = limit
        self.per = per
        self.rate = limit / per  # tokens a second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when the request may go, otherwise the seconds until it could (and nothing
        is taken, so a caller who keeps trying too soon does not push their own wait further out)."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.limit), now))
        tokens = min(float(self.limit), tokens + max(0.0, now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # most recently used last, so the oldest is evicted first
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check(self, key: str, what: str) -> None:
        """Take a token for `key`, or raise RateLimited saying what was limited, the rate, and when to try again."""
        wait = self.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))  # Retry-After speaks whole seconds; never "0"
            raise RateLimited(f"too many {what}: at most {describe_rate(self.limit, self.per)}; "
                              f"try again in {seconds} s", retry_after=seconds)
