"""The music folder as a node service (`node.library`): folders, scans, their progress and what could not be read.

A scan walks the folders (plyrd.library.scan), reads new and changed files in worker threads (fingerprint, then
PyAV's fast path: tags, duration and stream facts from the headers and the embedded picture, no decoding), resolves
each album's cover once, and writes a few hundred files per transaction through plyrd.library.catalog. Unchanged
files are never opened. Files that are gone lose their tracks at the end, after checking once more that they are
really gone; a folder that looks empty or missing (an unmounted disk) is left as it is rather than emptied.

Reading headers only is what keeps a first scan of a large collection short: the bounded decode check an upload
gets (plyrd.media.probe `check=True`) costs 3-10 ms on a four-minute song against 0.3-0.8 ms for its headers
(measured: FLAC, M4A, MP3), many times the rest of a file's reading. So a library file is "broken" when it cannot
be opened as audio (not audio, a cut header, a copy that stopped early, an unreadable file); a file cut deep inside
its audio becomes a track that stops early.

One scan at a time, across processes too (`plyrd library scan` beside a running node): a lock file in the data
directory; in one process a second full scan joins the running one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.artwork import Artwork
from ..config import Config
from ..db import Database
from ..db.queries import fetchone
from ..errors import InvalidInput, PlyrdError
from ..storage import BlobStore, Staged
from ..threads import ThreadSlots
from .catalog import FileRead, LibraryCatalog, album_dir, album_key
from .fingerprint import fingerprint
from .scan import Change, Known, count_known, diff, walk

if TYPE_CHECKING:
    from ..media.probe import Cover

log = logging.getLogger("plyrd.library")

LOCK_FILE = "library.lock"
LOCK_POLL = 0.5  # seconds between tries while another process scans
BATCH = 250  # files per write transaction: big enough to be fast, short enough to keep the node responsive
READ_CHUNK = 8  # files read per thread hop: a hop costs more than a file's headers under a busy GIL
PROGRESS_EVERY = 0.25  # seconds between progress callbacks
COVER_NAMES = ("cover", "folder", "front", "album", "albumart")
COVER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_CACHE = 512  # albums and directories whose cover is remembered during a scan (files come a directory at a time)
_MISSING = object()
# The watcher may see a move's two halves in separate scans (a slow copy to another folder, a rename that straddles
# its debounce): a file that a watch scan finds gone keeps its track `library.move_grace_seconds`, so the second half
# still finds it by fingerprint and keeps its likes, plays and playlist entries. A scan of those paths then settles
# it.


@dataclass(frozen=True)
class ScanProgress:
    seen: int
    total_estimate: int
    per_second: float
    eta_seconds: float | None


@dataclass(frozen=True)
class ScanReport:
    """A finished scan. seen = added + updated + moved + unchanged + files newly found unreadable; `errors` counts
    every seen file that is not a track (found now or before); `removed` the tracks whose file went."""

    seen: int
    added: int
    updated: int
    moved: int
    removed: int
    unchanged: int
    errors: int
    elapsed: float
    scan_id: int | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Folder:
    id: int
    path: str
    from_config: bool


@dataclass
class _Scan:
    """One scan's running state."""

    trigger: str
    scan_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    total: int = 0
    seen: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)
    gone: list[tuple[int, Known]] = field(default_factory=list)  # (folder id, row) of files the walks missed
    progress: Callable[[ScanProgress], None] | None = None
    last_progress: float = 0.0
    stored: list[str] = field(default_factory=list)  # covers stored for this scan (released if left unused)
    album_art: OrderedDict[str, Artwork | None] = field(default_factory=OrderedDict)
    dir_cover: OrderedDict[str, Artwork | None] = field(default_factory=OrderedDict)
    staged: dict[str, Staged] = field(default_factory=dict)  # covers made, to be placed by the next batch
    art_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def snapshot(self) -> ScanProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.seen / elapsed
        total = max(self.total, self.seen)
        eta = (total - self.seen) / rate if rate > 0 else None
        return ScanProgress(self.seen, total, round(rate, 1), None if eta is None else round(eta, 1))

    def tick(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self.last_progress >= PROGRESS_EVERY:
            self.last_progress = now
            self.progress(self.snapshot())

    def report(self, scan_id: int | None) -> ScanReport:
        return ScanReport(self.seen, self.added, self.updated, self.moved, self.removed, self.unchanged, self.errors,
                          round(time.monotonic() - self.started, 3), scan_id, tuple(self.notes))


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE:
        cache.popitem(last=False)


def read_file(path: Path) -> tuple[str | None, Any, str | None]:
    """(fingerprint, AudioInfo, None) for an audio file, or (fingerprint or None, None, why not). Runs in a thread."""
    from ..media.probe import probe

    try:
        fp = fingerprint(path)
    except OSError as e:
        return None, None, f"The file cannot be read: {e.strerror or e}."
    try:
        return fp, probe(path, max_duration=None, check=False), None
    except PlyrdError as e:
        return fp, None, e.detail
    except OSError as e:
        return fp, None, f"The file cannot be read: {e.strerror or e}."
    except Exception as e:  # a demuxer's surprise must not stop the scan
        return fp, None, f"The file could not be read: {type(e).__name__}: {e}"


def read_files(paths: list[Path]) -> list[tuple[str | None, Any, str | None]]:
    return [read_file(p) for p in paths]


def _count_files(root: Path, prefix: str, skip: Path) -> int:
    return sum(1 for _ in walk(root, prefix, skip=skip))


def _find_cover(directory: Path) -> Path | None:
    """cover/folder/front/album(art).(jpg|png|webp) in `directory`, any case, in that order of names."""
    found: dict[str, Path] = {}
    try:
        with os.scandir(directory) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name.lower())
                if stem in COVER_NAMES and ext in COVER_EXTENSIONS and stem not in found and entry.is_file():
                    found[stem] = Path(entry.path)
    except OSError:
        return None
    return next((found[n] for n in COVER_NAMES if n in found), None)


