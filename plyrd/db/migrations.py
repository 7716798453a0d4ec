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
    for mig in migrations:
        if before < mig.version <= target:
            # executescript runs the whole file; the explicit BEGIN/COMMIT make it one transaction.
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{mig.sql}\n;PRAGMA user_version = {mig.version};\nCOMMIT;"
                )
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed: {e}") from e
    after = conn.execute("PRAGMA user_version").fetchone()[0]
    return before, after
