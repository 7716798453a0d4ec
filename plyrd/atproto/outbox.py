"""The durable outbox: record writes to users' PDSes, committed together with the local change that causes them.

    async with db.write() as conn:                        # the catalog's own transaction
        await conn.execute("INSERT INTO likes ...")
        uri, cid = await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=new_tid(), record=record)

    outbox = Outbox(db, auth.pds_session_for_did, blobs.path_for)
    workers.start("outbox", outbox.run)

Queueing. A write is a row in `outbox`; the record is validated and its CID computed before the row exists, so
callers store strongRefs at once. Writes to one record coalesce while they wait: consecutive puts keep the latest,
a delete after a put that never reached the PDS removes the put and sends nothing (an unlike before its like was
sent leaves no trace), a put after a delete replaces it. So each record has at most one waiting row, and its writes
reach the PDS in the order they were made. `attempts` counts the times a row was claimed and is never reset: a row
with attempts may have reached the PDS without an answer saying so (a lost response), so a delete after it is sent.

Sending. The worker drains each DID in seq order through that user's PDS session (`sessions(did)`; None means
nobody with that DID is signed in here, and the rows wait). Blobs a record needs are uploaded first, once per PDS
(`pds_blobs`). Several rows go as one `applyWrites`; if the PDS refuses the batch, each row is sent alone with
putRecord/deleteRecord so one bad row cannot hold the others. A network failure, 5xx or 429 retries with
exponential backoff and jitter (the DID is held meanwhile); when the PDS says how long to wait (`Retry-After`, or
ATProto's `RateLimit-Reset` on a 429) the DID waits at least that long, up to RETRY_AFTER_MAX, and a batch the PDS
turned away that way is not retried row by row. A 4xx that retrying cannot fix marks the row failed with its
error. An accepted write deletes its row and updates `pds_records`, plyrd's view of the PDS. Rows survive
restarts: a row claimed (`sending`) when the process stopped is sent again, which is harmless because every write
names its rkey (putRecord replaces, deleteRecord of a missing record succeeds).

The ledger. `pds_records` is written only here (`remember`, `forget`, `forget_account`) and read through the lookups
below it: the worker remembers what a PDS accepted, reconciliation and imports what they found there, each with
the blob CIDs the record keeps alive on that PDS (which spares uploading them again). Catalog code reaches a user's
repo only through this module: queued writes, and for reconciliation and account deletion `list_records` and
`delete_collections` (an import downloads blobs with the public getBlob, in plyrd.catalog.track_import).

Run one Outbox per database.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from .. import errors
from ..db import Database
from ..db.queries import one, run
from ..workers import sleep_or_stop
from .cbor import blob_cid, blob_cids, record_cid
from .lexicon import is_did, validate, validate_rkey
from .records import at_uri
from .xrpc import MAX_APPLY_WRITES, PDSSession

log = logging.getLogger("plyrd.outbox")

PENDING, SENDING, FAILED = "pending", "sending", "failed"
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"
# An uploaded blob no record references yet counts as present on the PDS for this long (PDSes delete such blobs
# after an hour or more); later it is uploaded again before a record that needs it.
BLOB_FRESH = 1800.0
UPLOAD_CHUNK = 256 * 1024
# The longest wait a PDS's Retry-After or RateLimit-Reset can impose: past it plyrd asks again (a clock far off, or a
# daily write budget spent, should not park a user's writes indefinitely; the PDS will say again if it must).
RETRY_AFTER_MAX = 3600.0

SessionSource = Callable[[str], "Awaitable[PDSSession | None] | PDSSession | None"]
BlobPath = Callable[[str], Path]
BlobSpec = tuple[str, str, int]  # sha256, mime type, size


class QueuedPut(NamedTuple):
    uri: str
    cid: str  # computed locally; equal to what the PDS will answer


# --------------------------------------------------------------------------- wake-ups

_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()


def _wake_all(did: str) -> None:
    """A connection does not say which database it belongs to; waking every outbox is harmless (one empty claim).
    The worker claims through the write lock, so it runs after the enqueuing transaction has committed. Called on a
    connection's thread (queue_put inside Database.write_fn), the wake is handed to the outbox's event loop."""
    for outbox in list(_outboxes):
        loop = outbox.loop
        if loop is None or threading.get_ident() == outbox.loop_thread:
            outbox.wake(did)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(outbox.wake, did)


# --------------------------------------------------------------------------- queueing


def _normalize_blobs(blobs: Iterable[Sequence[Any]]) -> list[BlobSpec]:
    out: list[BlobSpec] = []
    for blob in blobs:
        if len(blob) != 3:
            raise errors.InvalidInput("each blob is (sha256, mime type, size)")
        sha, mime, size = blob
        blob_cid(sha)  # checks the digest
        if not isinstance(mime, str) or "/" not in mime or not isinstance(size, int) or size < 0:
            raise errors.InvalidInput(f"blob {sha}: needs a MIME type and a size in bytes")
        if all(b[0] != sha for b in out):
            out.append((sha, mime, size))
    return out


def _tail(conn: sqlite3.Connection, did: str, collection: str, rkey: str) -> Any:
    """The record's waiting row, if any (there is at most one)."""
    return one(
        conn,
        f"SELECT seq, op FROM outbox WHERE did = ? AND collection = ? AND rkey = ? AND state = '{PENDING}' "
        "ORDER BY seq DESC LIMIT 1",
        (did, collection, rkey),
    )


