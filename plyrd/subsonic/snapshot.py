"""What Subsonic reads of the whole catalog, computed once per catalog change rather than once per request.

Album lists, getAlbum's album row and random songs all start from every album (or song) a caller may see: grouping
10,000 tracks into albums costs tens of milliseconds of SQLite, which clients ask for again with every scroll. The
database counts its changes (`catalog_epoch`, migration 0030: triggers bump it whenever a table those answers read
changes, in the writing transaction), so a request reads that one number and takes the answer computed for it, or
computes it (in the same read transaction, so the number and the answer agree) and keeps it for the next callers.

An answer is shared by callers who see the same tracks: the same `is_admin`, `library` and signed-in state, and no
track they see only as its owner (plyrd.catalog.tracks `seen_as_owner`, e.g. their own taken-down track); such an
owner gets answers of their own. A few answers are kept per database (least recently used first out), and those of an
older epoch go as soon as a newer one is stored: memory stays at a few catalogs' worth of album rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ..catalog.tracks import Audience, seen_as_owner
from ..db.queries import one

T = TypeVar("T")

KEEP = 6  # answers kept per database: a household's few audience classes and music folders
# How far behind the counted plays an answer may be (play counts, the frequent list): a node where people listen
# counts a play every few seconds, and rebuilding every album for each (~90 ms on 10,000 tracks here, several times
# that on a Pi) would cost more than the lists themselves. Any other change is in the very next answer.
PLAYS_BEHIND = 60.0


def epoch(conn: sqlite3.Connection) -> tuple[int, int]:
    """The catalog's change count and its play count as the caller's read transaction sees them."""
    row = one(conn, "SELECT n, plays FROM catalog_epoch WHERE id = 1")
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def audience_class(conn: sqlite3.Connection, audience: Audience) -> tuple[Hashable, ...]:
    """Who sees the same tracks as `audience`: the caller's DID counts only when some track is theirs to see alone."""
    own = seen_as_owner(audience)
    owner = None
    if audience.did is not None and one(conn, f"SELECT EXISTS (SELECT 1 FROM tracks t WHERE {own.sql})",
                                        own.params)[0]:
        owner = audience.did
    return (audience.is_admin, audience.library, audience.did is not None, owner)


class Snapshots:
    """Answers computed from the catalog, each kept for the epoch it was computed at. Used from the readers' threads
    (Database.read_fn): two readers may compute one answer at once, and either is right."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._entries: OrderedDict[tuple[int, Hashable], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # how many answers were computed (tests, benchmarks)

    def get(self, conn: sqlite3.Connection, key: Hashable, build: Callable[[sqlite3.Connection], T]) -> T:
        """The answer for `key` at the epoch `conn` sees, computed by `build(conn)` when there is none yet (or when
        plays were counted since it was, more than PLAYS_BEHIND seconds ago)."""
        now, plays = epoch(conn)
        found = self._find(now, plays, key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        value = build(conn)
        self.built += 1
        with self._lock:
            if any(e > now for e, _ in self._entries):
                return value  # a reader older than the catalog: answer it, keep the newer ones
            for stale in [k for k in self._entries if k[0] < now]:
                del self._entries[stale]
            self._entries[(now, key)] = (plays, time.monotonic(), value)
            while len(self._entries) > self.keep:
                self._entries.popitem(last=False)
        return value

    def peek(self, conn: sqlite3.Connection, key: Hashable) -> Any | None:
        """The answer for `key` at the epoch `conn` sees if one was computed, else None (nothing is computed)."""
        return self._find(*epoch(conn), key)

    def _find(self, now: int, plays: int, key: Hashable) -> Any | None:
        with self._lock:
            found = self._entries.get((now, key))
            if found is None:
                return None
            kept_plays, built_at, value = found
            if kept_plays != plays and time.monotonic() - built_at > PLAYS_BEHIND:
                return None  # plays were counted since, long enough ago: count them in
            self._entries.move_to_end((now, key))
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_BY_DATABASE: weakref.WeakKeyDictionary[Any, Snapshots] = weakref.WeakKeyDictionary()
_CREATE = threading.Lock()


def of(db: Any) -> Snapshots:
    """The answers kept for this database (a plyrd.db.Database), made on first use and gone with it."""
    with _CREATE:
        found = _BY_DATABASE.get(db)
        if found is None:
            found = _BY_DATABASE[db] = Snapshots()
        return found
