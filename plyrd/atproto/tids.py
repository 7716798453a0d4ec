"""TIDs, atproto's timestamp record keys: 13 base32-sortable characters holding microseconds since the epoch and a
10-bit clock id.

    rkey = new_tid()                               # a fresh key, strictly increasing within the process
    rkey = tid_for_time(played_at)                 # the same instant always gives the same key
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from ..errors import InvalidInput
from .lexicon import is_tid

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One random clock id per process, so two processes minting TIDs in the same microsecond still differ.
_CLOCK_ID = int.from_bytes(os.urandom(2), "big") & 0x3FF
_tid_lock = threading.Lock()
_last_us = 0


def _encode_tid(micros: int, clock_id: int) -> str:
    n = (micros << 10) | (clock_id & 0x3FF)
    out = []
    for _ in range(13):
        out.append(_TID_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def new_tid() -> str:
    """A fresh TID: microseconds since the epoch and this process's clock id. Strictly increasing within the
    process, even when the clock stands still or steps back."""
    global _last_us
    with _tid_lock:
        now = time.time_ns() // 1000
        _last_us = now if now > _last_us else _last_us + 1
        return _encode_tid(_last_us, _CLOCK_ID)


def tid_for_time(when: datetime, clock_id: int = 0) -> str:
    """The TID of an instant (naive datetimes are UTC). Deterministic, so a retried write of a teal.fm play keyed
    by its playedTime lands on the same record; clock id 0 as plyr.fm uses."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    if micros < 0 or micros >= 1 << 53:
        raise InvalidInput("a TID needs a time between 1970 and the year 287396")
    return _encode_tid(micros, clock_id)


def tid_time(tid: str) -> datetime:
    """When a TID was minted (to the microsecond)."""
    if not is_tid(tid):
        raise InvalidInput(f"{tid!r} is not a TID")
    n = 0
    for ch in tid:
        n = (n << 5) | _TID_ALPHABET.index(ch)
    return _EPOCH + timedelta(microseconds=n >> 10)
