"""The database layer on real SQLite files: pragmas, serialized writes, rollbacks, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from plyrd.db import Database, DatabaseError, MigrationError, latest_version, migrate
from plyrd.db.migrations import load_migrations


async def open_db(path: Path) -> Database:
    db = Database(path, busy_timeout_ms=1234, read_connections=2)
    await db.open()
    return db


async def test_pragmas(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "p.db")
    try:
        async with db.write() as conn:
            assert (await (await conn.execute("PRAGMA journal_mode")).fetchone())[0] == "wal"
            assert (await (await conn.execute("PRAGMA foreign_keys")).fetchone())[0] == 1
            assert (await (await conn.execute("PRAGMA busy_timeout")).fetchone())[0] == 1234
        async with db.read() as conn:
            assert (await (await conn.execute("PRAGMA foreign_keys")).fetchone())[0] == 1
            assert (await (await conn.execute("PRAGMA query_only")).fetchone())[0] == 1
            with pytest.raises(sqlite3.OperationalError):
                await conn.execute("INSERT INTO node_state VALUES ('x', 'y')")
    finally:
        await db.close()


async def test_concurrent_writes_are_serialized_and_all_land(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "w.db")
    await db.execute("INSERT INTO node_state VALUES ('counter', '0')")

    async def bump() -> None:
        # read-modify-write inside one transaction: lost updates would show if writes interleaved
        async with db.write() as conn:
            row = await (await conn.execute("SELECT value FROM node_state WHERE key='counter'")).fetchone()
            await asyncio.sleep(0)
            await conn.execute("UPDATE node_state SET value=? WHERE key='counter'", (str(int(row[0]) + 1),))

    await asyncio.gather(*(bump() for _ in range(50)))
    row = await db.fetchone("SELECT value FROM node_state WHERE key='counter'")
    assert row["value"] == "50"
    await db.close()


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "r.db")
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute("INSERT INTO node_state VALUES ('half', 'done')")
            raise RuntimeError("boom")
    assert await db.fetchone("SELECT * FROM node_state WHERE key='half'") is None
    # the writer is usable again
    assert await db.execute("INSERT INTO node_state VALUES ('whole', 'done')") == 1
    await db.close()


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == versions[-1]


async def test_database_made_by_migration_1_upgrades_to_newest(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == (0, 1)
    conn.execute("INSERT INTO users(did, handle, pds_url) VALUES ('did:plc:old', 'old.test', 'https://pds.test')")
    conn.close()

    db = await open_db(path)
    assert db.schema == (1, latest_version())
    row = await db.fetchone("SELECT handle, pds_url FROM users WHERE did='did:plc:old'")
    assert tuple(row) == ("old.test", "https://pds.test")
    async with db.read() as c:
        assert (await (await c.execute("PRAGMA user_version")).fetchone())[0] == latest_version()
        assert (await (await c.execute("PRAGMA integrity_check")).fetchone())[0] == "ok"
    await db.close()
    # opening again applies nothing
    db = await open_db(path)
    assert db.schema == (latest_version(), latest_version())
    await db.close()


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    migrate(conn, target=1)
    # Make the next step impossible: a clash with something a later migration creates would fail it, so simulate
    # by running migration 1 again over itself, which must fail and roll back entirely.
    from plyrd.db import migrations as m

    original = m.load_migrations
    try:
        broken = m.Migration(2, "broken", "CREATE TABLE t(x); CREATE TABLE users(x);")
        m.load_migrations = lambda: [*original()[:1], broken]
        with pytest.raises(MigrationError, match="0002_broken failed"):
            migrate(conn)
    finally:
        m.load_migrations = original
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='t'").fetchone()[0] == 0
    conn.close()


async def test_database_newer_than_plyrd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(MigrationError, match="newer than this plyrd"):
        await open_db(path)


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a database"):
        await open_db(path)


async def test_closing_waits_for_work_in_flight_and_fails_late_comers(tmp_path: Path) -> None:
    """aiosqlite never answers a query whose connection was closed under it: close must let in-flight work finish,
    and work arriving during or after the close must fail at once instead of hanging."""
    db = Database(tmp_path / "c.db", read_connections=2)
    await db.open()
    await db.execute("CREATE TABLE n(x)")
    await db.execute("INSERT INTO n WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)"
                     " SELECT i FROM c")
    slow = "SELECT count(*) FROM n a, n b WHERE a.x < 300 AND b.x < 300"
    reads = [asyncio.create_task(db.fetchone(slow)) for _ in range(6)]  # more than the pool: some wait
    await asyncio.sleep(0)
    async with asyncio.timeout(15):
        await db.close()
        results = await asyncio.gather(*reads, return_exceptions=True)
    for r in results:
        assert isinstance(r, DatabaseError) or r[0] == 299 * 299
    # The reads already running on the two reader connections finish with their answer; only late comers fail.
    assert sum(not isinstance(r, BaseException) for r in results) >= 2, results
    with pytest.raises(DatabaseError, match="closed"):
        await db.fetchone("SELECT 1")


def test_unsafe_avatars_stored_before_urls_were_checked_are_dropped(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plyrd.db")
    migrate(conn, target=13)
    hostile = ['https://x"onerror="alert(1)"a="', "javascript:alert(1)", "https://x/a b", "https://x/<p>",
               "https://x/\\y", "https://x/\x01", "http://plain.example/a.png"]
    kept = "https://cdn.example.com/a.png?v=2"
    for i, url in enumerate([*hostile, kept]):
        conn.execute("INSERT INTO users(did, handle, avatar_url) VALUES (?, ?, ?)", (f"did:plc:{i}", f"u{i}.x", url))
    conn.commit()
    migrate(conn)
    rows = dict(conn.execute("SELECT avatar_url, did FROM users WHERE avatar_url IS NOT NULL").fetchall())
    assert list(rows) == [kept]


async def test_a_cancelled_writer_never_leaves_the_connection_inside_a_transaction(tmp_path: Path) -> None:
    """A request whose client went away is cancelled wherever it is: while BEGIN runs, mid-transaction or while
    COMMIT runs. Every later write must still work, and only whole transactions may have landed."""
    db = Database(tmp_path / "w.db")
    await db.open()
    await db.execute("CREATE TABLE t(a INTEGER, b INTEGER)")

    async def pair(i: int) -> None:
        async with db.write() as conn:
            await conn.execute("INSERT INTO t VALUES (?, 1)", (i,))
            await conn.execute("INSERT INTO t VALUES (?, 2)", (i,))

    for i in range(60):
        task = asyncio.create_task(pair(i))
        for _ in range(i % 6):  # cancel at a different point of the transaction each time
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await db.execute("UPDATE t SET b = b WHERE a = -1") == 0  # a write still works
    rows = await db.fetchall("SELECT a, count(*) AS n FROM t GROUP BY a")
    assert all(r["n"] == 2 for r in rows), [tuple(r) for r in rows]  # whole transactions or nothing
    await db.close()


async def test_write_fn_runs_a_transaction_as_one_function_and_rolls_back_when_it_raises(tmp_path: Path) -> None:
    from plyrd.db.queries import one

    db = await open_db(tmp_path / "fn.db")
    try:
        def bump(conn: sqlite3.Connection, by: int) -> int:
            assert conn.in_transaction  # BEGIN IMMEDIATE came first
            conn.execute("INSERT INTO node_state VALUES ('n', '0') ON CONFLICT(key) DO NOTHING")
            conn.execute("UPDATE node_state SET value = CAST(value AS INTEGER) + ? WHERE key = 'n'", (by,))
            return int(one(conn, "SELECT value FROM node_state WHERE key = 'n'")[0])

        assert await asyncio.gather(*(db.write_fn(bump, 1) for _ in range(20))) != []
        assert await db.write_fn(bump, 0) == 20  # every one landed, one at a time

        def half_done(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE node_state SET value = '999' WHERE key = 'n'")
            raise ValueError("changed my mind")

        with pytest.raises(ValueError):
            await db.write_fn(half_done)
        assert await db.read_fn(lambda c: one(c, "SELECT value FROM node_state WHERE key = 'n'")[0]) == "20"

        # A caller cancelled mid-transaction: the function still finishes (here: commits) before the next one.
        slow = asyncio.ensure_future(db.write_fn(lambda c: (c.execute("SELECT 1"), bump(c, 5))))
        await asyncio.sleep(0)
        slow.cancel()
        assert await db.write_fn(bump, 0) in (20, 25)
        async with db.write() as conn:  # and the async form still works beside it
            assert not (await conn.execute_fetchall("SELECT 1 WHERE 0"))
    finally:
        await db.close()


async def test_read_fn_sees_one_snapshot_and_cannot_write(tmp_path: Path) -> None:
    from plyrd.db.queries import rows

    db = await open_db(tmp_path / "snap.db")
    try:
        def read_twice(conn: sqlite3.Connection) -> tuple[int, int]:
            first = len(rows(conn, "SELECT * FROM node_state"))
            # Another connection commits between the two reads; this function's snapshot does not move.
            other = sqlite3.connect(tmp_path / "snap.db")
            other.execute("INSERT INTO node_state VALUES ('other', 'x')")
            other.commit()
            other.close()
            return first, len(rows(conn, "SELECT * FROM node_state"))

        first, second = await db.read_fn(read_twice)
        assert first == second
        with pytest.raises(sqlite3.OperationalError):
            await db.read_fn(lambda c: c.execute("INSERT INTO node_state VALUES ('y', 'z')"))
    finally:
        await db.close()
