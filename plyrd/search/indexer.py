"""The indexer: applies plyrd.db's change log (search_changes, written by triggers) to search.db, in order.

Each step reads a batch of change rows, works out every doc they touch (a track's edit touches its artist, tags
and albums; an artist's new name touches everything they own), reads those docs' current state from plyrd.db and
writes them to search.db in one transaction together with the batch's last sequence number. A crash anywhere
leaves search.db at a batch boundary: the next start carries on from the sequence it recorded. Applied rows are
then deleted from the log.

The index is rebuilt from the catalog when it cannot just carry on: no sequence recorded (a new or half-built
index), another catalog's index, or a log pruned past what the index has seen (search.db restored from an older
copy). `plyrd reindex` does the same with the node stopped.

plyrd.db is read through the node's aiosqlite Database; search.db is written through apsw in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..db import Database
from .docs import first_key, make_doc, sql_after, sql_for_keys
from .index import KINDS, Doc, SearchIndex

log = logging.getLogger("plyrd.search")

BATCH = 500          # change rows per step
CHUNK = 500          # keys per read of plyrd.db
REBUILD_PAGE = 500   # rows per read (and per index transaction) in a rebuild: small, so requests interleave
POLL = 1.0           # seconds between looks at the log when nobody wakes the indexer

ENTITY_KIND = {"track": "tracks", "artist": "artists", "album": "albums", "tag": "tags", "playlist": "playlists"}

# Reads plyrd.db: (sql, params) -> rows with named columns. Async in the node, sync in `plyrd reindex`.
AsyncRead = Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]]

HIGH_WATER = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'search_changes'), 0)"
CATALOG_ID = "SELECT value FROM node_state WHERE key = 'created_at'"


class Indexer:
    def __init__(self, db: Database, index: SearchIndex, *, poll: float = POLL) -> None:
        self.db = db
        self.index = index
        self.poll = poll
        self.applied = 0              # the last sequence in search.db
        self.rebuilding = False
        self.ready = asyncio.Event()  # set once the index has caught up at least once since start
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()

    # ---- the worker ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.prepare(stop)
        while not stop.is_set():
            if await self.step():
                continue
            self.ready.set()
            self._wake.clear()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
            await asyncio.wait(waits, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()

    def wake(self) -> None:
        self._wake.set()

    async def wait_for(self, seq: int, seconds: float) -> bool:
        """Wait until `seq` is applied (a search just after an edit sees the edit); False after `seconds`."""
        if self.applied >= seq:
            return True
        self.wake()
        try:
            async with asyncio.timeout(seconds), self._progress:
                await self._progress.wait_for(lambda: self.applied >= seq)
            return True
        except TimeoutError:
            return False

    async def high_water(self) -> int:
        row = await self.db.fetchone(HIGH_WATER)
        return int(row[0]) if row else 0

    # ---- start-up -----------------------------------------------------------------------------------------------

    async def prepare(self, stop: asyncio.Event | None = None) -> None:
        """Carry on from search.db's last sequence, or rebuild when that cannot be trusted."""
        catalog_id = await self._catalog_id()
        last = await asyncio.to_thread(lambda: self.index.last_seq)
        reason = await self._rebuild_reason(last, catalog_id)
        if reason:
            await self.rebuild(reason, catalog_id, stop)
        else:
            self.applied = last or 0
            await self._prune(self.applied)  # rows a crash or `plyrd reindex` left behind

    async def _catalog_id(self) -> str:
        row = await self.db.fetchone(CATALOG_ID)
        return str(row[0]) if row else ""

    async def _rebuild_reason(self, last: int | None, catalog_id: str) -> str | None:
        if last is None:
            return "no complete index"
        if await asyncio.to_thread(self.index.meta, "catalog_id") != catalog_id:
            return "the index belongs to another catalog"
        high = await self.high_water()
        if last > high:
            return "the index is newer than the catalog (was plyrd.db restored from a backup?)"
        first = await self.db.fetchone("SELECT min(seq) FROM search_changes")
        oldest = first[0] if first and first[0] is not None else high + 1
        if oldest > last + 1:
            return "changes the index never saw were pruned (was search.db restored from an older copy?)"
        return None

    async def rebuild(self, reason: str, catalog_id: str | None = None, stop: asyncio.Event | None = None) -> None:
        """Refill the index from the catalog; a stop half-way leaves it incomplete, rebuilt at the next start."""
        self.rebuilding = True
        started = time.monotonic()
        log.info("rebuilding the search index", extra={"fields": {"reason": reason}})
        try:
            catalog_id = catalog_id if catalog_id is not None else await self._catalog_id()
            high = await self.high_water()  # before reading: changes after it are applied afterwards
            counts = await rebuild_async(self.index, self._read, high, catalog_id, stop)
        finally:
            self.rebuilding = False
        if counts is None:
            log.info("search index rebuild stopped; it starts again with the node")
            return
        await self._advance(high)
        await self._prune(high)
        log.info("search index rebuilt", extra={"fields": {
            **counts, "seconds": round(time.monotonic() - started, 2)}})

    # ---- steps --------------------------------------------------------------------------------------------------

    async def step(self) -> int:
        """Apply the next batch of changes; the number of change rows applied (0: the index is up to date)."""
        rows = await self.db.fetchall("SELECT seq, entity, key FROM search_changes WHERE seq > ? ORDER BY seq LIMIT ?",
                                      (self.applied, BATCH))
        if not rows:
            return 0
        last = rows[-1]["seq"]
        upserts, removals = await self._refresh({(ENTITY_KIND[r["entity"]], r["key"]) for r in rows})
        await asyncio.to_thread(self.index.apply, upserts, removals, last)
        await self._advance(last)
        await self._prune(last)
        return len(rows)

    async def _prune(self, seq: int) -> None:
        """Applied rows are no longer needed (search.db has recorded `seq` by now)."""
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM search_changes WHERE seq <= ?", (seq,))

    async def _advance(self, seq: int) -> None:
        async with self._progress:
            self.applied = seq
            self._progress.notify_all()

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return await self.db.fetchall(sql, params)

    async def _refresh(self, changed: set[tuple[str, str]]) -> tuple[list[Doc], list[tuple[str, str]]]:
        """The docs to write and remove for these changed things, with everything they touch."""
        targets: dict[str, set[str]] = {k: set() for k in KINDS}
        for kind, key in changed:
            targets[kind].add(key)
        # Everything an artist owns shows their name and handle.
        for did in list(targets["artists"]):
            for kind, key in await asyncio.to_thread(self.index.docs_of_owner, did):
                targets[kind].add(key)
        # An album's title is in its tracks' docs.
        for album_id in list(targets["albums"]):
            for r in await self.db.fetchall("SELECT track_id FROM album_tracks WHERE album_id = ?", (album_id,)):
                targets["tracks"].add(str(r["track_id"]))

        docs: dict[str, dict[str, Doc]] = {}
        docs["tracks"] = await self._load("tracks", targets["tracks"])
        # A track coming or going changes whether its artist, tags and albums have a visible track.
        before = await asyncio.to_thread(self.index.docs, "tracks", targets["tracks"])
        for d in [*before.values(), *docs["tracks"].values()]:
            if d.owner:
                targets["artists"].add(d.owner)
            targets["tags"].update(d.extra.get("tags", []))
            targets["albums"].update(d.extra.get("albums", []))
        for kind in ("artists", "albums", "tags", "playlists"):
            docs[kind] = await self._load(kind, targets[kind])
        upserts = [d for kind in KINDS for d in docs[kind].values()]
        removals = [(kind, key) for kind in KINDS for key in targets[kind] if key not in docs[kind]]
        return upserts, removals

    async def _load(self, kind: str, keys: Iterable[str]) -> dict[str, Doc]:
        """The current docs of these keys; keys missing from the answer are no longer searchable."""
        return await load_docs(self._read, kind, keys)


