"""Rate limits in memory, for one process: a token bucket per key (a DID, a client address, a handle), no Redis.

A bucket holds up to `limit` tokens and refills at `limit / per` tokens a second; each request takes one. So a
caller may send `limit` requests at once and then keeps the steady rate: "120 a minute" allows a burst of 120,
then two a second. In the long run that is `limit` per `per`; within one span of `per` seconds, at most twice
`limit` (a full bucket plus its refill), as plyr.fm's fixed one-minute windows allow across a window boundary.

Memory stays bounded whatever the keys: buckets live in an LRU map of at most `max_keys`, and a bucket that has
refilled to the brim is dropped as soon as it is the oldest (a full bucket and no bucket mean the same), so a flood
of distinct keys costs at most `max_keys` small entries and idle keys go away on their own. Forgetting a bucket that
was not full (the least recently used goes first, only when the map is at its cap) is the same as giving that key a
full one, so eviction can only ever be lenient, never refuse someone who should pass.

    limiter = RateLimiter(120, per=60)
    limiter.check(did, "now-playing reports")    # RateLimited (429, with retry_after) when over

To count only failures (wrong passwords, say), take a token before the attempt, so that concurrent attempts cannot
all slip through, and give it back with `refund` when the attempt succeeds.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from .errors import RateLimited

MAX_KEYS = 10_000


def describe_rate(limit: int, per: float) -> str:
    """"120 a minute", "10 an hour", "10 every 15 minutes", "5 every 30 s"."""
    names = {1.0: "a second", 60.0: "a minute", 3600.0: "an hour", 86400.0: "a day"}
    if float(per) in names:
        return f"{limit} {names[float(per)]}"
    if per > 60 and per % 60 == 0:
        return f"{limit} every {per / 60:g} minutes"
    return f"{limit} every {per:g} s"


def address_key(address: str | None) -> str:
    """A client address as a rate-limit key. An IPv6 client usually holds a whole /64 (and can pick any address in
    it), so IPv6 addresses count by their /64; IPv4 addresses count alone. Anything else (no address, a proxy's odd
    X-Forwarded-For value) is kept as given, cut to a sane length so a key never grows with the input."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_loopback:
            return str(ip)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
        self._trim(now)
        return wait

    def refund(self, key: str) -> None:
        """Give back a token taken for `key` (never beyond the limit): for a limit that counts only what failed,
        the caller takes a token before trying and refunds it when the try succeeds. A forgotten key needs none."""
        found = self._buckets.pop(key, None)
        if found is None:
            return
        now = self._clock()
        tokens, at = found
        tokens = min(float(self.limit), tokens + max(0.0, now - at) * self.rate + 1.0)
        self._buckets[key] = (tokens, now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        """Drop the oldest buckets while they have refilled to the brim (no loss: a new bucket is full), then the
        least recently used beyond `max_keys`. Each bucket is dropped at most once, so this is O(1) amortized."""
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            if tokens + max(0.0, now - at) * self.rate < self.limit:
                break
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def check(self, key: str, what: str) -> None:
        """Take a token for `key`, or raise RateLimited saying what was limited, the rate, and when to try again."""
        wait = self.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))  # Retry-After speaks whole seconds; never "0"
            raise RateLimited(f"too many {what}: at most {describe_rate(self.limit, self.per)}; "
                              f"try again in {seconds} s", retry_after=seconds)
