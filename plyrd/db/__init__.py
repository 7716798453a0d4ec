"""The catalog database, plyrd.db, opened only through aiosqlite (never apsw: see docs/architecture.md)."""

from .database import Database, DatabaseError
from .migrations import MigrationError, latest_version, migrate

__all__ = ["Database", "DatabaseError", "MigrationError", "latest_version", "migrate"]
