"""The ingest loop: connect to a firehose or a Jetstream, read, decode, batch, hand each batch to the event handler,
and store the cursor once the handler has returned (at-least-once: a crash between the two replays that batch).

    subscriber = Subscriber(db, "ws://127.0.0.1:2583", FIREHOSE, handler)
    workers.start("ingest", subscriber.run)          # runs until the stop event; reconnects on its own
    subscriber.status()                              # connected?, cursor, counters, last error

Any failure (connection refused or dropped, the server's error frame, the handler raising) closes the connection and
reconnects after an exponential backoff with jitter, capped at a minute, from the stored cursor. A message that is
not what its wire format says is counted and skipped: it never stops the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Set
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, WebSocketException

from .. import __version__
from ..config import Config
from ..db import Database
from ..workers import sleep_or_stop
from . import firehose, jetstream
from .cursor import CursorStore, Progress
from .decoded import MALFORMED, SKIPPED, Decoded, StreamError
from .events import Event, Handler

log = logging.getLogger("plyrd.ingest")


@dataclass(frozen=True)
class Transport:
    name: str
    inclusive_cursor: bool  # the server replays the event at the cursor itself (Jetstream) or from the next one
    max_message_bytes: int
    subscribe_url: Callable[[str, int | None, Set[str]], str]
    decode: Callable[[bytes | str, Set[str]], Decoded]


FIREHOSE = Transport(firehose.NAME, firehose.INCLUSIVE_CURSOR, firehose.MAX_MESSAGE_BYTES, firehose.subscribe_url,
                     firehose.decode)
JETSTREAM = Transport(jetstream.NAME, jetstream.INCLUSIVE_CURSOR, jetstream.MAX_MESSAGE_BYTES,
                      jetstream.subscribe_url, jetstream.decode)


def source_for(config: Config) -> tuple[str, Transport]:
    """What the node follows: `ingest.firehose_url` when set, else `ingest.jetstream_url`."""
    if config["ingest.firehose_url"]:
        return config["ingest.firehose_url"], FIREHOSE
    return config["ingest.jetstream_url"], JETSTREAM


class Subscriber:
    def __init__(self, db: Database, source: str, transport: Transport, handler: Handler, *,
                 batch_size: int = 500, batch_seconds: float = 0.1, save_seconds: float = 2.0,
                 backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.source = source
        self.transport = transport
        self.handler = handler
        self.store = CursorStore(db, source, transport.name)
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds  # how long a wanted event may wait for others before it is handled
        self.save_seconds = save_seconds  # how long the cursor may lag when nothing wanted arrives
        self.backoff = backoff  # first delay, cap (seconds)
        # Position: the stored cursor (handled up to here) and the newest message read after it.
        self.cursor: int | None = None
        self._position: int | None = None
        self._pending: list[Event] = []
        self._progress = Progress()
        self._unsaved_since: float | None = None  # monotonic time the oldest unsaved message arrived
        # Status (since start).
        self.connected = False
        self.connected_since: float | None = None
        self.totals = Progress()
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._malformed_logged = 0
        self._handled = False  # this connection handled (stored) something

    def status(self) -> dict[str, Any]:
        """For `plyrd status` and the admin pages: counters are since the node started (the stored ones, since
        the source was first followed, are in plyrd.ingest.cursor.stored_status)."""
        return {
            "source": self.source, "transport": self.transport.name, "connected": self.connected,
            "connected_since": self.connected_since, "cursor": self.cursor, "seen": self.totals.seen,
            "kept": self.totals.kept, "malformed": self.totals.malformed, "skipped": self.totals.skipped,
            "last_event_at": self.totals.last_event_at, "reconnects": self.reconnects,
            "last_error": self.last_error, "last_error_at": self.last_error_at,
        }

    # --- the worker -----------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the stream until `stop` is set. A batch being handled when it is set finishes (and its cursor is
        stored) first; reading stops at once."""
        reader = asyncio.create_task(self._follow(stop), name="plyrd-ingest-read")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            reader.cancel()
            await asyncio.wait({reader})
        if not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]  # a bug: the worker supervisor logs and restarts

    async def _follow(self, stop: asyncio.Event) -> None:
        self.cursor = self._position = await self.store.load()
        failures = 0
        while not stop.is_set():
            healthy = await self._connection()
            failures = 0 if healthy else failures + 1
            self.reconnects += 1
            first, cap = self.backoff
            delay = min(cap, first * 2 ** min(failures, 16)) * random.uniform(0.5, 1.0)
            if await sleep_or_stop(stop, delay):
                return

    async def _connection(self) -> bool:
        """One connection, until it fails. True when it handled something (the next reconnect starts over from the
        shortest delay)."""
        wanted = frozenset(self.handler.wanted_collections)
        url = self.transport.subscribe_url(self.source, self.cursor, wanted)
        handled = self._handled = False
        try:
            async with connect(url, max_size=self.transport.max_message_bytes, open_timeout=15, close_timeout=1,
                               ping_interval=20, ping_timeout=30, proxy=None,
                               user_agent_header=f"plyrd/{__version__}") as ws:
                self.connected, self.connected_since = True, time.time()
                log.info("ingest connected", extra={"fields": {"source": self.source, "cursor": self.cursor}})
                await self._read(ws, wanted)
        except StreamError as e:
            error = f"the server's error frame: {e}"
            if e.error == "FutureCursor":
                # The server does not know our cursor (a reset PDS, another relay at this URL): follow it live.
                log.warning("ingest cursor unknown to the server; following live", extra={"fields": {
                    "source": self.source, "cursor": self.cursor}})
                self.cursor = self._position = None
                self._discard()
                await self.store.save(None, Progress())
        except ConnectionClosedOK:
            error = "the server closed the connection"
        except (OSError, TimeoutError, WebSocketException) as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # the handler (or the database) failed: replay from the stored cursor
            log.exception("ingest handler failed", extra={"fields": {"source": self.source}})
            error = f"{type(e).__name__}: {e}"
        finally:
            handled = self._handled
            self.connected = False
            self._discard()
        self.last_error, self.last_error_at = error, time.time()
        log.info("ingest disconnected", extra={"fields": {"source": self.source, "error": error}})
        with suppress(Exception):
            await self.store.record_error(error)
        return handled

    def _discard(self) -> None:
        """Forget what was read and not stored: the next connection reads it again from the stored cursor."""
        self._pending = []
        self._progress = Progress()
        self._unsaved_since = None
        self._position = self.cursor

    async def _read(self, ws: ClientConnection, wanted: frozenset[str]) -> None:
        decode = self.transport.decode
        inclusive = self.transport.inclusive_cursor
        progress = self._progress
        while True:
            if self._unsaved_since is None:
                message = await ws.recv()
            else:
                wait = self.batch_seconds if self._pending else self.save_seconds
                try:
                    async with asyncio.timeout_at(self._unsaved_since + wait):
                        message = await ws.recv()  # cancelling recv() is safe: no message is lost
                except TimeoutError:
                    await self._store()
                    progress = self._progress
                    continue
            if self._unsaved_since is None:
                self._unsaved_since = asyncio.get_running_loop().time()
            progress.seen += 1
            decoded = decode(message, wanted)
            if decoded.outcome == MALFORMED:
                progress.malformed += 1
                self._log_malformed(decoded)
            elif decoded.outcome == SKIPPED:
                progress.skipped += 1
                if decoded.note.startswith("info "):
                    log.info("ingest info", extra={"fields": {"source": self.source, "info": decoded.note}})
            cursor = decoded.cursor
            if cursor is not None:
                position = self._position
                if position is not None and (cursor < position or (cursor == position and not inclusive)):
                    continue  # replayed from before the cursor: handled already
                self._position = cursor
            if decoded.events:
                self._pending.extend(decoded.events)
                progress.kept += len(decoded.events)
            if decoded.time_us is not None:
                progress.last_event_at = decoded.time_us / 1_000_000
            if len(self._pending) >= self.batch_size:
                await self._store()
                progress = self._progress

    async def _store(self) -> None:
        """Hand the pending events to the handler, then store the cursor after them. Once begun, this finishes
        even if the node stops meanwhile: the handler is not cut off mid-batch."""
        task = asyncio.ensure_future(self._handle_and_save())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _handle_and_save(self) -> None:
        events, progress, position = self._pending, self._progress, self._position
        self._pending, self._progress, self._unsaved_since = [], Progress(), None
        if events:
            await self.handler.handle(events)
        await self.store.save(position, progress)
        self.cursor = position
        self._handled = True
        totals = self.totals
        totals.seen += progress.seen
        totals.kept += progress.kept
        totals.malformed += progress.malformed
        totals.skipped += progress.skipped
        if progress.last_event_at is not None:
            totals.last_event_at = progress.last_event_at

    def _log_malformed(self, decoded: Decoded) -> None:
        self._malformed_logged += 1
        n = self._malformed_logged
        if n <= 10 or n % 1000 == 0:  # a stream of garbage must not flood the log
            log.warning("ingest skipped a malformed message", extra={"fields": {
                "source": self.source, "why": decoded.note[:200], "malformed": n}})