def _reached_pds(conn: sqlite3.Connection, did: str, collection: str, rkey: str) -> bool:
    """Whether some version of the record is, or may be, on the PDS: plyrd wrote it, a write is in flight, or a
    waiting write was sent before without an answer (a lost response may still have been committed there)."""
    row = one(
        conn,
        "SELECT 1 FROM pds_records WHERE did = ? AND collection = ? AND rkey = ? "
        "UNION ALL SELECT 1 FROM outbox WHERE did = ? AND collection = ? AND rkey = ? "
        f"AND (state = '{SENDING}' OR (state = '{PENDING}' AND attempts > 0)) LIMIT 1",
        (did, collection, rkey) * 2,
    )
    return row is not None


def _blob_known(conn: sqlite3.Connection, did: str, cid: str) -> bool:
    row = one(
        conn,
        "SELECT 1 FROM pds_blobs WHERE did = ? AND cid = ? UNION ALL "
        "SELECT 1 FROM pds_records, json_each(pds_records.blob_cids) AS b WHERE pds_records.did = ? AND b.value = ? "
        "LIMIT 1",
        (did, cid, did, cid),
    )
    return row is not None


def _check_target(did: str, collection: str, rkey: str) -> None:
    if not isinstance(did, str) or not is_did(did):
        raise errors.InvalidInput(f"{did!r} is not a DID")
    validate_rkey(collection, rkey)


async def enqueue_put(
    conn: aiosqlite.Connection,
    *,
    did: str,
    collection: str,
    rkey: str,
    record: dict[str, Any],
    blobs: Iterable[Sequence[Any]] = (),
) -> QueuedPut:
    """`queue_put` inside the caller's `db.write()` transaction (one hop)."""
    return await run(conn, lambda c: queue_put(c, did=did, collection=collection, rkey=rkey, record=record,
                                               blobs=blobs))


def queue_put(
    conn: sqlite3.Connection,
    *,
    did: str,
    collection: str,
    rkey: str,
    record: dict[str, Any],
    blobs: Iterable[Sequence[Any]] = (),
) -> QueuedPut:
    """Queue a create-or-replace of `at://did/collection/rkey`, inside the caller's write transaction (a function
    Database.write_fn runs, on the writer's thread).

    The record is validated against its lexicon first (InvalidInput otherwise). `blobs` are (sha256, mime, size)
    of local blobs the record references; the outbox uploads each to the PDS before the record unless it is known
    to be there. Every blob the record references must be listed or known on that PDS. Returns (uri, cid).
    """
    _check_target(did, collection, rkey)
    validate(collection, record)
    specs = _normalize_blobs(blobs)
    listed = {blob_cid(sha) for sha, _, _ in specs}
    for cid in blob_cids(record):
        if cid not in listed and not _blob_known(conn, did, cid):
            raise errors.InvalidInput(f"the record references blob {cid}, which is neither given nor on the PDS")
    cid = record_cid(record)
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    blob_json = json.dumps([list(b) for b in specs])
    tail = _tail(conn, did, collection, rkey)
    if tail is not None:
        # The waiting write has not been sent: replace it (a put after a delete is just the put).
        conn.execute(
            f"UPDATE outbox SET op = 'put', record = ?, cid = ?, blobs = ?, next_attempt_at = {_NOW_SQL},"
            f" last_error = NULL, updated_at = {_NOW_SQL} WHERE seq = ?",
            (body, cid, blob_json, tail["seq"]),
        )
    else:
        conn.execute(
            "INSERT INTO outbox(did, collection, rkey, op, record, cid, blobs) VALUES (?, ?, ?, 'put', ?, ?, ?)",
            (did, collection, rkey, body, cid, blob_json),
        )
    _wake_all(did)
    return QueuedPut(at_uri(did, collection, rkey), cid)


async def enqueue_delete(conn: aiosqlite.Connection, *, did: str, collection: str, rkey: str) -> bool:
    """`queue_delete` inside the caller's `db.write()` transaction (one hop)."""
    return await run(conn, lambda c: queue_delete(c, did=did, collection=collection, rkey=rkey))


