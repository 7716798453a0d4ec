"""Schema migrations: numbered SQL files in plyrd/db/migrations/, applied in order, each in one transaction.

The schema version is SQLite's `PRAGMA user_version`, set inside the same transaction as the migration's DDL,
so a crash mid-migration leaves the database at the previous version, never half-way.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The schema cannot be brought up to date (a broken migration, or a database newer than this plyrd)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every migration shipped with plyrd, checked to be numbered 1, 2, 3... without gaps."""
    found: list[Migration] = []
    for entry in resources.files("plyrd.db").joinpath("migrations").iterdir():
        if m := _NAME.match(entry.name):
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise MigrationError(
                f"migration files are not numbered 1..n: expected {expected:04d}, found {mig.version:04d}"
            )
    return found


def latest_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


def migrate(conn: sqlite3.Connection, *, target: int | None = None) -> tuple[int, int]:
    """Apply pending migrations up to `target` (default: the newest). Returns (version before, version after).

    `conn` is a stdlib connection in autocommit mode (isolation_level=None); aiosqlite callers run this in its thread.
    """
    migrations = load_migrations()
    newest = migrations[-1].version if migrations else 0
    target = newest if target is None else target
    before = conn.execute("PRAGMA user_version").fetchone()[0]
    if before > newest:
        raise MigrationError(
            f"the database is at schema version {before}, newer than this plyrd knows ({newest}); "
            "upgrade plyrd or restore a backup made by this version"
        )
    # Foreign keys are off while migrating (SQLite's procedure for rebuilding a table: dropping the old table must
    # not cascade into the rows that reference it) and checked before each migration commits instead.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for mig in migrations:
            if before < mig.version <= target:
                _apply(conn, mig)
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    after = conn.execute("PRAGMA user_version").fetchone()[0]
    return before, after


def _apply(conn: sqlite3.Connection, mig: Migration) -> None:
    """One migration in one transaction: its DDL, the new user_version, no broken foreign key, or nothing."""
    try:
        # executescript runs the whole file; the explicit BEGIN makes it one transaction with the COMMIT below.
        conn.executescript(f"BEGIN IMMEDIATE;\n{mig.sql}\n;PRAGMA user_version = {mig.version};")
        broken = conn.execute("PRAGMA foreign_key_check").fetchone()
        if broken is not None:
            raise sqlite3.IntegrityError(f"foreign key broken in {broken[0]} (row {broken[1]}) -> {broken[2]}")
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed: {e}") from e
