"""Background workers: long-running coroutines started with the app and stopped cleanly with it.

Each worker gets a `stop` event to finish its current unit of work and return; one that does not return within
the timeout is cancelled. A worker that crashes is logged and restarted after a pause, so one bad job cannot
silently stop a queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("plyrd.workers")

WorkerFn = Callable[[asyncio.Event], Awaitable[None]]


class Workers:
    def __init__(self, *, restart_delay: float = 5.0) -> None:
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restart_delay = restart_delay

    def start(self, name: str, fn: WorkerFn) -> None:
        if name in self._tasks:
            raise ValueError(f"worker {name} already running")
        self._tasks[name] = asyncio.create_task(self._supervise(name, fn), name=f"plyrd-worker-{name}")

    async def _supervise(self, name: str, fn: WorkerFn) -> None:
        while not self._stop.is_set():
            try:
                await fn(self._stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker crashed; restarting", extra={"fields": {"worker": name}})
                try:
                    await asyncio.wait_for(self._stop.wait(), self.restart_delay)
                except TimeoutError:
                    pass

    @property
    def names(self) -> list[str]:
        return [n for n, t in self._tasks.items() if not t.done()]

    async def stop(self, grace: float = 5.0) -> None:
        """Ask every worker to stop, wait up to `grace` seconds, then cancel the stragglers."""
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks.values(), timeout=grace)
        for task in pending:
            log.warning("worker did not stop in time; cancelling", extra={"fields": {"worker": task.get_name()}})
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        self._tasks.clear()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when the stop event fired (the caller should return)."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