def queue_delete(conn: sqlite3.Connection, *, did: str, collection: str, rkey: str) -> bool:
    """Queue the deletion of `at://did/collection/rkey`, inside the caller's write transaction (a function
    Database.write_fn runs). Returns whether anything will be sent: False when the record's put had not reached
    the PDS and was simply dropped."""
    _check_target(did, collection, rkey)
    tail = _tail(conn, did, collection, rkey)
    if tail is not None and tail["op"] == "delete":
        return True
    if tail is not None:
        if not _reached_pds(conn, did, collection, rkey):
            conn.execute("DELETE FROM outbox WHERE seq = ?", (tail["seq"],))
            return False
        conn.execute(
            f"UPDATE outbox SET op = 'delete', record = NULL, cid = NULL, blobs = '[]',"
            f" next_attempt_at = {_NOW_SQL}, last_error = NULL, updated_at = {_NOW_SQL} WHERE seq = ?",
            (tail["seq"],),
        )
    else:
        # Even when plyrd has no sign of the record on the PDS (written before plyrd tracked it, or by another
        # client) the delete goes out: deleting a missing record is a no-op there.
        conn.execute(
            "INSERT INTO outbox(did, collection, rkey, op) VALUES (?, ?, ?, 'delete')", (did, collection, rkey)
        )
    _wake_all(did)
    return True


async def outbox_counts(db: Database, did: str | None = None) -> dict[str, int]:
    """Rows by state ({"pending": n, "sending": n, "failed": n}), for one DID or all."""
    where, params = ("WHERE did = ?", (did,)) if did else ("", ())
    rows = await db.fetchall(f"SELECT state, count(*) FROM outbox {where} GROUP BY state", params)
    counts = {PENDING: 0, SENDING: 0, FAILED: 0}
    counts.update({r[0]: r[1] for r in rows})
    return counts


async def retry_failed(db: Database, did: str | None = None) -> int:
    """Put failed rows back in the queue (after the cause was fixed, e.g. a scope upgrade); returns how many.
    A failed row whose record has a newer write waiting is dropped instead: the newer write wins."""
    where, params = ("AND did = ?", (did,)) if did else ("", ())
    async with db.write() as conn:
        await conn.execute(
            f"DELETE FROM outbox WHERE state = '{FAILED}' {where} AND EXISTS (SELECT 1 FROM outbox AS o WHERE "
            f"o.did = outbox.did AND o.collection = outbox.collection AND o.rkey = outbox.rkey "
            f"AND o.state = '{PENDING}')",
            params,
        )
        cur = await conn.execute(
            f"UPDATE outbox SET state = '{PENDING}', next_attempt_at = {_NOW_SQL}, "
            f"updated_at = {_NOW_SQL} WHERE state = '{FAILED}' {where}",
            params,
        )
        n = cur.rowcount
    for outbox in list(_outboxes):
        outbox.wake(did)
    return n


# --------------------------------------------------------------------------- the ledger: what each PDS holds


_REMEMBER = (
    "INSERT INTO pds_records(did, collection, rkey, uri, cid, record, blob_cids) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(did, collection, rkey) DO UPDATE SET uri = excluded.uri, cid = excluded.cid,"
    f" record = excluded.record, blob_cids = excluded.blob_cids, synced_at = {_NOW_SQL}"
)
_FORGET = "DELETE FROM pds_records WHERE did = ? AND collection = ? AND rkey = ?"


def _remembered(did: str, collection: str, rkey: str, uri: str, cid: str, record: dict[str, Any]) -> tuple[Any, ...]:
    return (did, collection, rkey, uri, cid, json.dumps(record, separators=(",", ":"), ensure_ascii=False),
            json.dumps(blob_cids(record)))


async def remember(conn: aiosqlite.Connection, *, did: str, collection: str, rkey: str, uri: str, cid: str,
                   record: dict[str, Any]) -> None:
    """Note, inside the caller's transaction, that the PDS holds this record: one plyrd wrote (the worker), or one
    found there (reconciliation, an import). The blobs it references count as kept alive on that PDS."""
    await conn.execute(_REMEMBER, _remembered(did, collection, rkey, uri, cid, record))


async def forget(conn: aiosqlite.Connection, *, did: str, collection: str, rkey: str) -> None:
    """Note, inside the caller's transaction, that the PDS no longer holds this record."""
    await conn.execute(_FORGET, (did, collection, rkey))


async def forget_account(conn: aiosqlite.Connection, did: str) -> int:
    """For account deletion, inside its transaction: nothing more goes to the user's PDS from here. Their queued
    writes and what was known of their repo are dropped. Returns how many writes were still queued."""
    cur = await conn.execute("DELETE FROM outbox WHERE did = ?", (did,))
    queued = cur.rowcount
    await conn.execute("DELETE FROM pds_records WHERE did = ?", (did,))
    await conn.execute("DELETE FROM pds_blobs WHERE did = ?", (did,))
    return queued


async def synced_rkeys(db: Database, did: str, collection: str) -> set[str]:
    """The record keys of a collection that plyrd knows to be on the user's PDS."""
    rows = await db.fetchall("SELECT rkey FROM pds_records WHERE did = ? AND collection = ?", (did, collection))
    return {r["rkey"] for r in rows}


