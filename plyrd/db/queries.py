"""Reads on a connection the caller holds, usually inside its `db.write()` transaction (`Database.fetchone` and
`Database.fetchall` do the same on a reader connection of their own).

Each is one hop to the connection's thread: a cursor's execute + fetch + close would be three, and under load every
hop waits for a turn of the event loop."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite

from .database import T, on_thread


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
    """The first row the statement yields (a SELECT, or a write with RETURNING), or None."""
    found = list(await conn.execute_fetchall(sql, tuple(params)))
    return found[0] if found else None


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, tuple(params)))


# ---- on a stdlib sqlite3 connection, inside a function `Database.read_fn` / `Database.write_fn` runs --------------


def one(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
    """The first row the statement yields, or None (sync: inside a function run on the connection's thread)."""
    return conn.execute(sql, tuple(params)).fetchone()  # type: ignore[no-any-return]


def rows(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    return conn.execute(sql, tuple(params)).fetchall()


async def run(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run the plain function `fn(sqlite3 connection, *args)` on a connection the caller already holds (inside its
    `db.write()` block): one hop for all its statements, so async transactions can share the sync helpers."""
    return await on_thread(conn, fn, *args)  # type: ignore[no-any-return]
