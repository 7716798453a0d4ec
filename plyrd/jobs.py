"""A durable job queue on the `jobs` table, and the worker that runs it.

    job_id = await enqueue(conn, "transcode", {"track": 7})      # inside the caller's db.write() transaction
    runner = JobRunner(db, {"transcode": transcode}, concurrency=2)
    node.workers.start("jobs", runner.run)
    async for job in watch_job(db, job_id): ...                  # progress for server-sent events

Life of a job: queued -> running -> done; a failed attempt goes back to queued with a later run_after (exponential
backoff) until max_attempts, then failed with its error kept. The state lives in SQLite, so a crash loses nothing:
at start-up a runner re-queues the jobs of its kinds left `running` (the interrupted attempt counts), or fails them
when they have no attempts left, so no job stays stuck.

Handlers are `async def handler(job: Job, report: Reporter) -> None`. They should be idempotent (an attempt may be
interrupted half-way and run again), run blocking work in threads, and may raise `JobFailed` (or a domain error
that retrying cannot fix, see `is_permanent`) to fail at once without retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from . import errors
from .db import Database

log = logging.getLogger("plyrd.jobs")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
TERMINAL = frozenset({DONE, FAILED})
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


class JobFailed(Exception):
    """Raised by a handler to fail its job now, without further attempts (the input can never work)."""


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: JobFailed, or a domain error other than the transient kinds."""
    if isinstance(exc, JobFailed):
        return True
    transient = (errors.UpstreamError, errors.Unavailable, errors.RateLimited)
    return isinstance(exc, errors.PlyrdError) and not isinstance(exc, transient)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    progress: float
    phase: str | None
    error: str | None
    run_after: float
    created_at: float
    updated_at: float

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"], kind=row["kind"], payload=json.loads(row["payload"]), state=row["state"],
            attempts=row["attempts"], max_attempts=row["max_attempts"], progress=row["progress"],
            phase=row["phase"], error=row["error"], run_after=row["run_after"], created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def with_progress(self, progress: float, phase: str | None) -> Job:
        return dataclasses.replace(self, progress=progress, phase=phase, updated_at=time.time())


Handler = Callable[[Job, "Reporter"], Awaitable[None]]


# --- in-process notification -------------------------------------------------------------------------------------


class JobHub:
    """Per-database fan-out of job snapshots to watchers, and wake-ups for runners. Never persisted."""

    def __init__(self) -> None:
        self._watchers: dict[int, set[asyncio.Queue[Job]]] = {}
        self._runners: weakref.WeakSet[JobRunner] = weakref.WeakSet()

    def publish(self, job: Job) -> None:
        for queue in self._watchers.get(job.id, ()):
            if queue.full():  # a slow watcher only needs the latest state; drop the one it has not read
                queue.get_nowait()
            queue.put_nowait(job)

    def subscribe(self, job_id: int) -> asyncio.Queue[Job]:
        queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=1)
        self._watchers.setdefault(job_id, set()).add(queue)
        return queue

    def unsubscribe(self, job_id: int, queue: asyncio.Queue[Job]) -> None:
        queues = self._watchers.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._watchers[job_id]

    def wake_runners(self, kind: str) -> None:
        for runner in list(self._runners):
            if kind in runner.handlers:
                runner.wake()


_hubs: weakref.WeakKeyDictionary[Database, JobHub] = weakref.WeakKeyDictionary()


def hub_for(db: Database) -> JobHub:
    hub = _hubs.get(db)
    if hub is None:
        hub = _hubs[db] = JobHub()
    return hub


def _wake_all(kind: str) -> None:
    """A bare connection does not say which database it belongs to; waking every runner of the kind is harmless
    (a spurious wake-up costs one empty claim)."""
    for hub in list(_hubs.values()):
        hub.wake_runners(kind)


# --- queue operations --------------------------------------------------------------------------------------------


