"""When the music folder is scanned while the node runs: at start-up, every `library.scan_interval_minutes`, on an
admin's request, and after changes the watcher saw; then the background analysis of what the scans added.

`LibraryTasks.start(workers)` starts the node workers: `library-schedule` (start-up scan a moment after the node
starts serving, so it never delays the first request; then the interval; then requests), `library-watch` when
`library.watch` is true (plyrd.library.watch), and `library-analysis` (plyrd.library.analysis, woken after every
scan). Scans themselves are the library service's (`Library.scan`, one at a time: a second caller joins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..workers import Workers, sleep_or_stop
from .analysis import LibraryAnalysis
from .watch import FolderWatcher

log = logging.getLogger("plyrd.library.schedule")

STARTUP_DELAY = 1.0  # seconds after start-up before the first scan: the node answers requests first


class Scanner(Protocol):
    """What the tasks need of plyrd.library.service.Library."""

    async def scan(self, *, trigger: str, only: Sequence[Path] | None = None,
                   progress: Callable[[Any], None] | None = None) -> Any: ...

    async def folders(self) -> Sequence[Any]: ...

    @property
    def scanning(self) -> bool: ...

    on_scanned: list[Callable[[Any], None]]

    async def status(self) -> Mapping[str, Any]: ...


def folder_path(folder: Any) -> Path:
    """A folder as Library.folders() lists it (a path, a mapping or an object with `path`) as a Path."""
    if isinstance(folder, Mapping):
        return Path(folder["path"])
    return Path(getattr(folder, "path", folder))


class LibraryTasks:
    def __init__(self, library: Scanner, analysis: LibraryAnalysis, *, interval_minutes: float, watch: bool,
                 startup_delay: float = STARTUP_DELAY) -> None:
        self.library = library
        self.analysis = analysis
        self.interval = interval_minutes * 60.0  # 0: no scheduled scans
        self.watch = watch
        self.startup_delay = startup_delay
        self.watcher = FolderWatcher(self.folder_paths, self._scan_changed)
        self._requested: str | None = None
        self._request = asyncio.Event()
        self.last_error: str | None = None
        library.on_scanned.append(lambda _report: analysis.wake())  # every scan, whoever asked for it

    def start(self, workers: Workers) -> None:
        workers.start("library-schedule", self.schedule)
        workers.start("library-analysis", self.analysis.run)
        if self.watch:
            workers.start("library-watch", self.watcher.run)

    async def status(self) -> dict[str, Any]:
        """The library's status (folders, running scan, last scan, counts) with the watch and the analysis."""
        info: dict[str, Any] = dict(await self.library.status())
        info["watch"] = {"enabled": self.watch, "watching": [str(p) for p in self.watcher.watching],
                         "scans": self.watcher.scans}
        info["schedule"] = {"interval_minutes": self.interval / 60.0, "last_error": self.last_error}
        info["analysis"] = await self.analysis.status()
        return info

    async def folder_paths(self) -> list[Path]:
        return [folder_path(f) for f in await self.library.folders()]

    def request_scan(self, trigger: str = "admin") -> None:
        """Start a whole scan soon, in the background (the schedule worker runs it; a running scan is joined)."""
        self._requested = trigger
        self._request.set()

    async def _run_scan(self, trigger: str, only: list[Path] | None = None) -> None:
        try:
            await self.library.scan(trigger=trigger, only=only)
            self.last_error = None
        except Exception as e:  # recorded by the service as a failed scan; the schedule goes on
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("library scan failed", extra={"fields": {"trigger": trigger, "error": self.last_error}})

    async def _scan_changed(self, paths: list[Path]) -> None:
        await self._run_scan("watch", paths)

    async def schedule(self, stop: asyncio.Event) -> None:
        if await sleep_or_stop(stop, self.startup_delay):
            return
        trigger = "startup"
        while not stop.is_set():
            self._request.clear()
            if await self.folder_paths():
                await self._run_scan(trigger)
            else:
                self.analysis.wake()  # nothing to scan; tracks of an earlier run may still want analysis
            trigger = await self._next(stop)
            if trigger is None:
                return

    async def _next(self, stop: asyncio.Event) -> str | None:
        """Wait for the interval, a request or the stop; the next scan's trigger, or None to stop."""
        waiters = [asyncio.ensure_future(self._request.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.interval or None, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if stop.is_set():
            return None
        if self._request.is_set():
            trigger, self._requested = self._requested or "admin", None
            return trigger
        return "schedule"
