"""File modes: the data directory is 0700 and everything the node writes is 0600 (directories 0700), whatever the umask.

Every test runs under umask 022 (the usual default, which would leave files 0644 and directories 0755), set in this
process and so inherited by the `plyrd` subprocesses it starts.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env, start_node

from plyrd import storage
from plyrd.db import Database
from plyrd.storage import BlobStore


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, str]:
    """Every entry under `root` (and root itself, as "."), with its mode in octal; symlinks are not followed."""
    found = {".": oct(mode(root))}
    for p in sorted(root.rglob("*")):
        if not p.is_symlink():
            found[str(p.relative_to(root))] = oct(mode(p))
    return found


def assert_private(root: Path) -> None:
    """root and every directory under it 0700, every file 0600."""
    wrong = {name: m for name, m in modes(root).items()
             if m != ("0o700" if (root / name).is_dir() else "0o600")}
    assert not wrong, f"not private under {root}: {wrong}"


def plyrd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "plyrd", *args], cwd=cwd, env=clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def put_blob_file(data_dir: Path, data: bytes, file_mode: int = 0o644, dir_mode: int = 0o755) -> Path:
    """A blob as an older plyrd (or a file copied in by hand) may have left it."""
    sha = hashlib.sha256(data).hexdigest()
    path = data_dir / "blobs" / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(file_mode)
    path.parent.chmod(dir_mode)
    path.parent.parent.chmod(dir_mode)
    return path


def test_init_then_serve_keep_everything_private(tmp_path: Path) -> None:
    data = tmp_path / "plyrd-data"
    plyrd("init", "--data", str(data), cwd=tmp_path)
    assert mode(data) == 0o700
    assert mode(data / "config.toml") == 0o600

    node = start_node(["--data", str(data)], cwd=tmp_path)
    try:
        wait_for(data / "search.db")
        for name in ("plyrd.db", "plyrd.db-wal", "plyrd.db-shm", "search.db"):
            assert (data / name).exists(), name
        assert (data / "blobs").is_dir() and (data / "tmp").is_dir()
        assert_private(data)
    finally:
        assert node.stop() == 0
    assert_private(data)


def test_serve_on_a_fresh_directory_keeps_everything_private(tmp_path: Path) -> None:
    node = start_node([], cwd=tmp_path)
    data = node.data
    try:
        wait_for(data / "search.db")
        assert (data / "secrets.toml").is_file()
        assert_private(data)
    finally:
        assert node.stop() == 0
    assert_private(data)


def test_serve_tightens_a_data_directory_left_open_by_an_older_version(tmp_path: Path) -> None:
    data = tmp_path / "plyrd-data"
    node = start_node([], cwd=tmp_path)
    wait_for(data / "search.db")
    assert node.stop() == 0
    blob = put_blob_file(data, b"an old blob")
    (data / "config.toml").write_text("[log]\nlevel = \"info\"\n")
    # Someone's file kept elsewhere and linked in: not the node's to change.
    outside = tmp_path / "shared.txt"
    outside.write_text("not plyrd's")
    outside.chmod(0o644)
    (data / "notes.txt").symlink_to(outside)
    for p in [data, *data.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert mode(data) == 0o755 and mode(data / "plyrd.db") == 0o644 and mode(blob) == 0o644

    node = start_node([], cwd=tmp_path)
    try:
        wait_for(data / "plyrd.db-wal")
        assert_private(data)
        assert mode(blob) == 0o600 and mode(blob.parent) == 0o700 and mode(blob.parent.parent) == 0o700
        assert mode(outside) == 0o644
    finally:
        assert node.stop() == 0


def test_migrate_and_reindex_write_private_files(tmp_path: Path) -> None:
    data = tmp_path / "plyrd-data"
    plyrd("migrate", "--data", str(data), cwd=tmp_path)
    assert mode(data) == 0o700 and mode(data / "plyrd.db") == 0o600
    plyrd("reindex", "--data", str(data), cwd=tmp_path)
    assert (data / "search.db").is_file()
    assert_private(data)


def test_backup_writes_a_private_copy(tmp_path: Path) -> None:
    data = tmp_path / "plyrd-data"
    node = start_node([], cwd=tmp_path)
    wait_for(data / "search.db")
    try:
        # Blobs left readable by an older version are still copied as 0600 into 0700 shard directories.
        put_blob_file(data, b"blob one")
        put_blob_file(data, b"blob two", file_mode=0o600, dir_mode=0o700)
        dest = tmp_path / "backup"
        plyrd("backup", "--data", str(data), str(dest), cwd=tmp_path)
    finally:
        assert node.stop() == 0
    assert (dest / "plyrd.db").is_file() and (dest / "secrets.toml").is_file()
    assert len([p for p in (dest / "blobs").rglob("*") if p.is_file()]) == 2
    assert_private(dest)


async def test_database_open_creates_private_files(tmp_path: Path) -> None:
    db = Database(tmp_path / "data" / "plyrd.db")
    await db.open()
    try:
        await db.execute("INSERT INTO node_state(key, value) VALUES ('mode-test', '1')")
        assert (tmp_path / "data" / "plyrd.db-wal").exists() and (tmp_path / "data" / "plyrd.db-shm").exists()
        assert_private(tmp_path / "data")
    finally:
        await db.close()


async def test_blob_store_writes_private_blobs_and_shards(tmp_path: Path, db: Database) -> None:
    store = BlobStore(tmp_path / "store" / "blobs", tmp_path / "store" / "tmp", db)
    (tmp_path / "store").mkdir(mode=0o700)
    blob = await store.put_bytes(b"some audio, say", "audio/mpeg")
    assert blob.path.is_file()

    # A file made in tmp/ by other code (a transcoder's output) under the umask is 0644 until it is ingested.
    tmp = store.tmp / "render-test.mp3"
    tmp.write_bytes(b"rendered bytes")
    assert mode(tmp) == 0o644
    rendered = await store.ingest(tmp, mime="audio/mpeg")
    assert rendered.path.is_file()
    assert_private(tmp_path / "store")


async def test_blob_store_keeps_blobs_private_across_file_systems(tmp_path: Path, db: Database,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "store" / "blobs", tmp_path / "store" / "tmp", db)
    (tmp_path / "store").mkdir(mode=0o700)
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(src)).parent == store.tmp:  # as if tmp/ were on another file system
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(storage.os, "rename", rename)
    blob = await store.put_bytes(b"copied, not renamed", "audio/mpeg")
    assert blob.path.read_bytes() == b"copied, not renamed"
    assert_private(tmp_path / "store")


async def test_in_process_node_keeps_its_data_directory_private(tmp_path: Path) -> None:
    from conftest import free_port

    from plyrd.app import create_app
    from plyrd.config import load_config

    data = tmp_path / "data"
    config = load_config(env={}, overrides={"storage.data_dir": str(data), "server.port": free_port()})
    app = create_app(config)
    async with app.test_app():
        node = app.extensions["plyrd"]
        await node.blobs.put_bytes(b"cover art, say", "image/png")
        deadline = time.monotonic() + 10
        while not (data / "search.db").exists():
            assert time.monotonic() < deadline
            import asyncio
            await asyncio.sleep(0.05)
        assert_private(data)
    assert os.umask(0o022) == 0o022  # the library never changed the test process's umask
    assert_private(data)


def test_the_plyrd_command_runs_with_umask_077_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from plyrd import cli

    seen: list[int] = []

    def probe(args: object) -> int:
        seen.append(os.umask(0o077))
        return 0

    for name in ("serve", "init", "migrate", "reindex"):
        monkeypatch.setitem(cli.COMMANDS, name, probe)
        assert cli.main([name]) == 0
    monkeypatch.setitem(cli.COMMANDS, "backup", probe)
    assert cli.main(["backup", "somewhere"]) == 0
    assert seen == [0o077] * 5
    assert os.umask(0o022) == 0o022  # main() gave its caller's umask back


def test_a_private_data_directory_is_not_walked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plyrd import node

    data = tmp_path / "data"
    put_blob_file(data, b"old")
    data.chmod(0o755)
    walked: list[object] = []
    real_walk = os.walk
    monkeypatch.setattr(node.os, "walk", lambda top, *a, **k: walked.append(top) or real_walk(top, *a, **k))
    node.make_private(data)
    assert mode(data) == 0o700 and walked
    assert_private(data)
    walked.clear()
    node.make_private(data)
    assert walked == []
