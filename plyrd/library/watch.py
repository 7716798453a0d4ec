"""Watching the music folders while the node runs: a burst of changes becomes one scan of just the changed paths.

The watching itself is watchfiles (inotify through Rust's notify crate on Linux; it already groups events within
`debounce` ms). On top of it, `FolderWatcher` waits until the folder has been quiet for `quiet` seconds (a copy of
an album is hundreds of writes) but never longer than `max_delay` after the first change, then calls `scan(paths)`
with the changed paths, which the library scans with `only=`. Changes that arrive during that scan wait for the
next one.

Memory is bounded: at most `max_pending` paths wait; past that the waiting paths collapse into their folders (a
whole-folder rescan of unchanged files costs one stat each). A folder that vanishes (an unmounted disk) is not
scanned while it is gone, so its tracks stay; the watch is re-armed when it comes back (checked every `recheck`
seconds, by identity, so a folder deleted and made again is noticed too) and then that folder is scanned whole,
since what changed while it was away was not seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import watchfiles

from ..workers import sleep_or_stop

log = logging.getLogger("plyrd.library.watch")
logging.getLogger("watchfiles.main").setLevel(logging.WARNING)  # "N changes detected" at every event: ours say more

# Hidden files, editors' and downloaders' partial files: the finished file arrives under its own name (a rename),
# which is a change of its own.
_IGNORED = (*watchfiles.DefaultFilter.ignore_entity_patterns, r"^\.", r"\.part$", r"\.partial$", r"\.tmp$",
            r"\.crdownload$", r"\.!qB$")


class _Filter(watchfiles.DefaultFilter):
    def __init__(self) -> None:
        super().__init__(ignore_entity_patterns=_IGNORED)


FolderList = Callable[[], Awaitable[Sequence[Path]]]
ScanPaths = Callable[[list[Path]], Awaitable[object]]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


class FolderWatcher:
    def __init__(self, folders: FolderList, scan: ScanPaths, *, quiet: float = 1.0, max_delay: float = 10.0,
                 max_pending: int = 2000, recheck: float = 5.0, debounce_ms: int = 800, step_ms: int = 100) -> None:
        self.folders = folders
        self.scan = scan
        self.quiet = quiet
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.recheck = recheck
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self._pending: dict[Path, None] = {}  # insertion-ordered set of changed paths
        self._whole: set[Path] = set()  # folders to rescan whole (overflow, or back after vanishing)
        self._first = self._last = 0.0
        self._changed = asyncio.Event()
        self.watching: list[Path] = []  # what is watched now, for the status page and tests
        self.scans = 0

    # ---- collecting changes

    def _root_of(self, path: Path, roots: Iterable[Path]) -> Path | None:
        for root in roots:
            if path == root or path.is_relative_to(root):
                return root
        return None

    def note(self, paths: Iterable[Path], roots: Sequence[Path]) -> None:
        """Record changed paths (absolute, under `roots`); bounded by max_pending."""
        now = time.monotonic()
        added = False
        for path in paths:
            root = self._root_of(path, roots)
            if root is None or root in self._whole:
                continue
            if len(self._pending) >= self.max_pending:
                self._whole.update(r for p in self._pending if (r := self._root_of(p, roots)) is not None)
                self._pending.clear()
                log.info("many changes at once: rescanning whole folders", extra={"fields": {
                    "folders": len(self._whole)}})
                if root in self._whole:
                    added = True
                    continue
            self._pending[path] = None
            added = True
        if added:
            self._mark(now)

    def note_folder(self, root: Path) -> None:
        self._whole.add(root)
        self._mark(time.monotonic())

    def _mark(self, now: float) -> None:
        if not self._changed.is_set():
            self._first = now
            self._changed.set()
        self._last = now

    def _take(self, roots: Sequence[Path]) -> list[Path]:
        """The paths to scan now: folders that still exist (a vanished mount keeps its tracks), whole ones first."""
        whole, pending = self._whole, self._pending
        self._whole, self._pending = set(), {}
        self._changed.clear()
        alive = {r for r in roots if _identity(r) is not None}
        batch = sorted(r for r in whole if r in alive)
        kept: set[Path] = set(batch)
        for p in sorted(pending, key=lambda p: len(p.parts)):  # a directory before what is inside it
            if self._root_of(p, roots) in alive and not any(a in kept for a in p.parents) and p not in kept:
                kept.add(p)
                batch.append(p)
        return batch

    # ---- the worker

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch(stop), name="plyrd-library-watch")
        try:
            while not stop.is_set():
                waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(stop.wait()),
                           watcher]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters[:2]:
                        w.cancel()
                if stop.is_set():
                    return
                if watcher.done():  # the watch loop crashed (or ended early): plyrd.workers logs and restarts us
                    watcher.result()
                    raise RuntimeError("the library watch loop ended")
                if await self._settle(stop):
                    return
                batch = self._take(self.watching or [])
                if not batch:
                    continue
                self.scans += 1
                log.info("library changed: scanning", extra={"fields": {"paths": len(batch)}})
                try:
                    await self.scan(batch)
                except Exception:
                    log.exception("library scan after a change failed")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _settle(self, stop: asyncio.Event) -> bool:
        """Wait until the changes have been quiet for `quiet` s, or `max_delay` s have passed since the first."""
        while True:
            now = time.monotonic()
            wait = min(self._last + self.quiet, self._first + self.max_delay) - now
            if wait <= 0:
                return False
            if await sleep_or_stop(stop, wait):
                return True

    async def _watch(self, stop: asyncio.Event) -> None:
        """Watch the folders that exist; re-arm when one appears, vanishes or is replaced."""
        known: dict[Path, tuple[int, int]] | None = None
        while not stop.is_set():
            configured = [Path(p) for p in await self.folders()]
            now = {p: ident for p in configured if (ident := _identity(p)) is not None}
            if known is not None:
                for path, ident in now.items():
                    if known.get(path) != ident:  # (re)appeared while unwatched: what changed was not seen
                        log.info("library folder is back: rescanning it", extra={"fields": {"folder": str(path)}})
                        self.note_folder(path)
            known = now
            roots = sorted(now)
            self.watching = roots
            if not roots:
                if await sleep_or_stop(stop, self.recheck):
                    return
                continue
            restart = asyncio.Event()
            guard = asyncio.create_task(self._guard(configured, now, restart, stop))
            try:
                async for changes in watchfiles.awatch(
                        *roots, watch_filter=_Filter(), debounce=self.debounce_ms, step=self.step_ms,
                        stop_event=restart, recursive=True, ignore_permission_denied=True):
                    self.note((Path(p) for _, p in changes), roots)
            except OSError as e:  # e.g. too many directories for the inotify limit; the schedule still rescans
                log.warning("cannot watch the library folders", extra={"fields": {"error": str(e)}})
                if await sleep_or_stop(stop, max(self.recheck, 60.0)):
                    return
            finally:
                guard.cancel()
                await asyncio.gather(guard, return_exceptions=True)

    async def _guard(self, configured: list[Path], seen: dict[Path, tuple[int, int]], restart: asyncio.Event,
                     stop: asyncio.Event) -> None:
        """Stop the current watch when the node stops or the folders change (appear, vanish, are replaced)."""
        try:
            while not await sleep_or_stop(stop, self.recheck):
                current = [Path(p) for p in await self.folders()]
                if current != configured or any(_identity(p) != seen.get(p) for p in current):
                    return
        finally:
            restart.set()
