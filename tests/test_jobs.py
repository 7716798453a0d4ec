"""The durable job queue on a real SQLite database: running, retries, permanent failures, crash recovery, progress."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from plyrd import errors
from plyrd.db import Database
from plyrd.jobs import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Job,
    JobFailed,
    JobRunner,
    Reporter,
    enqueue,
    get_job,
    wait_for_job,
    watch_job,
)
from plyrd.workers import Workers


class Running:
    """A runner under plyrd.workers.Workers, stopped at the end of the block."""

    def __init__(self, runner: JobRunner, grace: float = 5.0) -> None:
        self.runner = runner
        self.workers = Workers(restart_delay=0.1)
        self.grace = grace

    async def __aenter__(self) -> JobRunner:
        self.workers.start("jobs", self.runner.run)
        return self.runner

    async def __aexit__(self, *exc: object) -> None:
        await self.workers.stop(grace=self.grace)


async def test_enqueue_run_done(db: Database) -> None:
    seen: list[dict] = []

    async def handler(job: Job, report: Reporter) -> None:
        seen.append(job.payload)
        await report(0.5, "halfway")

    async with Running(JobRunner(db, {"echo": handler})):
        job_id = await enqueue(db, "echo", {"track": 7, "name": "ünïcode"})
        job = await asyncio.wait_for(wait_for_job(db, job_id), 5)
    assert seen == [{"track": 7, "name": "ünïcode"}]
    assert job.state == DONE and job.progress == 1.0 and job.attempts == 1 and job.error is None
    stored = await db.fetchone("SELECT payload, phase FROM jobs WHERE id = ?", (job_id,))
    assert json.loads(stored["payload"]) == {"track": 7, "name": "ünïcode"} and stored["phase"] == "halfway"


async def test_enqueue_inside_a_transaction_runs_only_after_commit(db: Database) -> None:
    ran = asyncio.Event()

    async def handler(job: Job, report: Reporter) -> None:
        ran.set()

    async with Running(JobRunner(db, {"k": handler}, poll_interval=30)):
        await asyncio.sleep(0.05)
        async with db.write() as conn:
            job_id = await enqueue(conn, "k", {})
            await asyncio.sleep(0.1)  # the woken runner waits for the write lock, i.e. for this commit
            assert not ran.is_set()
        await asyncio.wait_for(ran.wait(), 2)  # woken, not waiting for the 30 s poll
        assert (await asyncio.wait_for(wait_for_job(db, job_id), 2)).state == DONE
        # a rolled-back enqueue leaves no job
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await enqueue(conn, "k", {})
                raise RuntimeError("abandon")
    assert (await db.fetchone("SELECT count(*) FROM jobs"))[0] == 1


async def test_retries_with_backoff_then_done(db: Database) -> None:
    calls = 0

    async def flaky(job: Job, report: Reporter) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError(f"disk hiccup {calls}")

    runner = JobRunner(db, {"flaky": flaky}, backoff_base=0.05)
    async with Running(runner):
        job_id = await enqueue(db, "flaky", {}, max_attempts=3)
        states = [j async for j in watch_job(db, job_id)]
    job = states[-1]
    assert calls == 3 and job.state == DONE and job.attempts == 3 and job.error is None
    errors_seen = [s.error for s in states if s.state == QUEUED and s.error]
    assert "OSError: disk hiccup 1" in errors_seen


async def test_exhausted_attempts_end_failed_with_error(db: Database) -> None:
    async def broken(job: Job, report: Reporter) -> None:
        raise RuntimeError(f"always fails (attempt {job.attempts})")

    async with Running(JobRunner(db, {"broken": broken}, backoff_base=0.01)):
        job_id = await enqueue(db, "broken", {}, max_attempts=2)
        job = await asyncio.wait_for(wait_for_job(db, job_id), 5)
    assert job.state == FAILED and job.attempts == 2
    assert job.error == "RuntimeError: always fails (attempt 2)"
    assert (await get_job(db, job_id)) == job


async def test_permanent_errors_do_not_retry(db: Database) -> None:
    async def corrupt(job: Job, report: Reporter) -> None:
        if job.payload["how"] == "jobfailed":
            raise JobFailed("not audio")
        raise errors.Unprocessable("the file is not audio plyrd can read")

    async with Running(JobRunner(db, {"c": corrupt}, backoff_base=0.01)):
        a = await enqueue(db, "c", {"how": "jobfailed"}, max_attempts=5)
        b = await enqueue(db, "c", {"how": "domain"}, max_attempts=5)
        ja = await asyncio.wait_for(wait_for_job(db, a), 5)
        jb = await asyncio.wait_for(wait_for_job(db, b), 5)
    assert (ja.state, ja.attempts, ja.error) == (FAILED, 1, "JobFailed: not audio")
    assert (jb.state, jb.attempts, jb.error) == (FAILED, 1, "the file is not audio plyrd can read")


async def test_crash_recovery_requeues_and_completes(tmp_path: Path) -> None:
    """A node dies mid-job (the row stays `running`); the next node's runner re-queues it and finishes it."""
    path = tmp_path / "crash.db"
    db1 = Database(path)
    await db1.open()
    job_id = await enqueue(db1, "transcode", {"track": 1}, max_attempts=3)
    stuck = await enqueue(db1, "transcode", {"track": 2}, max_attempts=1)
    # The crashed process had claimed both: state running, one attempt used. Nothing else ran.
    await db1.execute("UPDATE jobs SET state = 'running', attempts = 1, progress = 0.4, phase = 'encoding'")
    await db1.close()

    db2 = Database(path)
    await db2.open()
    try:
        done: list[int] = []

        async def transcode(job: Job, report: Reporter) -> None:
            done.append(job.payload["track"])

        async with Running(JobRunner(db2, {"transcode": transcode})):
            job = await asyncio.wait_for(wait_for_job(db2, job_id), 5)
            failed = await asyncio.wait_for(wait_for_job(db2, stuck), 5)
        assert job.state == DONE and job.attempts == 2 and done == [1]
        assert failed.state == FAILED and failed.attempts == 1
        assert failed.error == "interrupted: the node stopped during attempt 1 of 1"
        assert (await db2.fetchone("SELECT count(*) FROM jobs WHERE state = 'running'"))[0] == 0
    finally:
        await db2.close()