async def queued_rkeys(db: Database, did: str, collection: str) -> set[str]:
    """The record keys of a collection with a write of plyrd's not accepted by the PDS yet (waiting, in flight, or
    failed): what the PDS shows of them says nothing yet."""
    rows = await db.fetchall("SELECT rkey FROM outbox WHERE did = ? AND collection = ?", (did, collection))
    return {r["rkey"] for r in rows}


def synced_field_sql(collection: str, did_sql: str, rkey_sql: str, json_path: str) -> str:
    """A scalar SQL subquery for read models: the value at `json_path` of the record at (`did_sql`, `collection`,
    `rkey_sql`: SQL expressions of the outer query) as its PDS last accepted it; NULL when the PDS holds no such
    record or value (for example the CID of the audio blob a track record keeps on its artist's PDS)."""
    if not all(c.isalnum() or c in "._" for c in collection):
        raise ValueError(f"not a collection NSID: {collection!r}")
    path = json_path.replace("'", "''")
    return (f"(SELECT json_extract(r.record, '{path}') FROM pds_records r"
            f" WHERE r.did = {did_sql} AND r.collection = '{collection}' AND r.rkey = {rkey_sql})")


async def is_queued(conn: aiosqlite.Connection, did: str, collection: str, rkey: str) -> bool:
    """Whether one record has such a write, read inside the caller's transaction."""
    async with conn.execute("SELECT 1 FROM outbox WHERE did = ? AND collection = ? AND rkey = ? LIMIT 1",
                            (did, collection, rkey)) as cur:
        return await cur.fetchone() is not None


# --------------------------------------------------------------------------- reading and clearing a repo

LIST_PAGE = 100
MAX_LISTED = 20_000  # records per collection: a bound on one listing, far above any real listener's likes


async def list_records(session: PDSSession, collection: str) -> dict[str, dict[str, Any]]:
    """Every record of a collection in the user's repo as the PDS lists it: rkey -> {uri, cid, value}."""
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while len(out) < MAX_LISTED:
        page = await session.list_records(collection, limit=LIST_PAGE, cursor=cursor)
        for rec in page.get("records", []):
            out[rec["uri"].rsplit("/", 1)[1]] = rec
        cursor = page.get("cursor")
        if not cursor or not page.get("records"):
            break
    return out


async def delete_collections(session: PDSSession, collections: Iterable[str]) -> int:
    """Delete every record of these collections in the user's repo now, not only those plyrd wrote, in batches of
    MAX_APPLY_WRITES (for account deletion, which then forgets the account: `forget_account`). Returns how many."""
    deleted = 0
    for collection in collections:
        rkeys = list(await list_records(session, collection))
        for start in range(0, len(rkeys), MAX_APPLY_WRITES):
            batch = rkeys[start:start + MAX_APPLY_WRITES]
            await session.apply_writes([
                {"$type": "com.atproto.repo.applyWrites#delete", "collection": collection, "rkey": rk}
                for rk in batch
            ])
            deleted += len(batch)
    return deleted


# --------------------------------------------------------------------------- the worker


@dataclass
class _Row:
    seq: int
    did: str
    collection: str
    rkey: str
    op: str
    record: dict[str, Any] | None
    cid: str | None
    blobs: list[BlobSpec]
    attempts: int

    @classmethod
    def from_row(cls, row: Any) -> _Row:
        return cls(
            seq=row["seq"], did=row["did"], collection=row["collection"], rkey=row["rkey"], op=row["op"],
            record=json.loads(row["record"]) if row["record"] is not None else None, cid=row["cid"],
            blobs=[tuple(b) for b in json.loads(row["blobs"])], attempts=row["attempts"],  # type: ignore[misc]
        )

    @property
    def uri(self) -> str:
        return at_uri(self.did, self.collection, self.rkey)


@dataclass
class _Outcome:
    """What one pass over a batch decided, written in one transaction."""

    done: list[tuple[_Row, str | None]] = field(default_factory=list)  # row, the CID the PDS answered
    failed: list[tuple[_Row, str]] = field(default_factory=list)
    retry: list[_Row] = field(default_factory=list)
    retry_error: str | None = None
    retry_delay: float = 0.0
    # When the rows to retry are due again: one instant for all of them and the DID's hold, so the retry finds the
    # whole batch due at once (per-row times taken a few microseconds apart once split it into a putRecord and a
    # smaller applyWrites).
    retry_at: float = 0.0


