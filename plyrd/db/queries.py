"""Reads on a connection the caller holds, usually inside its `db.write()` transaction (`Database.fetchone` and
`Database.fetchall` do the same on a reader connection of their own).

Each is one hop to the connection's thread: a cursor's execute + fetch + close would be three, and under load every
hop waits for a turn of the event loop."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import aiosqlite


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
    """The first row the statement yields (a SELECT, or a write with RETURNING), or None."""
    found = list(await conn.execute_fetchall(sql, tuple(params)))
    return found[0] if found else None


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, tuple(params)))