async def test_graceful_stop_gives_the_attempt_back(db: Database) -> None:
    started = asyncio.Event()

    async def slow(job: Job, report: Reporter) -> None:
        started.set()
        await asyncio.sleep(60)

    async with Running(JobRunner(db, {"slow": slow}), grace=0.2):
        job_id = await enqueue(db, "slow", {})
        await asyncio.wait_for(started.wait(), 5)
    job = await get_job(db, job_id)
    assert job is not None and job.state == QUEUED and job.attempts == 0 and job.phase == "interrupted"


async def test_concurrency_and_only_own_kinds(db: Database) -> None:
    active = 0
    peak = 0
    gate = asyncio.Event()

    async def work(job: Job, report: Reporter) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1

    async with Running(JobRunner(db, {"w": work}, concurrency=3)):
        ids = [await enqueue(db, "w", {"i": i}) for i in range(6)]
        other = await enqueue(db, "not-mine", {})
        await asyncio.sleep(0.3)
        assert peak == 3
        gate.set()
        for i in ids:
            assert (await asyncio.wait_for(wait_for_job(db, i), 5)).state == DONE
    assert peak == 3
    assert (await get_job(db, other)).state == QUEUED  # type: ignore[union-attr]


async def test_progress_is_observed_and_persisted_throttled(db: Database) -> None:
    proceed = asyncio.Event()

    async def work(job: Job, report: Reporter) -> None:
        await report(0.1, "decoding")
        for i in range(2, 10):
            await report(i / 10)  # many quick reports: watchers see them, the row is written at most each second
        await proceed.wait()
        await report(0.95, "encoding")

    async with Running(JobRunner(db, {"p": work}, report_interval=10)):
        job_id = await enqueue(db, "p", {})
        seen: list[Job] = []
        async for job in watch_job(db, job_id):
            seen.append(job)
            if job.progress >= 0.9 and job.phase == "decoding":
                row = await db.fetchone("SELECT progress, phase FROM jobs WHERE id = ?", (job_id,))
                assert (row["progress"], row["phase"]) == (0.1, "decoding")  # throttled
                proceed.set()
    phases = [(j.state, j.phase) for j in seen]
    assert (RUNNING, "decoding") in phases and (RUNNING, "encoding") in phases
    assert seen[-1].state == DONE
    assert [j.progress for j in seen if j.state == RUNNING] == sorted(j.progress for j in seen if j.state == RUNNING)


async def test_report_from_a_thread(db: Database) -> None:
    async def work(job: Job, report: Reporter) -> None:
        def blocking() -> None:
            report.from_thread(0.5, "in a thread")
        await asyncio.to_thread(blocking)
        await asyncio.sleep(0.1)

    async with Running(JobRunner(db, {"t": work}, report_interval=0)):
        job_id = await enqueue(db, "t", {})
        phases = [j.phase async for j in watch_job(db, job_id)]
    assert "in a thread" in phases


async def test_watch_unknown_job(db: Database) -> None:
    with pytest.raises(errors.NotFound):
        async for _ in watch_job(db, 12345):
            pass


async def test_delayed_job_waits_for_run_after(db: Database) -> None:
    async def work(job: Job, report: Reporter) -> None:
        pass

    async with Running(JobRunner(db, {"d": work}, poll_interval=30)):
        loop = asyncio.get_running_loop()
        started = loop.time()
        job_id = await enqueue(db, "d", {}, delay=0.3)
        job = await asyncio.wait_for(wait_for_job(db, job_id), 5)
        elapsed = loop.time() - started
    assert job.state == DONE and 0.25 < elapsed < 3