async def enqueue(conn_or_db: aiosqlite.Connection | Database, kind: str, payload: Mapping[str, Any] | None = None,
                  *, max_attempts: int = 3, delay: float = 0.0) -> int:
    """Add a job; returns its id. Given a connection it joins the caller's transaction (the job exists only if
    that commits); given the Database it commits on its own. Runners of this kind are woken either way: their
    claim takes the write lock, so it runs after the caller's transaction has finished."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    sql = (f"INSERT INTO jobs(kind, payload, max_attempts, run_after) VALUES (?, ?, ?, {_NOW_SQL} + ?) "
           "RETURNING id")
    params = (kind, json.dumps(dict(payload or {}), separators=(",", ":")), max_attempts, delay)
    if isinstance(conn_or_db, Database):
        async with conn_or_db.write() as conn:
            job_id = await _insert(conn, sql, params)
        hub_for(conn_or_db).wake_runners(kind)
    else:
        job_id = await _insert(conn_or_db, sql, params)
        _wake_all(kind)
    return job_id


async def requeue_failed(conn: aiosqlite.Connection, job_id: int) -> None:
    """Inside the caller's transaction: a failed job gets a fresh set of attempts, due now (an admin's retry).
    Runners of its kind are woken once the caller has committed (`hub_for(db).wake_runners(kind)`)."""
    cur = await conn.execute(
        f"UPDATE jobs SET state = 'queued', attempts = 0, progress = 0, phase = NULL, run_after = {_NOW_SQL},"
        f" updated_at = {_NOW_SQL} WHERE id = ? AND state = 'failed'", (job_id,))
    if cur.rowcount != 1:
        raise ValueError(f"job {job_id} is not failed")


async def _insert(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def get_job(db: Database, job_id: int) -> Job | None:
    row = await db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
    return Job.from_row(row) if row is not None else None


async def watch_job(db: Database, job_id: int, *, poll: float = 5.0) -> AsyncIterator[Job]:
    """Yield the job's state now and at each change (coalesced: a slow reader sees the latest), until it ends.

    Changes made in this process arrive at once; the database is re-read every `poll` seconds as a fallback
    (e.g. for a job finished by another process). Raises NotFound for an unknown id.
    """
    hub = hub_for(db)
    queue = hub.subscribe(job_id)  # before reading, so no change falls between the read and the subscription
    try:
        job = await get_job(db, job_id)
        if job is None:
            raise errors.NotFound(f"no job {job_id}")
        yield job
        while not job.finished:
            try:
                job = await asyncio.wait_for(queue.get(), poll)
            except TimeoutError:
                fresh = await get_job(db, job_id)
                if fresh is None:
                    raise errors.NotFound(f"no job {job_id}") from None
                if (fresh.state, fresh.progress, fresh.phase, fresh.attempts) == (
                        job.state, job.progress, job.phase, job.attempts):
                    continue
                job = fresh
            yield job
    finally:
        hub.unsubscribe(job_id, queue)


async def wait_for_job(db: Database, job_id: int) -> Job:
    """The job once it is done or failed (wrap in asyncio.timeout() to bound the wait)."""
    last: Job | None = None
    async for state in watch_job(db, job_id):
        last = state
    assert last is not None
    return last


# --- progress ----------------------------------------------------------------------------------------------------


class Reporter:
    """`await report(progress, phase)` from a handler: watchers see every call; the row is written at most every
    `report_interval` seconds, and always when the phase changes, so a chatty handler does not flood the writer.
    Persisting takes the write lock: do not report from inside your own `db.write()` block."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self._runner = runner
        self.job = job
        self._persisted_at = 0.0
        self._persisted_phase = job.phase
        self._loop = asyncio.get_running_loop()

    async def __call__(self, progress: float, phase: str | None = None) -> None:
        progress = min(1.0, max(0.0, float(progress)))
        phase = self.job.phase if phase is None else phase
        self.job = self.job.with_progress(progress, phase)
        hub_for(self._runner.db).publish(self.job)
        now = time.monotonic()
        if phase != self._persisted_phase or now - self._persisted_at >= self._runner.report_interval:
            self._persisted_at, self._persisted_phase = now, phase
            await self._runner.db.execute(
                f"UPDATE jobs SET progress = ?, phase = ?, updated_at = {_NOW_SQL} WHERE id = ? AND state = ?",
                (progress, phase, self.job.id, RUNNING))

    def from_thread(self, progress: float, phase: str | None = None) -> None:
        """Report from a worker thread (e.g. a transcode in asyncio.to_thread); does not wait for the write."""
        asyncio.run_coroutine_threadsafe(self(progress, phase), self._loop)


# --- the runner --------------------------------------------------------------------------------------------------


