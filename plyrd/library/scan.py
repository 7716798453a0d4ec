"""Walking a music folder and telling what changed since the last scan, without opening unchanged files.

`walk` lists a folder's files in exactly the order SQLite sorts their '/'-separated relative paths (BINARY, which is
UTF-8 byte order, which is code point order), one directory at a time: `diff` can then merge that stream with
library_files read in pages in the same order, so a scan holds one directory listing per level and one page of rows,
never every path. Each file is compared by (size, mtime_ns) only: an unchanged file is not opened.

Hidden files and directories (a leading dot) are skipped; symbolic links are followed, each directory once (a link
back up the tree, or two links to one place, cannot make a loop or a duplicate); images are left out (they are covers,
read by plyrd.library.catalog when an album needs one).
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..db import Database

# Files that are never tracks and never worth an error line: covers and the images beside them.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
PAGE = 1000  # library_files rows read per query while merging
CHUNK = 500  # walked files handed over per thread hop


@dataclass(frozen=True, slots=True)
class Seen:
    """A file found by the walk."""

    rel: str  # '/'-separated, relative to the folder
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Known:
    """A library_files row."""

    id: int
    rel: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    track_id: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """A file to read: `known` is its row when the path was scanned before (then its size or mtime differs)."""

    seen: Seen
    known: Known | None


def _sort_key(entry: os.DirEntry[str], is_dir: bool) -> str:
    # A directory's files all sort as "name/...": placing it by "name/" keeps the whole walk in string order
    # ("a-b" < "a/x" < "a0" because '-' < '/' < '0').
    return entry.name + "/" if is_dir else entry.name


def _valid_name(name: str) -> bool:
    """A name SQLite can store as text: no surrogates from bytes that are not UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def walk(root: Path, prefix: str = "", *, skip: Path | None = None) -> Iterator[Seen]:
    """Every file under root/prefix (a directory or one file; prefix '' is the whole folder), in rel_path order.
    `skip`: a directory never entered (the node's data directory, should a folder hold it)."""
    start = root / prefix if prefix else root
    if prefix and any(part.startswith(".") for part in prefix.split("/")):
        return
    try:
        st = os.stat(start)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        if Path(prefix).suffix.lower() not in IMAGE_EXTENSIONS:
            yield Seen(prefix, st.st_size, st.st_mtime_ns)
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    visited = {(st.st_dev, st.st_ino)}
    if skip is not None:
        try:
            other = os.stat(skip)
            visited.add((other.st_dev, other.st_ino))
        except OSError:
            pass
    yield from _walk_dir(start, prefix, visited)


def _walk_dir(path: Path, rel: str, visited: set[tuple[int, int]]) -> Iterator[Seen]:
    try:
        with os.scandir(path) as it:
            listed = []
            for entry in it:
                if entry.name.startswith(".") or not _valid_name(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows a link; a dangling one is neither a dir nor a file
                except OSError:
                    continue
                listed.append((_sort_key(entry, is_dir), entry, is_dir))
    except OSError:
        return  # unreadable directory: its files are not seen (and not counted as gone: see diff)
    listed.sort(key=lambda x: x[0])
    for _, entry, is_dir in listed:
        child = f"{rel}/{entry.name}" if rel else entry.name
        try:
            st = entry.stat()  # follows links
        except OSError:
            continue
        if is_dir:
            key = (st.st_dev, st.st_ino)
            if key in visited:
                continue
            visited.add(key)
            yield from _walk_dir(Path(entry.path), child, visited)
        elif stat.S_ISREG(st.st_mode) and os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
            yield Seen(child, st.st_size, st.st_mtime_ns)


def _chunks(it: Iterator[Seen]) -> Iterator[list[Seen]]:
    chunk: list[Seen] = []
    for seen in it:
        chunk.append(seen)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _scope_sql(prefix: str) -> tuple[str, tuple[str, ...]]:
    """Rows at or under `prefix` ('' for all): the file itself, or rel_path in ("prefix/", "prefix0")."""
    if not prefix:
        return "1", ()
    return "(rel_path = ? OR (rel_path > ? AND rel_path < ?))", (prefix, prefix + "/", prefix + "0")


async def _known_rows(db: Database, folder_id: int, prefix: str) -> AsyncIterator[Known]:
    scope, params = _scope_sql(prefix)
    last = ""
    first = True
    while True:
        rows = await db.fetchall(
            "SELECT id, rel_path, size, mtime_ns, fingerprint, track_id, error FROM library_files"
            f" WHERE folder_id = ? AND {'rel_path >= ?' if first else 'rel_path > ?'} AND {scope}"
            " ORDER BY rel_path LIMIT ?", (folder_id, last, *params, PAGE))
        first = False
        for r in rows:
            yield Known(r["id"], r["rel_path"], r["size"], r["mtime_ns"], r["fingerprint"], r["track_id"], r["error"])
        if len(rows) < PAGE:
            return
        last = rows[-1]["rel_path"]


async def count_known(db: Database, folder_id: int, prefix: str = "") -> int:
    scope, params = _scope_sql(prefix)
    row = await db.fetchone(f"SELECT count(*) FROM library_files WHERE folder_id = ? AND {scope}", (folder_id, *params))
    return int(row[0]) if row else 0


async def walked(root: Path, prefix: str = "", *, skip: Path | None = None) -> AsyncIterator[list[Seen]]:
    """`walk` in a thread, a chunk of files per hop, so the event loop never waits on the disk."""
    import asyncio

    chunks = _chunks(walk(root, prefix, skip=skip))
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk


@dataclass
class Diff:
    """What `diff` yields, one of: a file to read (`change`), a count of unchanged files, a row whose file is gone."""

    change: Change | None = None
    unchanged: int = 0
    unchanged_errors: int = 0  # of the unchanged, files already known not to be tracks
    gone: Known | None = None


async def diff(db: Database, folder_id: int, root: Path, prefix: str = "", *,
               skip: Path | None = None) -> AsyncIterator[Diff]:
    """Merge the walk with library_files: new and changed files, unchanged ones (counted), rows not found on disk.

    A row is "gone" only as far as this walk saw (an unreadable directory hides its files): the caller checks again
    that the file is absent before removing anything.
    """
    rows = _known_rows(db, folder_id, prefix)
    known = await anext(rows, None)
    async for chunk in walked(root, prefix, skip=skip):
        same = same_errors = 0
        for seen in chunk:
            while known is not None and known.rel < seen.rel:
                yield Diff(gone=known)
                known = await anext(rows, None)
            if known is not None and known.rel == seen.rel:
                if known.size == seen.size and known.mtime_ns == seen.mtime_ns:
                    same += 1
                    same_errors += known.error is not None
                else:
                    yield Diff(change=Change(seen, known))
                known = await anext(rows, None)
            else:
                yield Diff(change=Change(seen, None))
        if same:
            yield Diff(unchanged=same, unchanged_errors=same_errors)
    while known is not None:
        yield Diff(gone=known)
        known = await anext(rows, None)
