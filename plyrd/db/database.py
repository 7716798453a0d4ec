"""aiosqlite connections to plyrd.db: one writer (writes serialized) and a few read-only readers.

SQLite allows one writer at a time anyway; funnelling writes through one connection and an asyncio lock turns
lock contention into a fair queue instead of SQLITE_BUSY retries, while WAL lets readers run beside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .migrations import migrate

log = logging.getLogger("plyrd.db")

T = TypeVar("T")


def on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> Any:
    """Run `fn(connection, *args)` on an aiosqlite connection's own thread: one hop, however many statements `fn`
    runs. `fn` is a plain function given the stdlib sqlite3 connection (it must not touch the event loop). Awaitable.

    aiosqlite has no public call for this: `_execute` is what its own methods use (pinned in pyproject)."""
    return conn._execute(fn, conn._conn, *args)


def _transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """BEGIN IMMEDIATE, `fn`, COMMIT, all on the writer's thread; ROLLBACK when anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


class DatabaseError(Exception):
    """The database cannot be opened or used."""


def create_private(path: Path) -> None:
    """Create `path` as an empty file readable by its owner only (0600), unless it already exists.

    Call it before SQLite opens a new database: SQLite would create the file 0644 under the usual umask, and it
    gives the database's -wal, -shm and -journal files the database file's own mode. An empty file is a valid
    empty database. An existing file is left as it is (a data directory made by an older plyrd is tightened by
    `plyrd.node.make_private`).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


async def _settled(statement: Any) -> Any:
    """Await a statement that must not be left half done: BEGIN, COMMIT, ROLLBACK.

    A request whose client goes away is cancelled, but the statement it was awaiting still runs on the connection's
    thread. Returning early would let the next transaction begin while this one is still open ("cannot start a
    transaction within a transaction" for every write after it). So wait for the statement whatever happens, then
    pass the cancellation on."""
    task = asyncio.ensure_future(statement)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    result = task.result()
    if cancelled:
        raise asyncio.CancelledError
    return result


def _snapshot(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn`'s reads in one read transaction (one snapshot of the database, as a request expects of its reads)."""
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


async def _roll_back_if_open(writer: aiosqlite.Connection) -> None:
    if writer.in_transaction:
        await _settled(writer.execute("ROLLBACK"))


class Database:
    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, read_connections: int = 2) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.read_connections = read_connections
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection | None] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._write_lock = asyncio.Lock()
        self.schema: tuple[int, int] = (0, 0)  # (version found, version now) from the last open

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        uri = f"file:{self.path}?mode={'ro' if readonly else 'rwc'}"
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    def _migrate(self) -> tuple[int, int]:
        """Switch to WAL and apply migrations on a short-lived connection, before the pool exists."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return migrate(conn)
        finally:
            conn.close()

    async def open(self) -> None:
        """Open the writer, bring the schema up to date, then open the readers."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private(self.path)
        try:
            self.schema = await asyncio.to_thread(self._migrate)
            self._writer = await self._connect(readonly=False)
            # FULL: a commit that returned is on disk even after a power cut (NORMAL could lose the last ones).
            await self._writer.execute("PRAGMA synchronous = FULL")
            for _ in range(self.read_connections):
                reader = await self._connect(readonly=True)
                self._all_readers.append(reader)
                self._readers.put_nowait(reader)
        except sqlite3.DatabaseError as e:
            await self.close()
            raise DatabaseError(f"{self.path}: {e}") from e
        if self.schema[0] != self.schema[1]:
            log.info("database schema upgraded", extra={"fields": {"from": self.schema[0], "to": self.schema[1]}})

    async def close(self) -> None:
        """Close once in-flight work is done: an aiosqlite connection closed under a pending query never answers
        it, and whoever awaits that query would hang (seen when the node stopped during start-up work)."""
        writer, self._writer = self._writer, None  # new work fails at once with "database is closed"
        readers, self._all_readers = self._all_readers, []
        pool = self._readers
        try:
            async with asyncio.timeout(10):
                for _ in readers:
                    await pool.get()  # every reader back in the pool: none is mid-query
                await self._write_lock.acquire()
                self._write_lock.release()
        except TimeoutError:
            log.warning("closing the database with work still running")
        for reader in readers:
            await reader.close()
        pool.put_nowait(None)  # wakes anyone still waiting for a reader: they get "database is closed"
        self._readers = asyncio.Queue()
        if writer is not None:
            # Fold the WAL back into the main file so a stopped node is one self-contained file.
            try:
                await writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            await writer.close()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer connection, once it is this caller's turn (one transaction at a time)."""
        if self._writer is None:
            raise DatabaseError("database is closed")
        async with self._write_lock:
            writer = self._writer
            if writer is None:  # closed while this waited for its turn
                raise DatabaseError("database is closed")
            yield writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception."""
        async with self._writer_turn() as writer:
            try:
                await _settled(writer.execute("BEGIN IMMEDIATE"))
            except asyncio.CancelledError:
                await _roll_back_if_open(writer)
                raise
            try:
                yield writer
            except BaseException:
                await _settled(writer.execute("ROLLBACK"))
                raise
            try:
                await _settled(writer.execute("COMMIT"))
            except BaseException:
                await _roll_back_if_open(writer)
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A reader connection for the duration of the block (reads see the last committed state)."""
        if self._writer is None:
            raise DatabaseError("database is closed")
        pool = self._readers
        conn = await pool.get()
        if conn is None:  # the pool was closed while this waited
            pool.put_nowait(None)  # and the next waiter learns it too
            raise DatabaseError("database is closed")
        try:
            yield conn
        finally:
            pool.put_nowait(conn)

    async def read_fn(self, fn: Callable[..., T], *args: Any) -> T:
        """All the reads of one request as one plain function `fn(connection, *args)`, run on a reader's thread:
        one hop to that thread, whatever `fn` asks (the reads see one snapshot of the database)."""
        async with self.read() as conn:
            return await on_thread(conn, _snapshot, fn, *args)  # type: ignore[no-any-return]

    async def write_fn(self, fn: Callable[..., T], *args: Any) -> T:
        """A transaction as one plain function `fn(connection, *args)`, run on the writer's thread inside BEGIN
        IMMEDIATE ... COMMIT (ROLLBACK when it raises): one hop, so the write lock is held for the transaction's own
        time. Datasette's execute_write_fn is the model. Cancelling the caller does not cut it short: it finishes
        (committed or rolled back) before the next transaction starts."""
        async with self._writer_turn() as writer:
            return await _settled(on_thread(writer, _transaction, fn, *args))  # type: ignore[no-any-return]

    # execute_fetchall is one hop to the connection's thread; execute + fetch + close on a cursor is three, and
    # under load every hop waits for a turn of the event loop (bench/catalog.py measured 12 hops per track page):
    # hot paths use read_fn / write_fn instead.

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self.read() as conn:
            rows = await conn.execute_fetchall(sql, tuple(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self.read() as conn:
            return list(await conn.execute_fetchall(sql, tuple(params)))

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One write statement in its own transaction (one hop); returns the number of rows changed."""
        values = tuple(params)
        return await self.write_fn(lambda conn: conn.execute(sql, values).rowcount)

    async def check(self) -> None:
        """Prove the database answers (for /health): a read on a reader connection."""
        row = await self.fetchone("SELECT count(*) FROM node_state")
        if row is None:
            raise DatabaseError("no answer")

    async def optimize(self) -> None:
        """Routine upkeep: refresh planner statistics and checkpoint the WAL without blocking readers."""
        async with self._writer_turn() as writer:
            await writer.execute("PRAGMA optimize")
            await writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