async def load_docs(read: AsyncRead, kind: str, keys: Iterable[str]) -> dict[str, Doc]:
    wanted = sorted(keys)
    out: dict[str, Doc] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk: list[Any] = wanted[i:i + CHUNK]
        if kind == "tracks":
            chunk = [int(k) for k in chunk if k.isdigit()]
        rows = await read(sql_for_keys(kind), (json.dumps(chunk),))
        for doc in await asyncio.to_thread(make_docs, kind, rows):  # folding is CPU work: not on the event loop
            out[doc.key] = doc
    return out


def make_docs(kind: str, rows: list[Any]) -> list[Doc]:
    return [make_doc(kind, r) for r in rows]


def _index_rows(index: SearchIndex, kind: str, rows: list[Any]) -> None:
    index.apply(make_docs(kind, rows))


async def rebuild_async(index: SearchIndex, read: AsyncRead, high: int, catalog_id: str,
                        stop: asyncio.Event | None = None) -> dict[str, int] | None:
    """Fill an emptied index from the catalog, page by page; `high` becomes its last sequence. None if stopped."""
    await asyncio.to_thread(index.begin_rebuild)
    counts: dict[str, int] = {}
    for kind in KINDS:
        after, n = first_key(kind), 0
        while True:
            if stop is not None and stop.is_set():
                return None
            rows = await read(sql_after(kind), (after, REBUILD_PAGE))
            if not rows:
                break
            await asyncio.to_thread(_index_rows, index, kind, rows)
            n += len(rows)
            after = rows[-1]["key"]
        counts[kind] = n
    await asyncio.to_thread(index.finish_rebuild, high, catalog_id)
    return counts


def rebuild_sync(index: SearchIndex, conn: sqlite3.Connection) -> tuple[int, dict[str, int]]:
    """`plyrd reindex`: the same rebuild, reading plyrd.db through the stdlib (the node is stopped)."""
    conn.row_factory = sqlite3.Row

    async def read(sql: str, params: tuple[Any, ...]) -> list[Any]:
        return conn.execute(sql, params).fetchall()

    async def run() -> tuple[int, dict[str, int]]:
        high = int(conn.execute(HIGH_WATER).fetchone()[0])
        row = conn.execute(CATALOG_ID).fetchone()
        counts = await rebuild_async(index, read, high, str(row[0]) if row else "")
        assert counts is not None  # nothing stops it
        return high, counts

    return asyncio.run(run())
