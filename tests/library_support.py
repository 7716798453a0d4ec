"""Scanning a node's music folder from a test: the node's own scanner (plyrd.library.service `Library.scan`) run
over the node's data directory beside the running node, as `plyrd library scan` does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conftest import ServedNode


async def _scan(data: Path) -> Any:
    from plyrd.config import load_config
    from plyrd.db import Database
    from plyrd.library.service import Library
    from plyrd.storage import BlobStore

    config = load_config(overrides={"storage.data_dir": str(data)})
    db = Database(data / "plyrd.db")
    await db.open()
    try:
        return await Library(db, BlobStore(data / "blobs", data / "tmp", db), config).scan(trigger="cli")
    finally:
        await db.close()


def scan_library(node: ServedNode, *, added: int) -> Any:
    """Scan the node's configured folders; every file must become a track (`added` of them)."""
    report = asyncio.run(_scan(node.data))
    assert report.errors == 0 and report.added == added, report
    return report
