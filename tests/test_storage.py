"""BlobStore on real files and a real SQLite database: layout, dedup, streaming writes, refcounts, GC, crashes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from plyrd import errors
from plyrd.db import Database
from plyrd.storage import FLUSH_BYTES, BlobStore


@pytest.fixture
def store(tmp_path: Path, db: Database) -> BlobStore:
    return BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


async def row(db: Database, sha: str):
    return await db.fetchone("SELECT * FROM blobs WHERE sha256 = ?", (sha,))


async def test_put_bytes_layout_and_row(store: BlobStore, db: Database, tmp_path: Path) -> None:
    data = b"hello plyrd"
    sha = hashlib.sha256(data).hexdigest()
    blob = await store.put_bytes(data, "text/plain")
    assert blob.sha256 == sha and blob.size == len(data) and blob.mime == "text/plain"
    assert blob.path == tmp_path / "blobs" / sha[:2] / sha[2:4] / sha == store.path_for(sha)
    assert blob.path.read_bytes() == data
    r = await row(db, sha)
    assert r["size"] == len(data) and r["refcount"] == 0 and r["mime"] == "text/plain"
    assert files_under(tmp_path / "tmp") == []


async def test_identical_bytes_stored_once(store: BlobStore, tmp_path: Path, db: Database) -> None:
    a = await store.put_bytes(b"same bytes", "audio/flac")
    b = await store.put_bytes(b"same bytes", "audio/mpeg")
    assert a.path == b.path and b.mime == "audio/flac"  # the first mime stays
    assert len(files_under(tmp_path / "blobs")) == 1
    assert (await db.fetchone("SELECT count(*) FROM blobs"))[0] == 1
    assert files_under(tmp_path / "tmp") == []


async def test_streaming_writer_hashes_large_input(store: BlobStore, tmp_path: Path) -> None:
    h = hashlib.sha256()
    total = 0
    async with await store.open_writer() as w:
        for i in range(40):  # 40 x 100 KiB crosses several FLUSH_BYTES boundaries
            chunk = os.urandom(100 * 1024) if i % 2 else bytes([i]) * (100 * 1024)
            h.update(chunk)
            total += len(chunk)
            await w.write(chunk)
        assert any(files_under(tmp_path / "tmp"))
        blob = await w.commit("audio/wav")
    assert total > 3 * FLUSH_BYTES
    assert blob.sha256 == h.hexdigest() and blob.size == total
    assert hashlib.sha256(blob.path.read_bytes()).hexdigest() == blob.sha256
    assert files_under(tmp_path / "tmp") == []


async def test_writer_tells_its_digest_before_commit(store: BlobStore, tmp_path: Path) -> None:
    """What a caller checks bytes against before they enter the store (a blob CID's digest): nothing is stored yet,
    and writing or committing after it goes on as before; a refused one is aborted and leaves nothing."""
    first, rest = os.urandom(300 * 1024), b"tail" * 1000
    async with await store.open_writer() as w:
        await w.write(first)
        assert await w.digest() == hashlib.sha256(first).hexdigest()
        assert files_under(tmp_path / "blobs") == []
        await w.write(rest)
        assert await w.digest() == hashlib.sha256(first + rest).hexdigest()
        blob = await w.commit()
    assert blob.sha256 == hashlib.sha256(first + rest).hexdigest()
    with pytest.raises(RuntimeError):
        await w.digest()
    async with await store.open_writer() as refused:
        await refused.write(b"not what the cid names")
        await refused.digest()
        refused.abort()
    assert files_under(tmp_path / "tmp") == []


async def test_writer_abort_and_exception_remove_temp(store: BlobStore, tmp_path: Path) -> None:
    w = await store.open_writer()
    await w.write(b"x" * (FLUSH_BYTES + 10))
    w.abort()
    w.abort()  # idempotent
    assert files_under(tmp_path / "tmp") == []
    with pytest.raises(RuntimeError):
        async with await store.open_writer() as w2:
            await w2.write(b"partial")
            raise RuntimeError("client went away")
    assert files_under(tmp_path / "tmp") == []
    assert files_under(tmp_path / "blobs") == []


async def test_writer_max_bytes(store: BlobStore, tmp_path: Path) -> None:
    w = await store.open_writer(max_bytes=FLUSH_BYTES + 5)
    await w.write(b"a" * FLUSH_BYTES)
    await w.write(b"a" * 5)
    with pytest.raises(errors.TooLarge):
        await w.write(b"a")
    assert files_under(tmp_path / "tmp") == []


async def test_writer_cancelled_mid_flush_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    w = await store.open_writer()

    async def write_forever() -> None:
        while True:
            await w.write(os.urandom(FLUSH_BYTES))

    task = asyncio.create_task(write_forever())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    w.abort()
    await asyncio.sleep(0.2)  # a thread still writing closes the descriptor when it finishes
    assert files_under(tmp_path / "tmp") == []


async def test_ingest_moves_a_file_in(store: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    src = tmp_path / "tmp" / "rendition.mp3"
    src.write_bytes(b"mp3 bytes" * 1000)
    blob = await store.ingest(src, mime="audio/mpeg")
    assert not src.exists()
    assert blob.sha256 == hashlib.sha256(b"mp3 bytes" * 1000).hexdigest()
    assert blob.path.read_bytes() == b"mp3 bytes" * 1000
    # again with a known hash, for bytes already stored: the source is dropped, the blob shared
    src.write_bytes(b"mp3 bytes" * 1000)
    again = await store.ingest(src, mime="audio/mpeg", sha256=blob.sha256)
    assert again == blob and not src.exists()


async def test_path_for_refuses_non_digests(store: BlobStore) -> None:
    for bad in ("../../etc/passwd", "A" * 64, "ab" * 31, "g" * 64):
        with pytest.raises(errors.InvalidInput):
            store.path_for(bad)


async def test_refcounts_inside_caller_transaction(store: BlobStore, db: Database) -> None:
    blob = await store.put_bytes(b"track audio")
    async with db.write() as conn:
        assert await store.incref(conn, blob.sha256) == 1
        assert await store.incref(conn, blob.sha256) == 2
    # a rolled-back transaction rolls the count back too
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await store.decref(conn, blob.sha256)
            raise RuntimeError("abandon")
    assert (await row(db, blob.sha256))["refcount"] == 2
    async with db.write() as conn:
        assert await store.decref(conn, blob.sha256) == 1
        assert await store.decref(conn, blob.sha256) == 0
        with pytest.raises(errors.Conflict):
            await store.decref(conn, blob.sha256)
    async with db.write() as conn:
        with pytest.raises(errors.NotFound):
            await store.incref(conn, "0" * 64)


async def test_garbage_collection(store: BlobStore, db: Database, tmp_path: Path) -> None:
    kept = await store.put_bytes(b"referenced")
    young = await store.put_bytes(b"just uploaded, not referenced yet")
    old = await store.put_bytes(b"unreferenced for a long time")
    async with db.write() as conn:
        await store.incref(conn, kept.sha256)
    await db.execute("UPDATE blobs SET touched_at = touched_at - 7200 WHERE sha256 IN (?, ?)",
                     (kept.sha256, old.sha256))

    report = await store.collect_garbage(grace=3600)
    assert report.deleted == 1
    assert not old.path.exists() and await row(db, old.sha256) is None
    assert kept.path.exists() and young.path.exists()  # referenced / within the grace period
    assert await row(db, young.sha256) is not None

    # once the last reference goes and the grace passes, it is collected too
    async with db.write() as conn:
        await store.decref(conn, kept.sha256)
    assert (await store.collect_garbage(grace=3600)).deleted == 0
    assert (await store.collect_garbage(grace=0)).deleted == 2
    assert files_under(tmp_path / "blobs") == []


async def test_gc_reconciles_orphan_files_and_missing_files(store: BlobStore, db: Database) -> None:
    # A crash after the rename but before the row: a file without a row.
    orphan_bytes = b"file whose row never committed"
    orphan = store.path_for(hashlib.sha256(orphan_bytes).hexdigest())
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(orphan_bytes)
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    # Rows whose file vanished: one unreferenced (dropped), one referenced (reported, kept).
    gone = await store.put_bytes(b"gone, unreferenced")
    lost = await store.put_bytes(b"gone, referenced")
    async with db.write() as conn:
        await store.incref(conn, lost.sha256)
    gone.path.unlink()
    lost.path.unlink()
    await db.execute("UPDATE blobs SET created_at = created_at - 7200")

    report = await store.collect_garbage(grace=3600)
    assert report.orphan_files == 1 and not orphan.exists()
    assert sorted(report.missing_files) == sorted([gone.sha256, lost.sha256])
    assert await row(db, gone.sha256) is None
    assert (await row(db, lost.sha256))["refcount"] == 1


async def test_reingest_adopts_an_orphan_file(store: BlobStore, db: Database) -> None:
    data = b"renamed, then the node died"
    sha = hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    blob = await store.put_bytes(data)
    assert blob.path == path and (await row(db, sha)) is not None
    assert (await store.collect_garbage(grace=3600)).orphan_files == 0 and path.exists()


async def test_gc_racing_reingest_never_loses_the_file(store: BlobStore, db: Database) -> None:
    """Collection and re-ingest of the same bytes, interleaved many times: a row must always have its file."""
    data = b"contended bytes"
    for _ in range(30):
        await store.put_bytes(data)
        await db.execute("UPDATE blobs SET touched_at = touched_at - 7200")
        results = await asyncio.gather(store.collect_garbage(grace=3600), store.put_bytes(data))
        r = await row(db, results[1].sha256)
        assert r is None or results[1].path.exists()


async def test_cleanup_tmp(store: BlobStore, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "blob-old").write_bytes(b"x")
    (tmp / "dir").mkdir()
    (tmp / "dir" / "f").write_bytes(b"y")
    (tmp / "blob-fresh").write_bytes(b"z")
    old = time.time() - 7200
    os.utime(tmp / "blob-old", (old, old))
    assert store.cleanup_tmp(older_than=3600) == 1
    assert sorted(p.name for p in tmp.iterdir()) == ["blob-fresh", "dir"]
    assert store.cleanup_tmp() == 2
    assert list(tmp.iterdir()) == []


async def test_a_writer_cancelled_while_its_file_is_made_leaves_nothing_in_tmp(db, tmp_path: Path) -> None:
    """A request cancelled at once (its client gone) may be cancelled while the temporary file is being created in
    a thread: the file still appears, and must be removed."""
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    for delay in range(4):
        task = asyncio.create_task(store.open_writer())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        result = await asyncio.gather(task, return_exceptions=True)
        if not isinstance(result[0], BaseException):
            result[0].abort()  # it finished before the cancel: the caller's own abort applies
    await asyncio.sleep(0.2)  # the threads that were making files have finished
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_a_commit_cancelled_while_the_file_moves_leaves_no_file_without_its_row(db, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    for delay in range(80):
        writer = await store.open_writer()
        await writer.write(os.urandom(3000))
        task = asyncio.create_task(writer.commit("application/octet-stream"))
        for _ in range(delay):  # cancel at a different step of the commit each time
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.abort()  # what its owner does on the way out (a task cancelled before it ran never started commit)
    await asyncio.sleep(0.2)
    files = {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
    rows = {r["sha256"] for r in await db.fetchall("SELECT sha256 FROM blobs")}
    assert files == rows, (files, rows)  # every file has its row (committed ones the commit finished) and no strays
    assert list((tmp_path / "tmp").iterdir()) == []
