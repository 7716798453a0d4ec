"""`plyrd backup PATH`: a consistent copy of a node, taken while it runs.

The database is copied with SQLite's online backup API (a transactionally consistent snapshot even while the node
writes), checked with `PRAGMA integrity_check`, then moved into place. Blobs are copied after the snapshot: they are
written before the rows that name them and never change, so every blob the snapshot refers to is already on disk,
and files already in the backup are skipped, which makes repeated backups into one directory incremental.

External blobs (the music folder's files, plyrd.library) are symbolic links in blobs/: the backup holds the link as
it is (pointing at the same file), never a copy of the collection, which is the owner's to back up.

A backup holds the node's secrets: what it writes is its user's alone (files 0600, directories 0700).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_FILENAME, Config
from .db.database import create_private
from .keys import SECRETS_FILENAME

PAGES_PER_STEP = 1024  # copy in steps so the running node's writers are never blocked for long


class BackupError(Exception):
    pass


@dataclass
class BackupReport:
    dest: Path
    db_bytes: int
    blobs_copied: int
    blobs_skipped: int
    blob_bytes: int
    seconds: float
    links: int = 0  # external blobs (music folder files) kept as links, not copied


def _copy_db(src_path: Path, dest_path: Path) -> int:
    partial = dest_path.with_name(dest_path.name + ".partial")
    partial.unlink(missing_ok=True)
    create_private(partial)  # SQLite would make it 0644 under the usual umask
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst, pages=PAGES_PER_STEP, sleep=0.005)
        # The copy is a rollback-journal database that needs nothing beside it to be opened.
        dst.execute("PRAGMA journal_mode = DELETE")
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise BackupError(f"the copied database failed its integrity check: {result}")
    finally:
        dst.close()
        src.close()
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, dest_path)
    return dest_path.stat().st_size


def _copy_file(src: Path, dst: Path) -> None:
    """Copy into a new 0600 file (whatever the source's mode), fsynced, then renamed into place."""
    tmp = dst.with_name(f".{dst.name}.partial")
    tmp.unlink(missing_ok=True)
    create_private(tmp)
    try:
        shutil.copyfile(src, tmp)  # writes into the existing file, which keeps its mode
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_link(src: Path, dst: Path) -> None:
    """The same symbolic link at `dst` (replacing one that points elsewhere)."""
    target = os.readlink(src)
    try:
        if os.readlink(dst) == target:
            return
    except OSError:
        pass
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, dst)


def _mkdirs_private(root: Path, rel: Path) -> None:
    """root/rel's directories, each created 0700 (existing ones are left as they are)."""
    d = root
    d.mkdir(mode=0o700, exist_ok=True)
    for part in rel.parts:
        d = d / part
        d.mkdir(mode=0o700, exist_ok=True)


def backup(config: Config, dest: Path) -> BackupReport:
    started = time.monotonic()
    src_db = config.db_path
    if not src_db.is_file():
        raise BackupError(f"no database at {src_db}: is the data directory right? (--data or PLYRD_DATA)")
    dest = dest.expanduser().resolve()
    if dest == config.data_dir or config.data_dir in dest.parents:
        raise BackupError("the backup must go outside the data directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)

    db_bytes = _copy_db(src_db, dest / "plyrd.db")

    copied = skipped = blob_bytes = links = 0
    if config.blobs_dir.is_dir():
        for src in config.blobs_dir.rglob("*"):
            if src.name.startswith("."):
                continue
            target = dest / "blobs" / src.relative_to(config.blobs_dir)
            if src.is_symlink():  # an external blob: the link itself, never the file it names
                _mkdirs_private(dest / "blobs", target.parent.relative_to(dest / "blobs"))
                _copy_link(src, target)
                links += 1
                continue
            if not src.is_file():
                continue
            size = src.stat().st_size
            # Blobs are named by their hash and never change: same name and size means same bytes.
            if target.is_file() and target.stat().st_size == size:
                skipped += 1
                continue
            _mkdirs_private(dest / "blobs", target.parent.relative_to(dest / "blobs"))
            _copy_file(src, target)
            copied += 1
            blob_bytes += size

    # Without the secrets, encrypted OAuth tokens in the copy could never be read again.
    for name in (SECRETS_FILENAME, CONFIG_FILENAME):
        if (config.data_dir / name).is_file():
            _copy_file(config.data_dir / name, dest / name)
    if config.source and config.source.is_file() and config.source.parent != config.data_dir:
        _copy_file(config.source, dest / CONFIG_FILENAME)

    return BackupReport(dest, db_bytes, copied, skipped, blob_bytes, time.monotonic() - started, links)
