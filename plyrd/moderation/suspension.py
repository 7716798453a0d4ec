"""Suspended uploaders: they sign in and listen; they cannot upload or comment until an admin restores them."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import Forbidden


async def suspension_of(conn: Any, did: str) -> str | None:
    """Why `did` is suspended on this node, or None. `conn` is a connection or the Database."""
    async with conn.execute("SELECT suspended FROM users WHERE did = ?", (did,)) as cur:
        row = await cur.fetchone()
    return row["suspended"] if row is not None else None


async def check_not_suspended(conn: Any, did: str, doing: str) -> None:
    """Refuse `doing` (upload, comment) to a suspended uploader, saying why."""
    why = await suspension_of(conn, did)
    if why is not None:
        raise Forbidden(f"you may not {doing} on this node: your account is suspended ({why})")


def refuse_if_suspended(conn: sqlite3.Connection, did: str, doing: str) -> None:
    """`check_not_suspended` inside a function run on a connection's thread (Database.write_fn)."""
    row = conn.execute("SELECT suspended FROM users WHERE did = ?", (did,)).fetchone()
    if row is not None and row["suspended"] is not None:
        raise Forbidden(f"you may not {doing} on this node: your account is suspended ({row['suspended']})")
