"""Content-addressed file storage: every file is named by the SHA-256 of its bytes, under blobs/ab/cd/<sha256>.

Identical bytes are stored once. A row in `blobs` records each file; rows that use a blob (tracks, covers...) call
`incref`/`decref` inside their own transaction, and `collect_garbage` removes blobs nobody references.

Crash safety, in the order things happen:

1. Bytes are written to a temporary file under tmp/ (same file system as blobs/) and hashed as they arrive.
2. The temporary file is fsynced, then renamed to its final name, then the shard directory is fsynced: after a crash
   the final name either does not exist or names the complete, durable bytes; a half-written file never has a
   final name. Anything left in tmp/ by a crash is removed at start-up (`cleanup_tmp`).
3. Only then is the `blobs` row committed (synchronous=FULL). So a row always has its file. A crash between 2 and 3
   leaves a file without a row, which the next ingest of the same bytes adopts or garbage collection removes.
4. Callers reference a blob by `incref` in the same transaction that writes the referencing row, so the count and
   the reference commit or roll back together.
5. Garbage collection first deletes the row (refcount 0 for a grace period, checked again inside the transaction)
   and commits, and only then unlinks the file. A crash between the two leaves a file without a row (removed on
   the next run), never a referenced row without its file. The grace period keeps a blob that was just stored, and
   is about to be referenced by the caller's next transaction, from being collected in between.

Finalizing an ingest and collecting garbage share one asyncio lock, so a blob re-ingested while it is being
collected cannot lose its file. plyrd runs one process per data directory, so an in-process lock is enough.

Every blob file is 0600 and every directory of the store 0700, whatever the umask and whoever made the file that is
ingested (see `_place`).

External blobs (`blobs.external = 1`, plyrd.library): a file of the music folder, read in place. Its row is named by
the file's fingerprint (plyrd.library.fingerprint), not a hash of its bytes, and its name in the store is a symbolic
link to the file (`link_external`). It is served like any blob; freeing it unlinks the link, never the file; garbage
collection and backups look at the link itself (never following it to delete or copy a target), and nothing hashes
it to check it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from . import errors
from .db import Database
from .db.queries import fetchall, fetchone

log = logging.getLogger("plyrd.storage")

DEFAULT_MIME = "application/octet-stream"
# Bytes gathered before one write+hash step runs in a thread: big enough that the thread hop is cheap relative to
# the work, small enough to keep memory per upload constant.
FLUSH_BYTES = 1024 * 1024
# A blob whose refcount is 0 is kept this long after its last ingest/incref/decref before it may be collected.
DEFAULT_GC_GRACE = 3600.0
TMP_PREFIX = "blob-"
# Removals under way (strong references: a removal outlives the cancelled request that started it).
_removals: set[asyncio.Task[int]] = set()

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    mime: str
    path: Path


@dataclass(frozen=True)
class Staged:
    """A file written and fsynced in tmp/, not in the store yet (`BlobStore.stage_bytes`)."""

    path: Path
    sha256: str
    size: int
    mime: str


@dataclass(frozen=True)
class GarbageReport:
    deleted: int  # unreferenced blobs removed (row and file)
    orphan_files: int  # files without a row, removed
    missing_files: list[str]  # rows whose file is gone; those with refcount 0 were dropped, the rest need a person


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(FLUSH_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class BlobWriter:
    """Streams bytes into a temporary file while hashing them; `commit()` stores the result, `abort()` drops it.

    Use as `async with await store.open_writer() as w:` so an exception (or a cancelled request) aborts it.
    Writes must be awaited one after another.
    """

    def __init__(self, store: BlobStore, fd: int, tmp_path: Path, *, max_bytes: int | None) -> None:
        self._store = store
        self._fd: int | None = fd
        self.tmp_path = tmp_path
        self.max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._size = 0
        self._inflight: asyncio.Future[None] | None = None
        self._done = False

    @property
    def size(self) -> int:
        """Bytes accepted so far."""
        return self._size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise RuntimeError("writer already committed or aborted")
        if self.max_bytes is not None and self._size + len(data) > self.max_bytes:
            self.abort()
            raise errors.TooLarge(f"file is larger than the limit of {self.max_bytes} bytes")
        self._size += len(data)
        self._buffer += data
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    def _write_and_hash(self, chunk: bytearray) -> None:
        assert self._fd is not None
        self._hash.update(chunk)  # hashlib releases the GIL for large buffers, so this thread runs beside the loop
        _write_all(self._fd, chunk)

    async def _flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, bytearray()
        # Track the thread's future: abort() must not close the descriptor while a write is still using it.
        self._inflight = asyncio.ensure_future(asyncio.to_thread(self._write_and_hash, chunk))
        try:
            await asyncio.shield(self._inflight)
        finally:
            if self._inflight.done():
                self._inflight = None

    async def digest(self) -> str:
        """The SHA-256 of everything written so far (flushed first): to check bytes against what they should be
        (a blob CID's digest) before committing them into the store."""
        if self._done:
            raise RuntimeError("writer already committed or aborted")
        await self._flush()
        return self._hash.hexdigest()

    async def commit(self, mime: str = DEFAULT_MIME) -> Blob:
        """Flush, fsync and move the file into the store; returns the stored Blob (shared if the bytes existed)."""
        if self._done:
            raise RuntimeError("writer already committed or aborted")
        try:
            await self._flush()
            fd, self._fd = self._fd, None
            assert fd is not None
            await asyncio.to_thread(_sync_and_close, fd)
            self._done = True
            return await self._finalize(mime)
        except BaseException:
            self.abort()
            raise

    async def _finalize(self, mime: str) -> Blob:
        """Move the file into the store even if the caller is cancelled meanwhile: a move stopped halfway would leave
        a file without its row. A cancelled caller never learns of the blob, so it is removed again unless
        something else references the same bytes."""
        sha = self._hash.hexdigest()
        finalizing = asyncio.ensure_future(self._store._finalize(self.tmp_path, sha, self._size, mime))
        try:
            return await asyncio.shield(finalizing)
        except asyncio.CancelledError:
            await asyncio.gather(finalizing, return_exceptions=True)
            if not finalizing.cancelled() and finalizing.exception() is None:
                await self._store.remove_unreferenced([sha])
            raise

    def abort(self) -> None:
        """Remove the temporary file. Safe to call more than once, and from a cancelled task (no awaits)."""
        self._done = True
        self._buffer = bytearray()
        _unlink_quietly(self.tmp_path)  # unlinking an open file is fine on POSIX; the space returns on close
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._inflight is not None and not self._inflight.done():
            self._inflight.add_done_callback(lambda f: _close_after(f, fd))
        else:
            os.close(fd)

    async def __aenter__(self) -> BlobWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if not self._done:
            self.abort()


def _discard_made(future: asyncio.Future[tuple[int, str]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    fd, name = future.result()
    os.close(fd)
    _unlink_quietly(Path(name))


def _close_after(future: asyncio.Future[None], fd: int) -> None:
    """Close a descriptor once the thread writing to it has finished (its outcome no longer matters)."""
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved
    os.close(fd)


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path, tmp: Path, db: Database) -> None:
        self.root = root
        self.tmp = tmp
        self.db = db
        # Serializes "file into place + row" against "row out + file unlinked" (see the module docstring).
        self._lock = asyncio.Lock()

    # --- paths -------------------------------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where a blob lives. Refuses anything but 64 lowercase hex digits, so no caller can escape the store."""
        if not _SHA256.match(sha256):
            raise errors.InvalidInput("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def cleanup_tmp(self, *, older_than: float | None = None) -> int:
        """Remove interrupted temporary files (all of them at start-up; with `older_than` seconds, only stale ones).

        Blocking file-system work: call it at start-up or through asyncio.to_thread.
        """
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        cutoff = None if older_than is None else time.time() - older_than
        removed = 0
        for entry in self.tmp.iterdir():
            try:
                if cutoff is not None and entry.lstat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
            except FileNotFoundError:
                continue
        return removed

    # --- writing -----------------------------------------------------------------------------------------------

    async def open_writer(self, *, max_bytes: int | None = None) -> BlobWriter:
        """A writer streaming into tmp/; it raises errors.TooLarge (and removes its file) past `max_bytes`."""
        made = asyncio.ensure_future(asyncio.to_thread(self._mkstemp))
        try:
            fd, name = await asyncio.shield(made)
        except asyncio.CancelledError:
            # A request cancelled while its temporary file was being made (a client gone at once): the thread
            # still makes it, so remove it when it does, rather than leave it in tmp/ until the next start.
            made.add_done_callback(_discard_made)
            raise
        return BlobWriter(self, fd, Path(name), max_bytes=max_bytes)

    def _mkstemp(self) -> tuple[int, str]:
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.tmp)  # mode 0600

    async def stage_bytes(self, items: Sequence[tuple[bytes, str]]) -> list[Staged]:
        """Step 1 of the module docstring for a few small files (a cover and its renditions), ahead of time: each
        written to tmp/ and fsynced, side by side, in one thread hop. `place_staged` stores them later inside a
        transaction of the caller's; until then they are nobody's (tmp/ is cleared at start-up)."""
        return [Staged(*t) for t in await asyncio.to_thread(self._stage, items)]

    async def place_staged(self, conn: aiosqlite.Connection, staged: Sequence[Staged]) -> None:
        """Steps 2 and 3 for staged files, inside the caller's transaction, which holds `exclusive()`: each moved to
        its name (directories synced side by side), then the rows (unreferenced until the caller increfs). Should
        the transaction roll back, the files are orphans that garbage collection removes."""
        if staged:
            await asyncio.to_thread(self._place_many, [(s.path, s.sha256, s.size, s.mime) for s in staged])
            await conn.executemany(
                f"INSERT INTO blobs(sha256, size, mime) VALUES (?, ?, ?) "
                f"ON CONFLICT(sha256) DO UPDATE SET touched_at = {_NOW_SQL}",
                [(s.sha256, s.size, s.mime) for s in staged])

    def _stage(self, items: Sequence[tuple[bytes, str]]) -> list[tuple[Path, str, int, str]]:
        staged: list[tuple[Path, str, int, str]] = []
        fds: list[int] = []
        try:
            for data, mime in items:
                fd, name = self._mkstemp()
                fds.append(fd)
                staged.append((Path(name), hashlib.sha256(data).hexdigest(), len(data), mime))
                _write_all(fd, data)
            _in_parallel(os.fsync, fds)
        except BaseException:
            for path, *_ in staged:
                _unlink_quietly(path)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return staged

    def _place_many(self, staged: list[tuple[Path, str, int, str]]) -> None:
        """`_place` for several files, their directories synced side by side."""
        changed: set[Path] = set()
        for src, sha, _, _ in staged:
            dest = self.path_for(sha)
            if dest.exists() and not dest.is_symlink():
                src.unlink()
                continue
            changed.update(d.parent for d in self._make_dirs_unsynced(dest.parent))
            os.chmod(src, 0o600)
            try:
                os.rename(src, dest)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                self._place(src, dest)  # tmp/ on another file system: copied, then renamed beside the destination
            changed.add(dest.parent)
        _fsync_dirs(changed)

    async def put_bytes(self, data: bytes, mime: str = DEFAULT_MIME) -> Blob:
        async with await self.open_writer() as writer:
            await writer.write(data)
            return await writer.commit(mime)

    async def ingest(self, src_path: Path, *, mime: str = DEFAULT_MIME, sha256: str | None = None) -> Blob:
        """Move a finished file (e.g. a transcoder's output in tmp/) into the store; `src_path` is consumed.

        Pass `sha256` only when it was computed over exactly these bytes (it is trusted); otherwise the file is
        hashed in a thread. Never call this inside `db.write()`: it commits its own short transaction.
        """
        try:
            if sha256 is None:
                sha256, size = await asyncio.to_thread(_hash_file, src_path)
            else:
                self.path_for(sha256)  # validates the digest's form
                size = (await asyncio.to_thread(src_path.stat)).st_size
            await asyncio.to_thread(_fsync_path, src_path)
        except BaseException:
            _unlink_quietly(src_path)
            raise
        return await self._finalize(src_path, sha256, size, mime)

    async def _finalize(self, src: Path, sha256: str, size: int, mime: str) -> Blob:
        """Steps 2 and 3 of the module docstring: durable file under its final name, then the row."""
        dest = self.path_for(sha256)
        try:
            async with self._lock:
                await asyncio.to_thread(self._place, src, dest)
                async with self.db.write() as conn:
                    await conn.execute(
                        f"INSERT INTO blobs(sha256, size, mime) VALUES (?, ?, ?) "
                        f"ON CONFLICT(sha256) DO UPDATE SET touched_at = {_NOW_SQL}",
                        (sha256, size, mime),
                    )
                    row = await fetchone(conn, "SELECT size, mime FROM blobs WHERE sha256 = ?", (sha256,))
        except BaseException:
            _unlink_quietly(src)  # synchronous: this must happen even in a cancelled task
            raise
        assert row is not None
        return Blob(sha256=sha256, size=row["size"], mime=row["mime"], path=dest)

    def _place(self, src: Path, dest: Path) -> None:
        if dest.exists() and not dest.is_symlink():
            src.unlink()  # identical bytes already stored (perhaps an orphan of a crash, adopted by the row)
            return
        self._make_dirs(dest.parent)
        # Owner-only before it gets its final name: a file made in tmp/ by other code (a transcoder's output)
        # carries the mode its creator's umask gave it.
        os.chmod(src, 0o600)
        try:
            os.rename(src, dest)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # tmp/ on another file system: copy beside the destination, fsync, then rename atomically.
            partial = dest.with_name(dest.name + ".partial")
            _copy_private(src, partial)
            os.rename(partial, dest)
        _fsync_dir(dest.parent)

    def _make_dirs(self, shard: Path) -> None:
        """Create blobs/ab/cd (mode 0700), fsyncing each parent whose entries changed so they survive a crash."""
        for d in self._make_dirs_unsynced(shard):
            _fsync_dir(d.parent)

    def _make_dirs_unsynced(self, shard: Path) -> list[Path]:
        """`_make_dirs` without the fsyncs: returns the directories created (their parents need one)."""
        created: list[Path] = []
        for d in (self.root, shard.parent, shard):
            try:
                # parents=True only for the store's root: a missing ab/ is created here, 0700 like the rest.
                d.mkdir(mode=0o700, parents=(d == self.root))
                created.append(d)
            except FileExistsError:
                pass
        return created

    # --- external blobs (files of the music folder, linked) --------------------------------------------------------

    def exclusive(self) -> asyncio.Lock:
        """The lock that orders placing files against collecting them. A writer linking external blobs inside its
        own transaction holds it around that transaction (`async with store.exclusive(): async with db.write()`),
        so a collection cannot unlink a link it has just made; it must not call remove_unreferenced inside."""
        return self._lock

    async def link_external(self, conn: aiosqlite.Connection, path: Path, sha256: str, size: int,
                            mime: str = DEFAULT_MIME) -> Blob:
        """Store the file at `path` (absolute, left where it is) as external blob `sha256` (its fingerprint), inside
        the caller's transaction: the link at `path_for(sha256)` first (made under a temporary name, then renamed over
        any old one, so the name always is a whole link), then the row (external = 1, unreferenced until the caller's
        incref). Linking the same fingerprint again points the link at this path (the file moved). Refuses a sha that
        names an ordinary blob (errors.Conflict)."""
        refused = await self.link_external_many(conn, [(path, sha256, size, mime)])
        if refused:
            raise errors.Conflict(f"blob {sha256} is stored here as a file, not a link")
        return Blob(sha256=sha256, size=size, mime=mime, path=self.path_for(sha256))

    async def link_external_many(self, conn: aiosqlite.Connection,
                                 files: Sequence[tuple[Path, str, int, str]]) -> set[str]:
        """`link_external` for many (path, sha256, size, mime) at once (a scan's batch): the links made in one thread
        hop, each directory synced once, the rows in one statement. Returns the shas refused because they name
        ordinary blobs (those files get no link and no row)."""
        for path, sha, _, _ in files:
            self.path_for(sha)  # validates the digest's form
            if not path.is_absolute():
                raise ValueError("an external blob's path must be absolute")
        shas = sorted({sha for _, sha, _, _ in files})
        refused = {r[0] for r in await fetchall(
            conn, "SELECT sha256 FROM blobs WHERE external = 0 AND sha256 IN (SELECT value FROM json_each(?))",
            (json.dumps(shas),))}
        todo = [f for f in files if f[1] not in refused]
        if not todo:
            return refused
        await asyncio.to_thread(self._place_links, [(path, self.path_for(sha)) for path, sha, _, _ in todo])
        await conn.executemany(
            f"INSERT INTO blobs(sha256, size, mime, external) VALUES (?, ?, ?, 1) "
            f"ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, mime = excluded.mime, touched_at = {_NOW_SQL}",
            [(sha, size, mime) for _, sha, size, mime in todo])
        return refused

    def _place_links(self, links: list[tuple[Path, Path]]) -> None:
        changed: set[Path] = set()
        for target, dest in links:
            try:
                os.symlink(target, dest)  # the usual case, a new name: made whole or not at all
            except FileNotFoundError:  # its directory is new too
                changed.update(d.parent for d in self._make_dirs_unsynced(dest.parent))
                os.symlink(target, dest)
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if os.readlink(dest) == str(target):
                        continue  # already this file's link
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.symlink(target, tmp)
                os.rename(tmp, dest)  # atomic: readers see the old link or the new one, never no link
            changed.add(dest.parent)
        _fsync_dirs(changed)  # durable before the rows that name them commit

    def is_external(self, sha256: str) -> bool:
        """Whether the blob's name in the store is a link (an external blob), from the file system alone."""
        return self.path_for(sha256).is_symlink()

    # --- references --------------------------------------------------------------------------------------------

    async def incref(self, conn: aiosqlite.Connection, sha256: str) -> int:
        """Add a reference inside the caller's `db.write()` transaction; returns the new count."""
        row = await fetchone(
            conn,
            f"UPDATE blobs SET refcount = refcount + 1, touched_at = {_NOW_SQL} WHERE sha256 = ? RETURNING refcount",
            (sha256,),
        )
        if row is None:
            raise errors.NotFound(f"blob {sha256} is not stored")
        return int(row[0])

    async def incref_many(self, conn: aiosqlite.Connection, shas: Sequence[str]) -> None:
        """`incref` once per item (a sha listed twice gains two references), in one statement; every blob must be
        stored (errors.NotFound otherwise, and the caller's transaction rolls back)."""
        counts: dict[str, int] = {}
        for sha in shas:
            counts[sha] = counts.get(sha, 0) + 1
        if not counts:
            return
        rows = await fetchall(
            conn,
            f"UPDATE blobs SET refcount = refcount + j.value ->> '$[1]', touched_at = {_NOW_SQL}"
            " FROM json_each(?) j WHERE blobs.sha256 = j.value ->> '$[0]' RETURNING blobs.sha256",
            (json.dumps(list(counts.items())),))
        if len(rows) != len(counts):
            missing = sorted(set(counts) - {r[0] for r in rows})
            raise errors.NotFound(f"blob {missing[0]} is not stored")

    async def decref(self, conn: aiosqlite.Connection, sha256: str) -> int:
        """Drop a reference inside the caller's transaction; at 0 the blob becomes collectable after the grace."""
        row = await fetchone(
            conn,
            f"UPDATE blobs SET refcount = refcount - 1, touched_at = {_NOW_SQL} "
            "WHERE sha256 = ? AND refcount > 0 RETURNING refcount",
            (sha256,),
        )
        if row is None:
            # A count that would go negative means a caller's bookkeeping is off; refuse rather than corrupt it.
            raise errors.Conflict(f"blob {sha256} has no references to drop")
        return int(row[0])

    # --- garbage collection ------------------------------------------------------------------------------------

    async def collect_garbage(self, *, grace: float = DEFAULT_GC_GRACE, batch: int = 200) -> GarbageReport:
        """Delete unreferenced blobs (row first, file after commit), orphan files and rows whose file vanished."""
        cutoff = time.time() - grace
        deleted = 0
        while True:
            candidates = await self.db.fetchall(
                "SELECT sha256 FROM blobs WHERE refcount = 0 AND touched_at < ? LIMIT ?", (cutoff, batch))
            if not candidates:
                break
            async with self._lock:
                gone: list[str] = []
                async with self.db.write() as conn:
                    for row in candidates:
                        # Checked again inside the transaction: a reference may have been added since the select.
                        cur = await conn.execute(
                            "DELETE FROM blobs WHERE sha256 = ? AND refcount = 0 AND touched_at < ?",
                            (row["sha256"], cutoff))
                        if cur.rowcount:
                            gone.append(row["sha256"])
                            gone += await self._release_derived(conn, row["sha256"])
                        await cur.close()
                # Committed: now the files can go. A crash here leaves orphans for the scan below.
                await asyncio.to_thread(self._unlink_all, gone)
            deleted += len(gone)
            if len(candidates) < batch:
                break
        orphans, missing = await self._reconcile(cutoff)
        if deleted or orphans or missing:
            log.info("blob garbage collected", extra={"fields": {
                "deleted": deleted, "orphan_files": orphans, "missing_files": len(missing)}})
        return GarbageReport(deleted=deleted, orphan_files=orphans, missing_files=missing)

    async def remove_unreferenced(self, shas: Iterable[str]) -> int:
        """Remove these blobs now if nothing references them (a deleted track's files, a refused upload's bytes).

        Unlike collect_garbage there is no grace period: the caller knows these were just released. Blobs with a
        reference, or unknown ones, are left alone. Returns how many were removed. The removal runs as a task of
        its own, so it completes even when the caller is cancelled (a client that went away) while it waits.
        """
        shas = sorted({s for s in shas if _SHA256.match(s)})
        if not shas:
            return 0
        task = asyncio.get_running_loop().create_task(self._remove_unreferenced(shas))
        _removals.add(task)
        task.add_done_callback(_removals.discard)
        return await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def releasing(self, shas: Iterable[str] = ()) -> AsyncIterator[list[str]]:
        """The blobs a piece of work stores, kept in the list it yields (start it with what is already stored, add
        to it as more is): when the work ends, however it ends (a refusal, an error, a cancelled request), those
        that nothing references are removed. What a row took a reference on in the meantime stays."""
        stored = list(shas)
        try:
            yield stored
        finally:
            await self.remove_unreferenced(stored)

    async def _remove_unreferenced(self, shas: list[str]) -> int:
        async with self._lock:
            gone: list[str] = []
            async with self.db.write() as conn:
                for sha in shas:
                    cur = await conn.execute("DELETE FROM blobs WHERE sha256 = ? AND refcount = 0", (sha,))
                    if cur.rowcount:
                        gone.append(sha)
                        gone += await self._release_derived(conn, sha)
                    await cur.close()
            await asyncio.to_thread(self._unlink_all, gone)
        return len(gone)

    async def _release_derived(self, conn: aiosqlite.Connection, sha256: str) -> list[str]:
        """Inside the transaction that deletes blob `sha256`'s row: the cached transcodes made from it go too
        (plyrd.subsonic.transcode_cache), their references dropped; returns their blobs that nothing references any
        more, whose rows are deleted here, so their files go with the source's."""
        freed: list[str] = []
        for row in await fetchall(conn, "DELETE FROM transcodes WHERE source_sha256 = ? RETURNING blob_sha256",
                                  (sha256,)):
            derived = row[0]
            if await self.decref(conn, derived) == 0:
                cur = await conn.execute("DELETE FROM blobs WHERE sha256 = ? AND refcount = 0", (derived,))
                if cur.rowcount:
                    freed += [derived, *await self._release_derived(conn, derived)]
                await cur.close()
        return freed

    def _unlink_all(self, shas: list[str]) -> None:
        dirs: set[Path] = set()
        for sha in shas:
            path = self.path_for(sha)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                dirs.add(path.parent)
        for d in dirs:
            _fsync_dir(d)

    def _scan_files(self, cutoff: float) -> Iterator[tuple[str, Path]]:
        """(sha, path) of every file in the store older than `cutoff` (younger ones may be mid-ingest)."""
        if not self.root.is_dir():
            return
        for a in os.scandir(self.root):
            if not (a.is_dir() and len(a.name) == 2):
                continue
            for b in os.scandir(a.path):
                if not (b.is_dir() and len(b.name) == 2):
                    continue
                for f in os.scandir(b.path):
                    try:
                        # A link (an external blob) is looked at itself, never followed: a dangling one is still
                        # a name in the store, and removing it unlinks the link, never its target.
                        if (f.is_file(follow_symlinks=False) or f.is_symlink()) and \
                                f.stat(follow_symlinks=False).st_mtime < cutoff:
                            yield f.name, Path(f.path)
                    except FileNotFoundError:
                        continue

    async def _reconcile(self, cutoff: float) -> tuple[int, list[str]]:
        """Files without a row are removed; rows without a file are dropped when unreferenced, reported otherwise."""
        files = await asyncio.to_thread(lambda: list(self._scan_files(cutoff)))
        orphans = 0
        for i in range(0, len(files), 500):
            chunk = files[i:i + 500]
            async with self._lock:
                marks = ",".join("?" * len(chunk))
                known = {r["sha256"] for r in await self.db.fetchall(
                    f"SELECT sha256 FROM blobs WHERE sha256 IN ({marks})", [sha for sha, _ in chunk])}
                stray = [p for sha, p in chunk if sha not in known]
                # Under the lock no ingest can be adding a row for these right now; their mtime is past the grace.
                await asyncio.to_thread(_unlink_paths, stray)
            orphans += len(stray)

        missing: list[str] = []
        last = ""
        while True:
            rows = await self.db.fetchall(
                "SELECT sha256, refcount FROM blobs WHERE sha256 > ? AND created_at < ? ORDER BY sha256 LIMIT 500",
                (last, cutoff))
            if not rows:
                break
            last = rows[-1]["sha256"]
            absent = await asyncio.to_thread(
                lambda rows=rows: [(r["sha256"], r["refcount"]) for r in rows
                                   if not os.path.lexists(self.path_for(r["sha256"]))])
            if not absent:
                continue
            async with self._lock:
                # Checked again under the lock: the same bytes may have been stored again since the scan.
                absent = await asyncio.to_thread(
                    lambda absent=absent: [(s, n) for s, n in absent if not os.path.lexists(self.path_for(s))])
                async with self.db.write() as conn:
                    for sha, refcount in absent:
                        if refcount == 0:
                            await conn.execute("DELETE FROM blobs WHERE sha256 = ? AND refcount = 0", (sha,))
                        else:
                            log.error("blob file missing for a referenced blob",
                                      extra={"fields": {"sha256": sha, "refcount": refcount}})
            missing.extend(sha for sha, _ in absent)
        return orphans, missing


def _unlink_quietly(path: Path) -> None:
    """A fast metadata operation, done synchronously on purpose where it must survive cancellation."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _unlink_paths(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _copy_private(src: Path, dest: Path) -> None:
    """Copy `src` to a new 0600 file `dest` (replacing a leftover), fsynced."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
        os.fchmod(out.fileno(), 0o600)  # a leftover of an interrupted copy keeps its old mode through O_TRUNC
        shutil.copyfileobj(inp, out, FLUSH_BYTES)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dirs(dirs: set[Path]) -> None:
    """fsync many directories: side by side, since each one waits for a journal commit that the others can share
    (ext4: 250 in a row take ~0.5 s, in 16 threads ~0.05 s)."""
    _in_parallel(_fsync_dir, list(dirs))


def _in_parallel(fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """fn over items in up to 16 threads (for fsyncs, which mostly wait); the first error is raised."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(16, len(items)), thread_name_prefix="plyrd-fsync") as pool:
        for _ in pool.map(fn, items):
            pass


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
