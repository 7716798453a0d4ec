"""The running node: configuration, secrets, database and workers, wired together without any HTTP.

The web layer holds one `Node`; command-line tools and tests can build one too.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from . import __version__, keys
from .config import Config
from .db import Database
from .workers import Workers, sleep_or_stop

log = logging.getLogger("plyrd.node")

HOUSEKEEPING_INTERVAL = 3600.0


def prepare_data_dir(config: Config) -> None:
    """Create the data directory layout, private to the node's user, and clear temporary leftovers of a crash."""
    for path in (config.data_dir, config.blobs_dir, config.tmp_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in config.tmp_dir.iterdir():
        # tmp/ only ever holds partial uploads and renditions; a file here at start-up was interrupted.
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = __version__
        self.secrets: dict[str, str] = {}
        self.db = Database(
            config.db_path,
            busy_timeout_ms=config["database.busy_timeout_ms"],
            read_connections=config["database.read_connections"],
        )
        self.workers = Workers()
        self.started_at = time.time()
        self._running = False

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    async def start(self) -> None:
        prepare_data_dir(self.config)
        self.secrets = keys.resolve(self.config)
        self._running = True
        await self.db.open()
        self.workers.start("housekeeping", self._housekeeping)

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        await self.workers.stop(grace=self.config["server.graceful_timeout"])
        await self.db.close()
        log.info("node stopped", extra={"fields": {"data": str(self.data_dir)}})

    async def _housekeeping(self, stop) -> None:  # type: ignore[no-untyped-def]
        """Hourly upkeep that keeps a long-running node small and quick."""
        while not await sleep_or_stop(stop, HOUSEKEEPING_INTERVAL):
            await self.db.optimize()