class _Transient(Exception):
    """The PDS cannot take writes now (down, overloaded, rate limiting): retry the DID later, not before
    `retry_after` seconds when the PDS named a wait."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class _NoSession(Exception):
    """The PDS did not accept the session: wait for the user to sign in again."""


def _is_transport_failure(exc: BaseException) -> bool:
    # xrpc_error() tags HTTP answers with .status; a failure to get any answer has none.
    return isinstance(exc, errors.UpstreamError) and getattr(exc, "status", None) is None


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, errors.UpstreamError | errors.RateLimited | errors.Unavailable)


def _retry_after(exc: BaseException) -> float | None:
    """The wait the PDS asked for with this error (xrpc_error() reads it from the answer's headers)."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def _backs_off(exc: BaseException) -> bool:
    """The PDS asked for patience (a 429, a 503, a named wait) rather than refusing these writes: sending the batch's
    rows one by one would only add requests to a PDS that wants fewer."""
    return isinstance(exc, errors.RateLimited) or getattr(exc, "status", None) == 503 or _retry_after(exc) is not None


def _describe(exc: BaseException) -> str:
    return exc.detail if isinstance(exc, errors.PlyrdError) else f"{type(exc).__name__}: {exc}"


class Outbox:
    """Drains the outbox to users' PDSes. `run(stop)` is the worker loop for plyrd.workers.Workers."""

    def __init__(
        self,
        db: Database,
        sessions: SessionSource,
        blob_path: BlobPath,
        *,
        batch_size: int = 100,
        concurrency: int = 4,
        poll_interval: float = 30.0,
        backoff_base: float = 1.0,
        backoff_max: float = 600.0,
        apply_writes: bool = True,
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.blob_path = blob_path
        self.batch_size = max(1, min(batch_size, MAX_APPLY_WRITES))
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.apply_writes = apply_writes
        self.stats = {"written": 0, "failed": 0, "retries": 0, "batches": 0, "fallbacks": 0, "blobs_uploaded": 0}
        self._wake = asyncio.Event()
        self._hold: dict[str, float] = {}  # did -> time.time() before which it is not tried
        self._no_session: set[str] = set()  # held DIDs whose hold ends early when something new arrives
        self._failures: dict[str, int] = {}  # did -> consecutive transient failures, for the backoff
        self._claimed: set[int] = set()
        # The loop it runs on, so that a transaction on a connection's thread can wake it (_wake_all).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        _outboxes.add(self)

    def wake(self, did: str | None = None) -> None:
        """Look at the queue now. With a DID (or None for all) held only for want of a session, try it again:
        call this after that user signs in."""
        if did is None:
            for d in list(self._no_session):
                self._hold.pop(d, None)
            self._no_session.clear()
        elif did in self._no_session:
            self._no_session.discard(did)
            self._hold.pop(did, None)
        self._wake.set()

    @staticmethod
    def asked_wait(seconds: float) -> float:
        """Seconds to hold a DID whose PDS asked for `seconds`: at least that, plus up to 10% so the DIDs of one PDS,
        told the same reset time, do not all come back in the same instant; never more than RETRY_AFTER_MAX."""
        return min(RETRY_AFTER_MAX, max(0.0, seconds) * random.uniform(1.0, 1.1))

    def backoff(self, failures: int) -> float:
        """Seconds before retry number `failures`: doubling from backoff_base, capped, with jitter (50-100%) so
        many nodes or DIDs do not retry in step."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, failures - 1))
        return delay * random.uniform(0.5, 1.0)

    # ---- the loop

    async def run(self, stop: asyncio.Event) -> None:
        self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()
        if not await self._database_open(stop):
            return
        await self._recover()
        active: dict[str, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                self._wake.clear()
                if not active and not await self._database_open(stop):
                    break
                timeout = self.poll_interval
                due, next_in = await self._due_dids(set(active))
                for did in due[: self.concurrency - len(active)]:
                    active[did] = asyncio.create_task(self._drain(did, stop), name=f"plyrd-outbox-{did}")
                if next_in is not None:
                    timeout = min(timeout, max(0.01, next_in))
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait([*waiters, *active.values()], timeout=timeout,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                for did, task in list(active.items()):
                    if task.done():
                        del active[did]
                        if not task.cancelled() and task.exception() is not None:
                            log.error("outbox drain crashed", exc_info=task.exception(), extra={"fields": {"did": did}})
                            self._hold[did] = time.time() + self.backoff(self._bump(did))
            if active:
                await asyncio.wait(active.values())  # each stops after its current batch
        finally:
            for task in active.values():
                task.cancel()
            if active:
                await asyncio.wait(active.values())
            if self._claimed:
                # Claimed but not finished: back to the queue now rather than at the next start.
                await asyncio.shield(self._unclaim(sorted(self._claimed)))

    async def _database_open(self, stop: asyncio.Event) -> bool:
        """Wait while the database is closed (being shut down or swapped); False once `stop` is set."""
        while not self.db.is_open:
            if await sleep_or_stop(stop, self.poll_interval):
                return False
        return not stop.is_set()

    async def _recover(self) -> None:
        """Rows left `sending` by a stopped process go back to the queue (sending again is harmless)."""
        n = await self.db.execute(f"UPDATE outbox SET state = '{PENDING}' WHERE state = '{SENDING}'")
        if n:
            log.info("outbox rows re-queued after a restart", extra={"fields": {"rows": n}})

    async def _unclaim(self, seqs: list[int]) -> None:
        try:
            await self.db.write_fn(lambda conn: conn.executemany(
                f"UPDATE outbox SET state = '{PENDING}' WHERE seq = ? AND state = '{SENDING}'", [(s,) for s in seqs]))
            self._claimed.difference_update(seqs)
        except Exception:
            log.warning("could not re-queue claimed outbox rows; the next start will", exc_info=True)

    async def _due_dids(self, busy: set[str]) -> tuple[list[str], float | None]:
        """DIDs with rows to send now (oldest first), and seconds until the next one becomes due."""
        # Through the write lock, like the claim: a wake-up comes from inside the enqueuing transaction, and a
        # reader could look before that transaction commits and miss the row until the next poll.
        # One hop (write_fn): the write lock is held for the statement's own time, not for a loop turn per step.
        rows = await self.db.write_fn(lambda conn: conn.execute(
            f"SELECT did, min(next_attempt_at) AS due, min(seq) AS first FROM outbox WHERE state = '{PENDING}' "
            "GROUP BY did ORDER BY first").fetchall())
        now = time.time()
        for did, until in list(self._hold.items()):
            if until <= now:  # expired holds go, so the map stays as small as the set of troubled DIDs
                del self._hold[did]
                self._no_session.discard(did)
        due: list[str] = []
        next_at: float | None = None
        for row in rows:
            did = row["did"]
            if did in busy:
                continue
            at = max(row["due"], self._hold.get(did, 0.0))
            if at <= now:
                due.append(did)
            else:
                next_at = at if next_at is None else min(next_at, at)
        return due, (None if next_at is None else next_at - now)

    def _bump(self, did: str) -> int:
        self._failures[did] = self._failures.get(did, 0) + 1
        return self._failures[did]

    async def _session(self, did: str) -> PDSSession | None:
        try:
            found = self.sessions(did)
            if inspect.isawaitable(found):
                found = await found
        except errors.PlyrdError as e:
            log.info("no usable PDS session", extra={"fields": {"did": did, "error": e.detail}})
            return None
        return found  # type: ignore[return-value]

    def _wait_for_session(self, did: str) -> None:
        self._no_session.add(did)
        self._hold[did] = time.time() + self.poll_interval

    async def _drain(self, did: str, stop: asyncio.Event) -> None:
        session = await self._session(did)
        if session is None:
            log.info("outbox waiting for a session", extra={"fields": {"did": did}})
            self._wait_for_session(did)
            return
        while not stop.is_set():
            rows = await self._claim(did)
            if not rows:
                self._failures.pop(did, None)
                return
            outcome = _Outcome()
            try:
                await self._send(session, rows, outcome)
            except _NoSession as e:
                log.info("the PDS refused the session; outbox waiting for a new one",
                         extra={"fields": {"did": did, "error": str(e)}})
                self._retry_rest(rows, outcome, str(e), 0.0)
                self._wait_for_session(did)
            except Exception as e:
                # _Transient, or something unforeseen: either way keep the rows and try again later.
                delay = self.backoff(self._bump(did))
                if isinstance(e, _Transient) and e.retry_after is not None:
                    delay = max(delay, self.asked_wait(e.retry_after))
                self._retry_rest(rows, outcome, str(e) if isinstance(e, _Transient) else repr(e), delay)
                self._hold[did] = outcome.retry_at
                self.stats["retries"] += 1
                fields = {"did": did, "rows": len(outcome.retry), "retry_in": round(delay, 1), "error": str(e),
                          "retry_after": e.retry_after if isinstance(e, _Transient) else None}
                if isinstance(e, _Transient):
                    log.warning("PDS write failed; will retry", extra={"fields": fields})
                else:
                    log.exception("outbox batch crashed; will retry", extra={"fields": fields})
            finally:
                await asyncio.shield(self._record_outcome(outcome))
            if outcome.retry:
                return

    @staticmethod
    def _retry_rest(rows: list[_Row], outcome: _Outcome, error: str, delay: float) -> None:
        handled = {r.seq for r, _ in outcome.done} | {r.seq for r, _ in outcome.failed}
        outcome.retry = [r for r in rows if r.seq not in handled]
        outcome.retry_error, outcome.retry_delay, outcome.retry_at = error, delay, time.time() + delay

    async def _claim(self, did: str) -> list[_Row]:
        found = await self.db.write_fn(lambda conn: conn.execute(
            f"UPDATE outbox SET state = '{SENDING}', attempts = attempts + 1, updated_at = {_NOW_SQL} WHERE seq IN ("
            f"SELECT seq FROM outbox WHERE did = ? AND state = '{PENDING}' AND next_attempt_at <= {_NOW_SQL} "
            "ORDER BY seq LIMIT ?) RETURNING *",
            (did, self.batch_size),
        ).fetchall())
        rows = [_Row.from_row(r) for r in found]
        rows.sort(key=lambda r: r.seq)
        self._claimed.update(r.seq for r in rows)
        return rows

    # ---- sending

    async def _send(self, session: PDSSession, rows: list[_Row], outcome: _Outcome) -> None:
        """Send a batch, filling `outcome`; raises _Transient or _NoSession to stop early (see _drain)."""
        todo = await self._ensure_blobs(session, rows, outcome)
        if len(todo) > 1 and self.apply_writes and await self._send_batch(session, todo, outcome):
            return
        for row in todo:
            await self._send_one(session, row, outcome)

    def _classify(self, exc: BaseException) -> None:
        """Raise _Transient or _NoSession for errors that retrying or signing in can fix; return for the rest."""
        if isinstance(exc, errors.Unauthenticated):
            raise _NoSession(_describe(exc)) from exc
        if _is_transient(exc):
            raise _Transient(_describe(exc), _retry_after(exc)) from exc

    async def _send_batch(self, session: PDSSession, rows: list[_Row], outcome: _Outcome) -> bool:
        """One applyWrites for the batch; False when the PDS refused it (then each row goes alone)."""
        known = await self._known_records(rows)
        writes: list[dict[str, Any]] = []
        for row in rows:
            if row.op == "delete":
                writes.append({"$type": "com.atproto.repo.applyWrites#delete", "collection": row.collection,
                               "rkey": row.rkey})
            else:
                # applyWrites has no upsert: #update needs the record to exist, #create that it does not.
                kind = "update" if (row.collection, row.rkey) in known else "create"
                writes.append({"$type": f"com.atproto.repo.applyWrites#{kind}", "collection": row.collection,
                               "rkey": row.rkey, "value": row.record})
        self.stats["batches"] += 1
        try:
            answer = await session.apply_writes(writes)
        except errors.PlyrdError as e:
            if _is_transport_failure(e):
                raise _Transient(_describe(e)) from e
            if isinstance(e, errors.Unauthenticated) or _backs_off(e):
                self._classify(e)
            # A create of a record that exists (a lost answer), an update of one that does not, one bad row:
            # the PDS refuses the whole batch (often as a 500). Row by row tells which, and puts are upserts.
            self.stats["fallbacks"] += 1
            log.info("applyWrites refused; sending row by row", extra={"fields": {
                "did": rows[0].did, "rows": len(rows), "error": _describe(e)}})
            return False
        results = answer.get("results")
        for i, row in enumerate(rows):
            cid = None
            if isinstance(results, list) and i < len(results) and isinstance(results[i], dict):
                cid = results[i].get("cid")
            outcome.done.append((row, cid if row.op == "put" else None))
        return True

    async def _send_one(self, session: PDSSession, row: _Row, outcome: _Outcome) -> None:
        try:
            if row.op == "delete":
                await session.delete_record(row.collection, row.rkey)
                outcome.done.append((row, None))
                return
            assert row.record is not None
            try:
                answer = await session.put_record(row.collection, row.rkey, row.record)
            except errors.NotFound as e:
                if getattr(e, "xrpc_error", None) != "BlobNotFound" or not row.blobs:
                    raise
                # The PDS dropped a blob plyrd thought it had (unreferenced too long): upload again, once.
                await self._forget_blobs(row)
                await self._upload_blobs(session, row)
                answer = await session.put_record(row.collection, row.rkey, row.record)
            outcome.done.append((row, answer.get("cid") if isinstance(answer.get("cid"), str) else None))
        except errors.PlyrdError as e:
            self._classify(e)
            outcome.failed.append((row, _describe(e)))

    async def _known_records(self, rows: list[_Row]) -> set[tuple[str, str]]:
        found = await self.db.fetchall(
            f"SELECT collection, rkey FROM pds_records WHERE did = ? AND (collection, rkey) IN "
            f"(VALUES {','.join('(?, ?)' for _ in rows)})",
            [rows[0].did, *(v for r in rows for v in (r.collection, r.rkey))],
        )
        return {(r["collection"], r["rkey"]) for r in found}

    # ---- blobs

    async def _ensure_blobs(self, session: PDSSession, rows: list[_Row], outcome: _Outcome) -> list[_Row]:
        """Upload what the rows' records need; rows whose blob cannot be uploaded for good fail here."""
        ready: list[_Row] = []
        for row in rows:
            if row.op != "put" or not row.blobs:
                ready.append(row)
                continue
            try:
                await self._upload_blobs(session, row)
            except (FileNotFoundError, errors.PlyrdError) as e:
                if isinstance(e, errors.PlyrdError):
                    self._classify(e)
                detail = _describe(e) if isinstance(e, errors.PlyrdError) else f"local blob file missing: {e}"
                outcome.failed.append((row, detail))
                continue
            ready.append(row)
        return ready

    async def _upload_blobs(self, session: PDSSession, row: _Row) -> None:
        for sha, mime, size in row.blobs:
            cid = blob_cid(sha)
            fresh = await self.db.fetchone(
                f"SELECT 1 FROM pds_blobs WHERE did = ? AND sha256 = ? AND uploaded_at > {_NOW_SQL} - ? "
                "UNION ALL SELECT 1 FROM pds_records, json_each(pds_records.blob_cids) AS b "
                "WHERE pds_records.did = ? AND b.value = ? LIMIT 1",
                (row.did, sha, BLOB_FRESH, row.did, cid),
            )
            if fresh is not None:
                continue
            path = self.blob_path(sha)
            if not await asyncio.to_thread(path.is_file):
                raise FileNotFoundError(str(path))
            answer = await session.upload_blob(_read_chunks(path), mime)
            got = answer.get("ref", {}).get("$link") if isinstance(answer.get("ref"), dict) else None
            if got != cid or answer.get("size") != size:
                raise errors.Unprocessable(
                    f"the PDS stored blob {sha} as {got} ({answer.get('size')} bytes); expected {cid} ({size} bytes)"
                )
            self.stats["blobs_uploaded"] += 1
            await self.db.execute(
                f"INSERT INTO pds_blobs(did, sha256, cid, size) VALUES (?, ?, ?, ?) ON CONFLICT(did, sha256) "
                f"DO UPDATE SET uploaded_at = {_NOW_SQL}",
                (row.did, sha, cid, size),
            )

    async def _forget_blobs(self, row: _Row) -> None:
        async with self.db.write() as conn:
            await conn.executemany(
                "DELETE FROM pds_blobs WHERE did = ? AND sha256 = ?", [(row.did, sha) for sha, _, _ in row.blobs]
            )
            # pds_records may still claim a record keeps it alive; that record is being replaced anyway.
            await conn.execute(
                "UPDATE pds_records SET blob_cids = '[]' WHERE did = ? AND collection = ? AND rkey = ?",
                (row.did, row.collection, row.rkey),
            )

    # ---- bookkeeping

    async def _record_outcome(self, outcome: _Outcome) -> None:
        """Write down what a batch came to, in one transaction: sent rows leave the outbox (and the ledger notes what
        the PDS holds), failed rows keep their error, rows to retry wait again (or give way to a newer write of the
        same record)."""
        if not (outcome.done or outcome.failed or outcome.retry):
            return
        for row, pds_cid in outcome.done:
            if row.op != "delete" and pds_cid is not None and pds_cid != row.cid:
                log.warning("the PDS answered a different CID than computed", extra={"fields": {
                    "uri": row.uri, "local": row.cid, "pds": pds_cid}})

        def write(conn: sqlite3.Connection) -> None:  # one hop: the write lock is held for these statements only
            for row, pds_cid in outcome.done:
                conn.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
                if row.op == "delete":
                    conn.execute(_FORGET, (row.did, row.collection, row.rkey))
                    continue
                assert row.record is not None
                conn.execute(_REMEMBER, _remembered(row.did, row.collection, row.rkey, row.uri, pds_cid or row.cid,
                                                    row.record))
            for row, error in outcome.failed:
                conn.execute(
                    f"UPDATE outbox SET state = '{FAILED}', last_error = ?, updated_at = {_NOW_SQL} WHERE seq = ?",
                    (error, row.seq),
                )
            for row in outcome.retry:
                # A newer write of the same record, queued while this one was out, supersedes it (the last write
                # decides what the PDS holds); it inherits the attempts, since this one may have reached the PDS.
                cur = conn.execute(
                    f"UPDATE outbox SET attempts = max(attempts, ?) WHERE did = ? AND collection = ? AND rkey = ? "
                    f"AND state = '{PENDING}' AND seq > ?",
                    (row.attempts, row.did, row.collection, row.rkey, row.seq),
                )
                if cur.rowcount:
                    conn.execute("DELETE FROM outbox WHERE seq = ?", (row.seq,))
                    continue
                conn.execute(
                    f"UPDATE outbox SET state = '{PENDING}', last_error = ?, "
                    f"next_attempt_at = ?, updated_at = {_NOW_SQL} WHERE seq = ?",
                    (outcome.retry_error, outcome.retry_at, row.seq),
                )

        await self.db.write_fn(write)
        self._claimed.difference_update(r.seq for r, _ in outcome.done)
        self._claimed.difference_update(r.seq for r, _ in outcome.failed)
        self._claimed.difference_update(r.seq for r in outcome.retry)
        self.stats["written"] += len(outcome.done)
        self.stats["failed"] += len(outcome.failed)
        for row, error in outcome.failed:
            log.error("PDS write failed for good", extra={"fields": {"uri": row.uri, "op": row.op, "error": error}})


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file in chunks, read in a thread: an upload streams without holding the file in memory."""
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(f.close)