class JobRunner:
    """Runs queued jobs of the kinds in `handlers`, up to `concurrency` at once. One runner per kind per node."""

    def __init__(self, db: Database, handlers: Mapping[str, Handler], concurrency: int = 1, *,
                 poll_interval: float = 5.0, backoff_base: float = 5.0, backoff_max: float = 3600.0,
                 report_interval: float = 1.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.db = db
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.report_interval = report_interval
        self._wake = asyncio.Event()
        hub_for(db)._runners.add(self)

    def wake(self) -> None:
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before retry number `attempts`: doubling from backoff_base, capped, with +-20% jitter."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1))
        return delay * random.uniform(0.8, 1.2)

    def _kinds_sql(self) -> tuple[str, list[str]]:
        kinds = sorted(self.handlers)
        return ",".join("?" * len(kinds)), kinds

    async def recover(self) -> int:
        """Re-queue this runner's jobs left `running` by a crash, or fail those without attempts left."""
        marks, kinds = self._kinds_sql()
        async with self.db.write() as conn, conn.execute(
            f"""UPDATE jobs SET
                    state = CASE WHEN attempts >= max_attempts THEN '{FAILED}' ELSE '{QUEUED}' END,
                    error = 'interrupted: the node stopped during attempt ' || attempts || ' of ' || max_attempts,
                    run_after = {_NOW_SQL}, updated_at = {_NOW_SQL}
                WHERE state = '{RUNNING}' AND kind IN ({marks}) RETURNING *""",
            kinds,
        ) as cur:
            rows = await cur.fetchall()
        for row in rows:
            job = Job.from_row(row)
            hub_for(self.db).publish(job)
            log.warning("interrupted job recovered", extra={"fields": {
                "job": job.id, "kind": job.kind, "state": job.state, "attempts": job.attempts}})
        return len(rows)

    async def _claim(self) -> Job | None:
        marks, kinds = self._kinds_sql()
        async with self.db.write() as conn, conn.execute(
            f"""UPDATE jobs SET state = '{RUNNING}', attempts = attempts + 1, progress = 0, phase = NULL,
                    updated_at = {_NOW_SQL}
                WHERE id = (SELECT id FROM jobs WHERE state = '{QUEUED}' AND run_after <= {_NOW_SQL}
                            AND kind IN ({marks}) ORDER BY run_after, id LIMIT 1)
                RETURNING *""",
            kinds,
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        job = Job.from_row(row)
        hub_for(self.db).publish(job)
        return job

    async def _next_due(self) -> float | None:
        """Seconds until the earliest queued job of our kinds may run (None when there is none)."""
        marks, kinds = self._kinds_sql()
        row = await self.db.fetchone(
            f"SELECT min(run_after) - {_NOW_SQL} FROM jobs WHERE state = '{QUEUED}' AND kind IN ({marks})", kinds)
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    async def _finish(self, job: Job, sql: str, params: tuple[Any, ...]) -> None:
        async with self.db.write() as conn, conn.execute(sql + " RETURNING *", params) as cur:
            row = await cur.fetchone()
        if row is not None:
            hub_for(self.db).publish(Job.from_row(row))

    async def _run_one(self, job: Job) -> None:
        reporter = Reporter(self, job)
        started = time.monotonic()
        try:
            await self.handlers[job.kind](job, reporter)
        except asyncio.CancelledError:
            # Shutting down: give the attempt back (stopping is not the job's fault) and let the next start run it.
            # Shielded so the write survives the cancellation; if it cannot happen, recover() handles the row.
            await asyncio.shield(self._finish(
                job, f"UPDATE jobs SET state = '{QUEUED}', attempts = max(0, attempts - 1), "
                     f"phase = 'interrupted', updated_at = {_NOW_SQL} WHERE id = ? AND state = '{RUNNING}'",
                (job.id,)))
            raise
        except Exception as exc:
            detail = exc.detail if isinstance(exc, errors.PlyrdError) else f"{type(exc).__name__}: {exc}"
            retry = job.attempts < job.max_attempts and not is_permanent(exc)
            fields = {"job": job.id, "kind": job.kind, "attempt": job.attempts, "error": detail}
            if retry:
                delay = self.backoff(job.attempts)
                log.warning("job attempt failed; will retry", extra={"fields": {**fields, "retry_in": round(delay)}})
                await self._finish(
                    job, f"UPDATE jobs SET state = '{QUEUED}', error = ?, run_after = {_NOW_SQL} + ?, "
                         f"updated_at = {_NOW_SQL} WHERE id = ?", (detail, delay, job.id))
            else:
                log.error("job failed", exc_info=not is_permanent(exc), extra={"fields": fields})
                await self._finish(
                    job, f"UPDATE jobs SET state = '{FAILED}', error = ?, updated_at = {_NOW_SQL} WHERE id = ?",
                    (detail, job.id))
        else:
            await self._finish(
                job, f"UPDATE jobs SET state = '{DONE}', progress = 1, error = NULL, updated_at = {_NOW_SQL} "
                     "WHERE id = ?", (job.id,))
            log.info("job done", extra={"fields": {
                "job": job.id, "kind": job.kind, "seconds": round(time.monotonic() - started, 3)}})

    async def run(self, stop: asyncio.Event) -> None:
        """The worker loop for plyrd.workers.Workers: recover, then claim and run jobs until `stop` is set.

        After `stop`, running jobs are left to finish; Workers cancels them after its grace period, and a
        cancelled job goes back to the queue.
        """
        await self.recover()
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                self._wake.clear()
                while len(running) < self.concurrency:
                    job = await self._claim()
                    if job is None:
                        break
                    running.add(asyncio.create_task(self._run_one(job), name=f"plyrd-job-{job.id}"))
                timeout = self.poll_interval
                if len(running) < self.concurrency:
                    due = await self._next_due()
                    if due is not None:
                        timeout = min(timeout, due + 0.01)
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait([*waiters, *running], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                running = _reap(running)
            if running:
                await asyncio.wait(running)
                _reap(running)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)


def _reap(tasks: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """Drop finished job tasks; an exception escaping _run_one (a database error while recording) is logged."""
    alive: set[asyncio.Task[None]] = set()
    for task in tasks:
        if not task.done():
            alive.add(task)
        elif not task.cancelled() and task.exception() is not None:
            log.error("job bookkeeping failed", exc_info=task.exception())
    return alive
