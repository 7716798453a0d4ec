"""Waveforms and loudness for library tracks, computed in the background after a scan at the lowest priority.

A scan makes tracks browsable and playable at once; their seek-bar peaks and loudness (the same
`plyrd.media.analysis.analyse` pass and the same columns as an upload's job) follow one track at a time. Everything
else comes first: the decode runs in one thread of its own at the lowest CPU priority (nice 19, per thread on
Linux), takes one of the node's media thread slots like any upload step, and waits while upload jobs are queued or
running, or while a scan is. A file that cannot be decoded is skipped until the next scan wakes the worker again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..db import Database
from ..errors import PlyrdError
from ..threads import ThreadSlots
from ..workers import sleep_or_stop

log = logging.getLogger("plyrd.library.analysis")

BUSY_PAUSE = 2.0  # seconds to wait before looking again while uploads or a scan are busy
BETWEEN_TRACKS = 0.05  # a breath between tracks, so a queue of short files never hogs the event loop
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


def _lowest_priority() -> None:
    """Thread initializer: this thread only (Linux nice values are per thread) runs at nice 19."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):  # not Linux, or not allowed: the slots and the waiting still apply
        pass


class LibraryAnalysis:
    """The worker: `run(stop)` for plyrd.workers, `wake()` after a scan."""

    def __init__(self, db: Database, path_for: Callable[[str], Path], slots: ThreadSlots,
                 scanning: Callable[[], bool]) -> None:
        self.db = db
        self.path_for = path_for  # the blob store's path: for a library track, the link to the file in the folder
        self.slots = slots
        self.scanning = scanning
        self._wake = asyncio.Event()
        self.analysed = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    async def status(self) -> dict[str, int]:
        row = await self.db.fetchone(
            "SELECT count(*) FROM tracks WHERE source = 'library' AND peaks IS NULL AND original_sha IS NOT NULL")
        return {"pending": int(row[0]) if row else 0, "analysed": self.analysed, "failed": self.failed}

    async def _uploads_busy(self) -> bool:
        row = await self.db.fetchone(
            f"SELECT 1 FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_after <= {_NOW_SQL}) LIMIT 1")
        return row is not None

    async def _next(self, after: int) -> tuple[int, str] | None:
        row = await self.db.fetchone(
            "SELECT id, original_sha FROM tracks WHERE source = 'library' AND peaks IS NULL AND id > ? "
            "AND original_sha IS NOT NULL ORDER BY id LIMIT 1", (after,))
        return None if row is None else (int(row["id"]), str(row["original_sha"]))

    async def run(self, stop: asyncio.Event) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plyrd-library-analysis",
                                      initializer=_lowest_priority)
        try:
            while not stop.is_set():
                self._wake.clear()
                await self._pass(stop, executor)
                if stop.is_set():
                    return
                # Idle until a scan wakes us; an occasional look too, for tracks a scan in another process added.
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(waiters, timeout=600, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _pass(self, stop: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        """Analyse every library track without peaks, in id order; failures are passed over until the next pass."""
        after = 0
        started, done = time.monotonic(), 0
        while not stop.is_set():
            if self.scanning() or await self._uploads_busy():
                if await sleep_or_stop(stop, BUSY_PAUSE):
                    return
                continue
            nxt = await self._next(after)
            if nxt is None:
                break
            track_id, sha = nxt
            after = track_id
            await self._analyse(track_id, sha, executor)
            done += 1
            if await sleep_or_stop(stop, BETWEEN_TRACKS):
                return
        if done:
            log.info("library analysis pass done", extra={"fields": {
                "tracks": done, "failed": self.failed, "seconds": round(time.monotonic() - started, 1)}})

    async def _analyse(self, track_id: int, sha: str, executor: ThreadPoolExecutor) -> None:
        from ..media.analysis import analyse

        try:
            path = self.path_for(sha)
            # One of the node's media slots, like any upload step; the decode itself in our nice-19 thread.
            result = await self.slots.run(lambda: executor.submit(analyse, path).result())
        except (PlyrdError, OSError, ValueError) as e:  # unreadable, vanished or undecodable: not this pass
            self.failed += 1
            detail = e.detail if isinstance(e, PlyrdError) else f"{type(e).__name__}: {e}"
            log.info("library track not analysed", extra={"fields": {"track": track_id, "error": detail}})
            return
        except Exception as e:  # PyAV raises its own errors for broken files
            self.failed += 1
            log.info("library track not analysed", extra={"fields": {"track": track_id, "error": repr(e)}})
            return
        # The same columns an upload's job fills (plyrd.catalog.uploads); only while still unanalysed and pointing at
        # the same file, so a rescan that replaced the file in the meantime is not given the old file's waveform.
        columns = result.columns()
        await self.db.execute(
            f"UPDATE tracks SET {', '.join(f'{c} = ?' for c in columns)},"
            f" updated_at = {_NOW_SQL} WHERE id = ? AND peaks IS NULL AND original_sha = ?",
            (*columns.values(), track_id, sha),
        )
        self.analysed += 1