class Library:
    def __init__(self, db: Database, store: BlobStore, config: Config, *, slots: ThreadSlots | None = None) -> None:
        self.db = db
        self.store = store
        self.config = config
        self.slots = slots or ThreadSlots(config["media.workers"])
        self.max_image_bytes = config["media.max_image_mb"] * 1024 * 1024
        self._lock = asyncio.Lock()
        self._current: _Scan | None = None
        self._full: asyncio.Task[ScanReport] | None = None  # a running full scan, which a second caller joins
        self.on_scanned: list[Callable[[ScanReport], None]] = []  # e.g. waking the background analysis
        self.move_grace = float(config["library.move_grace_seconds"])
        self._rechecks: set[asyncio.Task[None]] = set()  # follow-up scans of files a watch scan found gone

    @property
    def scanning(self) -> bool:
        return self._current is not None

    # ---- folders ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """At node start: the configured folders recorded (and folders no longer configured forgotten), scans
        that a crash interrupted marked failed (unless another process is scanning right now)."""
        await self.sync_config()
        lock = await asyncio.to_thread(self._try_lock)
        if lock is not None:
            try:
                await self.db.execute(
                    "UPDATE library_scans SET state = 'failed', detail = 'interrupted',"
                    " finished_at = coalesce(finished_at, started_at) WHERE state = 'running'")
            finally:
                os.close(lock)

    async def sync_config(self, *, forget: bool = True) -> None:
        """Record the configured folders; with `forget`, a folder that was configured and no longer is leaves the
        library (its tracks go; its files stay). The node does that at start; a command-line run, whose environment
        may not be the node's, only adds."""
        configured = [self._resolve(p) for p in self.config["library.folders"]]
        for path in configured:
            await self.db.execute(
                "INSERT INTO library_folders(path, from_config) VALUES (?, 1)"
                " ON CONFLICT(path) DO UPDATE SET from_config = 1", (str(path),))
        if not forget:
            return
        for row in await self.db.fetchall("SELECT id, path FROM library_folders WHERE from_config = 1"):
            if row["path"] not in {str(p) for p in configured}:
                log.info("library folder no longer configured: its tracks go", extra={"fields": {"path": row["path"]}})
                await self._forget_folder(row["id"])

    def _resolve(self, path: str | Path) -> Path:
        return Path(path).expanduser().resolve()

    async def add_folder(self, path: str | Path) -> int:
        """Add a folder to scan (`plyrd library add PATH`); returns its id. It must be an existing directory, not
        inside the data directory (which scans never enter), neither inside nor around a folder already scanned (its
        files would be tracks twice)."""
        folder = self._resolve(path)
        if not folder.is_dir():
            raise InvalidInput(f"{folder} is not a directory")
        data = self.config.data_dir.resolve()
        if folder == data or data in folder.parents:
            raise InvalidInput(f"{folder} is inside the node's data directory")
        for f in await self.folders():
            other = Path(f.path)
            if other == folder:
                return f.id
            if other in folder.parents or folder in other.parents:
                raise InvalidInput(f"{folder} overlaps the library folder {other}")
        async with self.db.write() as conn:
            row = await fetchone(conn, "INSERT INTO library_folders(path) VALUES (?) RETURNING id", (str(folder),))
        assert row is not None
        return int(row[0])

    async def folders(self) -> list[Folder]:
        return [Folder(r["id"], r["path"], bool(r["from_config"]))
                for r in await self.db.fetchall("SELECT id, path, from_config FROM library_folders ORDER BY path")]

    async def _forget_folder(self, folder_id: int) -> None:
        catalog = LibraryCatalog(self.store)
        while True:
            rows = await self.db.fetchall(
                "SELECT id, rel_path, size, mtime_ns, fingerprint, track_id, error FROM library_files"
                " WHERE folder_id = ? LIMIT ?", (folder_id, BATCH))
            if not rows:
                break
            released: list[str] = []
            async with self.store.exclusive():
                async with self.db.write() as conn:
                    for r in rows:
                        released += (await catalog.forget(conn, r["id"]))[1]
            await self.store.remove_unreferenced(released)
        await self.db.execute("DELETE FROM library_folders WHERE id = ?", (folder_id,))

    # ---- scanning --------------------------------------------------------------------------------------------------

    async def scan(self, *, trigger: str, only: Sequence[Path] | None = None,
                   progress: Callable[[ScanProgress], None] | None = None) -> ScanReport:
        """Scan every folder (or only these files and directories, for the watcher) and bring the catalog in step.
        One at a time: a full scan asked for while one runs joins it; anything else waits its turn."""
        if only is None and self._full is not None and not self._full.done():
            return await asyncio.shield(self._full)
        task = asyncio.ensure_future(self._scan_locked(trigger, only, progress))
        if only is None:
            self._full = task
        return await asyncio.shield(task) if only is None else await task

    async def _scan_locked(self, trigger: str, only: Sequence[Path] | None,
                           progress: Callable[[ScanProgress], None] | None) -> ScanReport:
        async with self._lock:
            # Polled, not a blocking flock in a thread: a thread still waiting when its scan is cancelled would take
            # the lock later and keep it for good.
            lock = await self._other_processes()
            try:
                return await self._scan(trigger, only, progress)
            finally:
                os.close(lock)

    def _lock_path(self) -> Path:
        return self.config.data_dir / LOCK_FILE

    async def _other_processes(self) -> int:
        """The lock file held (its descriptor), once no other process is scanning."""
        while True:
            lock = await asyncio.to_thread(self._try_lock)
            if lock is not None:
                return lock
            await asyncio.sleep(LOCK_POLL)

    def _try_lock(self) -> int | None:
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def _scopes(self, only: Sequence[Path] | None) -> list[tuple[Folder, str]]:
        folders = await self.folders()
        if only is None:
            return [(f, "") for f in folders]
        scopes: list[tuple[Folder, str]] = []
        for p in await asyncio.to_thread(lambda: [Path(x).absolute() for x in only]):
            for f in folders:
                root = Path(f.path)
                if p == root or root in p.parents:
                    scopes.append((f, p.relative_to(root).as_posix() if p != root else ""))
                    break
        return scopes

    async def _scan(self, trigger: str, only: Sequence[Path] | None,
                    progress: Callable[[ScanProgress], None] | None) -> ScanReport:
        async with self.db.write() as conn:
            row = await fetchone(conn, "INSERT INTO library_scans(trigger) VALUES (?) RETURNING id", (trigger,))
        assert row is not None
        scan_id = int(row[0])
        ctx = _Scan(trigger, scan_id, progress=progress)
        self._current = ctx
        state, failure = "failed", None
        try:
            async with self.store.releasing() as stored:
                ctx.stored = stored
                scopes = await self._scopes(only)
                for folder, prefix in scopes:
                    known = await count_known(self.db, folder.id, prefix)
                    # A first scan has no rows to count: the walk alone (no file opened) estimates the work.
                    ctx.total += known or await asyncio.to_thread(_count_files, Path(folder.path), prefix,
                                                                      self.config.data_dir)
                for folder, prefix in scopes:
                    await self._scan_scope(ctx, folder, prefix)
                if trigger == "watch" and ctx.gone:
                    self._recheck_later(ctx, [folder for folder, _ in scopes])
                else:
                    await self._forget_gone(ctx)
            state = "done"
        except asyncio.CancelledError:
            failure = "interrupted"
            raise
        except Exception as e:
            failure = f"{type(e).__name__}: {e}"
            log.exception("library scan failed", extra={"fields": {"scan_id": scan_id}})
            raise
        finally:
            self._current = None
            for staged in ctx.staged.values():  # covers of a scan that stopped before its last batch
                staged.path.unlink(missing_ok=True)
            report = ctx.report(scan_id)
            detail = {"notes": ctx.notes, **({"error": failure} if failure else {})}
            with contextlib.suppress(Exception):
                await asyncio.shield(self.db.execute(
                    "UPDATE library_scans SET finished_at = ?, state = ?, seen = ?, added = ?, updated = ?, moved = ?,"
                    " removed = ?, unchanged = ?, errors = ?, detail = ? WHERE id = ?",
                    (time.time(), state, report.seen, report.added, report.updated, report.moved, report.removed,
                     report.unchanged, report.errors, json.dumps(detail), scan_id)))
        ctx.tick(force=True)
        log.info("library scanned", extra={"fields": {k: v for k, v in asdict(report).items() if k != "notes"}})
        for hook in self.on_scanned:
            hook(report)
        return report

    async def _scan_scope(self, ctx: _Scan, folder: Folder, prefix: str) -> None:
        root = Path(folder.path)
        if not await asyncio.to_thread(root.is_dir):
            ctx.notes.append(f"{root} is not available (missing or not a directory): left as it was")
            return
        catalog = LibraryCatalog(self.store)
        catalog.root(folder.id, root)
        parallel = self.slots.size
        inflight: set[asyncio.Task[list[FileRead]]] = set()
        chunk: list[Change] = []
        ready: list[FileRead] = []
        writing: asyncio.Task[None] | None = None  # the batch being written while the next one is read
        gone: list[Known] = []
        found = 0

        async def read(changes: list[Change]) -> None:
            nonlocal inflight, ready, writing
            while len(inflight) >= parallel * 2:
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                ready += [r for t in done for r in t.result()]
            if changes:
                inflight.add(asyncio.create_task(self._read(ctx, folder.id, root, changes)))
            if len(ready) >= BATCH:
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._write(ctx, catalog, folder.id, ready))
                ready = []

        try:
            async for d in diff(self.db, folder.id, root, prefix, skip=self.config.data_dir):
                if d.change is not None:
                    found += 1
                    chunk.append(d.change)
                    if len(chunk) >= READ_CHUNK:
                        await read(chunk)
                        chunk = []
                elif d.gone is not None:
                    gone.append(d.gone)
                else:
                    found += d.unchanged
                    ctx.seen += d.unchanged
                    ctx.unchanged += d.unchanged
                    ctx.errors += d.unchanged_errors
                ctx.tick()
            await read(chunk)
            if inflight:
                done, _ = await asyncio.wait(inflight)
                ready += [r for t in done for r in t.result()]
                inflight = set()
            if writing is not None:
                await writing
                writing = None
            if ready:
                await self._write(ctx, catalog, folder.id, ready)
        finally:
            for t in inflight:
                t.cancel()
            if writing is not None and not writing.done():
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
        if gone and found == 0 and not prefix:
            # Every file gone at once is far more often a disk not mounted than a collection deleted.
            ctx.notes.append(f"{root} has no files now: its {len(gone)} known files were kept (is it mounted?)")
            return
        ctx.gone += [(folder.id, known) for known in gone]

    def _recheck_later(self, ctx: _Scan, folders: list[Folder]) -> None:
        """A watch scan's missing files are settled by a scan of their paths `move_grace` seconds later (which
        forgets those still missing): the other half of a move may not have been seen yet."""
        roots = {f.id: Path(f.path) for f in folders}
        paths = [roots[folder_id] / known.rel for folder_id, known in ctx.gone if folder_id in roots]
        ctx.notes.append(f"{len(paths)} missing file(s) kept {self.move_grace:g} s in case they moved")
        ctx.gone = []

        async def recheck() -> None:
            await asyncio.sleep(self.move_grace)
            await self.scan(trigger="recheck", only=paths)

        task = asyncio.create_task(recheck())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _forget_gone(self, ctx: _Scan) -> None:
        """After every folder was walked (a file moved from one folder to another is found in the second after it
        was missed in the first): the files still missing lose their tracks."""
        catalog = LibraryCatalog(self.store)
        for i in range(0, len(ctx.gone), BATCH):
            released: list[str] = []
            async with self.store.exclusive():
                async with self.db.write() as conn:
                    for folder_id, known in ctx.gone[i:i + BATCH]:
                        removed, freed = await catalog.remove_gone(conn, known, folder_id)
                        ctx.removed += removed
                        released += freed
            await self.store.remove_unreferenced(released)
            ctx.tick()
        ctx.gone = []

    async def _read(self, ctx: _Scan, folder_id: int, root: Path, changes: list[Change]) -> list[FileRead]:
        """Read a few files (neighbours: usually one album) in one thread hop, then find their covers."""
        found = await self.slots.run(read_files, [root / c.seen.rel for c in changes])
        reads: list[FileRead] = []
        for change, (fp, info, error) in zip(changes, found, strict=True):
            r = FileRead(change.seen, change.known, fingerprint=fp, error=error)
            reads.append(r)
            if info is None:
                continue
            cover = info.cover
            r.info = dataclasses.replace(info, cover=None)  # the picture's bytes are not kept past this point
            r.album = album_key(folder_id, change.seen.rel, info.tags)
            try:
                r.artwork = await self._artwork(ctx, root, r, cover)
            except Exception:  # a cover that cannot be stored leaves the track without one, nothing more
                log.exception("library cover failed", extra={"fields": {"file": str(root / change.seen.rel)}})
        return reads

    async def _write(self, ctx: _Scan, catalog: LibraryCatalog, folder_id: int, reads: list[FileRead]) -> None:
        async with self.store.exclusive():
            async with self.db.write() as conn:
                staged, ctx.staged = list(ctx.staged.values()), {}
                ctx.stored += [s.sha256 for s in staged]  # released at the end of the scan if nothing took them
                await self.store.place_staged(conn, staged)
                result = await catalog.write(conn, folder_id, reads)
                if ctx.scan_id is not None:  # how far it got, for `plyrd library status` in another process
                    await conn.execute("UPDATE library_scans SET seen = ? WHERE id = ?",
                                       (ctx.seen + len(reads), ctx.scan_id))
        await self.store.remove_unreferenced(result.released)
        ctx.seen += len(reads)
        ctx.added += result.added
        ctx.updated += result.updated
        ctx.moved += result.moved
        ctx.errors += result.errors
        ctx.tick()

    # ---- covers ----------------------------------------------------------------------------------------------------

    async def _artwork(self, ctx: _Scan, root: Path, r: FileRead, cover: Cover | None) -> Artwork | None:
        """The cover a track shows: its album's (found once per album: an embedded picture, else a cover image in
        the album's directory), or for a track on no album its own picture, else its directory's image."""
        rel_dir = os.path.dirname(r.seen.rel)
        if r.album is None:
            return await self._image(ctx, cover.data) if cover else await self._dir_cover(ctx, root, rel_dir)
        lock = ctx.art_locks.setdefault(r.album, asyncio.Lock())
        async with lock:
            art = ctx.album_art.get(r.album, _MISSING)
            if art is _MISSING:
                row = await self.db.fetchone("SELECT image_sha, image_mime, thumb_sha, display_sha FROM albums"
                                             " WHERE library_key = ?", (r.album,))
                art = Artwork.of(row)
            if art is None and cover is not None:
                art = await self._image(ctx, cover.data)
            if art is None:
                art = await self._dir_cover(ctx, root, album_dir(r.seen.rel))
                if art is None and album_dir(r.seen.rel) != rel_dir:
                    art = await self._dir_cover(ctx, root, rel_dir)
            _remember(ctx.album_art, r.album, art)
        if len(ctx.art_locks) > _CACHE * 4:
            ctx.art_locks = {k: v for k, v in ctx.art_locks.items() if v.locked()}
        return art  # type: ignore[return-value]

    async def _dir_cover(self, ctx: _Scan, root: Path, rel_dir: str) -> Artwork | None:
        if rel_dir in ctx.dir_cover:
            return ctx.dir_cover[rel_dir]
        path = await asyncio.to_thread(_find_cover, root / rel_dir if rel_dir else root)
        art = None
        if path is not None:
            try:
                data = await asyncio.to_thread(path.read_bytes)
                art = await self._image(ctx, data)
            except OSError:
                art = None
        _remember(ctx.dir_cover, rel_dir, art)
        return art

    async def _image(self, ctx: _Scan, data: bytes) -> Artwork | None:
        from ..media.artwork import process_image

        try:
            image = await self.slots.run(process_image, data, max_bytes=self.max_image_bytes)
        except PlyrdError:
            return None  # not an image, too big or broken: the track simply has no cover
        # Written and synced in tmp/ now; placed in the store by the next batch's transaction (no commit of its own,
        # no wait for the store's lock while a batch is written). Registered before anyone can name the artwork.
        staged = await self.store.stage_bytes([(image.original_bytes, image.original_mime),
                                               (image.thumb_webp, "image/webp"), (image.display_webp, "image/webp")])
        for s in staged:
            if s.sha256 in ctx.staged:
                s.path.unlink(missing_ok=True)  # the same image twice (two albums, one cover)
            else:
                ctx.staged[s.sha256] = s
        return Artwork(staged[0].sha256, image.original_mime, staged[1].sha256, staged[2].sha256)

    # ---- reading the state -----------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The running scan with its progress (this process's, or another's as recorded), the last finished scan,
        the folders and counts."""
        running: dict[str, Any] | None = None
        if self._current is not None:
            p = self._current.snapshot()
            running = {"trigger": self._current.trigger, "started_at": self._current.started_at, **asdict(p)}
        else:
            row = await self.db.fetchone("SELECT * FROM library_scans WHERE state = 'running' ORDER BY id DESC LIMIT 1")
            if row is not None:
                running = {"trigger": row["trigger"], "started_at": row["started_at"], "seen": row["seen"],
                           "total_estimate": None, "per_second": None, "eta_seconds": None}
        last = await self.db.fetchone("SELECT * FROM library_scans WHERE state != 'running' ORDER BY id DESC LIMIT 1")
        counts = await self.db.fetchone(
            "SELECT (SELECT count(*) FROM library_files) AS files,"
            " (SELECT count(*) FROM tracks WHERE source = 'library') AS tracks,"
            " (SELECT count(*) FROM albums WHERE library_key IS NOT NULL) AS albums,"
            " (SELECT count(*) FROM library_files WHERE error IS NOT NULL) AS errors")
        assert counts is not None
        return {
            "running": running,
            "last": None if last is None else {
                **{k: last[k] for k in ("id", "trigger", "started_at", "finished_at", "state", "seen", "added",
                                        "updated", "moved", "removed", "unchanged", "errors")},
                "detail": json.loads(last["detail"] or "{}")},
            "folders": [asdict(f) for f in await self.folders()],
            "counts": dict(counts),
        }

    async def errors(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Files that are not tracks, and why: {file (absolute), folder, path (relative), why, scanned_at}."""
        rows = await self.db.fetchall(
            "SELECT d.path AS folder, f.rel_path, f.error, f.scanned_at FROM library_files f"
            " JOIN library_folders d ON d.id = f.folder_id WHERE f.error IS NOT NULL"
            " ORDER BY d.path, f.rel_path LIMIT ? OFFSET ?", (max(0, limit), max(0, offset)))
        return [{"file": str(Path(r["folder"]) / r["rel_path"]), "folder": r["folder"], "path": r["rel_path"],
                 "why": r["error"], "scanned_at": r["scanned_at"]} for r in rows]
