"""A user's account on this node: export everything they own as a zip, or delete it all.

The export streams: a worker thread writes the zip into a bounded queue that the response drains, so memory
stays constant however large the originals are (audio is stored, not recompressed).
"""

from __future__ import annotations

import asyncio
import io
import json
import queue
import re
import threading
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..db import Database
from ..errors import InvalidInput
from ..storage import BlobStore
from .albums import release_owned_covers
from .tracks import BLOB_COLUMNS, TRACK_SELECT, artist_name, track_json

# (table, column naming the owner): whatever of these exists is exported and deleted with the account.
OWNED_TABLES: tuple[tuple[str, str], ...] = (
    ("likes", "did"),
    ("comments", "did"),
    ("play_events", "listener"),
    ("preferences", "did"),
    ("queue_state", "did"),
    ("playlists", "owner_did"),
    ("albums", "artist_did"),
)
CHUNK = 256 * 1024
_QUEUE_CHUNKS = 8  # at most about 2 MB of zip in flight


def _safe(name: str) -> str:
    return re.sub(r'[\x00-\x1f/\\:*?"<>|]+', " ", name).strip()[:120] or "untitled"


async def _existing_tables(db: Database) -> set[str]:
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r["name"] for r in rows}


async def _columns(db: Database, table: str) -> set[str]:
    return {r["name"] for r in await db.fetchall(f"PRAGMA table_info({table})")}


async def collect_metadata(db: Database, did: str, public_url: str) -> dict[str, Any]:
    tracks = await db.fetchall(TRACK_SELECT + " WHERE t.artist_did = ? ORDER BY t.created_at", (did,))
    user = await db.fetchone("SELECT did, handle, display_name, pds_url, created_at FROM users WHERE did = ?", (did,))
    doc: dict[str, Any] = {
        "format": "plyrd-export-1",
        "exported_at": time.time(),
        "node": public_url,
        "user": dict(user) if user else {"did": did},
        "tracks": [track_json(t, public_url) for t in tracks],
    }
    tables = await _existing_tables(db)
    for table, column in OWNED_TABLES:
        if table in tables and column in await _columns(db, table):
            rows = await db.fetchall(f"SELECT * FROM {table} WHERE {column} = ?", (did,))
            doc[table] = [{k: (v if not isinstance(v, bytes) else None) for k, v in dict(r).items()} for r in rows]
    return doc


class _QueueWriter(io.RawIOBase):
    """A write-only, non-seekable stream into a bounded queue (zipfile then writes data descriptors)."""

    def __init__(self, q: queue.Queue[bytes | None], cancelled: threading.Event) -> None:
        self._q = q
        self._cancelled = cancelled
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if self._cancelled.is_set():
            raise BrokenPipeError("export cancelled")
        self._buf += b
        while len(self._buf) >= CHUNK:
            self._put(bytes(self._buf[:CHUNK]))
            del self._buf[:CHUNK]
        return len(b)

    def _put(self, data: bytes) -> None:
        while True:
            try:
                self._q.put(data, timeout=0.5)
                return
            except queue.Full:
                if self._cancelled.is_set():
                    raise BrokenPipeError("export cancelled") from None

    def close(self) -> None:
        if self._buf and not self._cancelled.is_set():
            self._put(bytes(self._buf))
            self._buf.clear()
        super().close()


def _write_zip(out: _QueueWriter, metadata: dict[str, Any], files: list[tuple[str, Path]]) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("plyrd-export.json", json.dumps(metadata, indent=2, default=str),
                   compress_type=zipfile.ZIP_DEFLATED)
        for arcname, path in files:
            with path.open("rb") as src, z.open(arcname, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
    out.close()


async def export_zip(db: Database, store: BlobStore, did: str, public_url: str) -> AsyncIterator[bytes]:
    """The zip's bytes: plyrd-export.json with every record the user owns here, and the original of each track."""
    metadata = await collect_metadata(db, did, public_url)
    tracks = await db.fetchall(TRACK_SELECT + " WHERE t.artist_did = ? ORDER BY t.created_at", (did,))
    files: list[tuple[str, Path]] = []
    used: set[str] = set()
    for t in tracks:
        base = _safe(f"{artist_name(t)} - {t['title']}")
        name = f"tracks/{base}.{t['original_ext']}"
        n = 2
        while name in used:
            name = f"tracks/{base} ({n}).{t['original_ext']}"
            n += 1
        used.add(name)
        files.append((name, store.path_for(t["original_sha"])))

    q: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    cancelled = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            _write_zip(_QueueWriter(q, cancelled), metadata, files)
        except BaseException as e:  # reported to the consumer, which ends the stream
            failure.append(e)
        finally:
            while True:
                try:
                    q.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if cancelled.is_set():
                        break

    worker = threading.Thread(target=produce, name="plyrd-export", daemon=True)
    worker.start()
    try:
        while True:
            chunk = await asyncio.to_thread(q.get)
            if chunk is None:
                break
            yield chunk
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0]
    finally:
        cancelled.set()  # a client that went away stops the thread at its next write


def check_confirmation(confirmation: Any, handle: str | None, did: str) -> None:
    if not isinstance(confirmation, str) or confirmation.strip().lstrip("@").lower() not in {
        (handle or "").lower(), did.lower()}:
        raise InvalidInput(f"type your handle ({handle or did}) as confirmation to delete your account")


async def delete_local(db: Database, store: BlobStore, did: str) -> dict[str, int]:
    """Delete everything the user owns on this node; files no one else uses are removed. Returns counts."""
    counts: dict[str, int] = {}
    released: list[str] = []
    tables = await _existing_tables(db)
    owned = [(t, c) for t, c in OWNED_TABLES if t in tables and c in await _columns(db, t)]
    async with db.write() as conn:
        async with conn.execute("SELECT * FROM tracks WHERE artist_did = ?", (did,)) as cur:
            tracks = await cur.fetchall()
        for t in tracks:
            await conn.execute("DELETE FROM tracks WHERE id = ?", (t["id"],))
            for column in BLOB_COLUMNS:
                if t[column] and await store.decref(conn, t[column]) == 0:
                    released.append(t[column])
        counts["tracks"] = len(tracks)
        released += await release_owned_covers(conn, store, did)
        for table, column in owned:
            cur = await conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (did,))
            counts[table] = cur.rowcount
        cur = await conn.execute("DELETE FROM auth_sessions WHERE did = ?", (did,))
        counts["sessions"] = cur.rowcount
        # Nothing more goes to their PDS from here: queued writes and what was known of their repo are dropped.
        cur = await conn.execute("DELETE FROM outbox WHERE did = ?", (did,))
        counts["queued_writes"] = cur.rowcount
        await conn.execute("DELETE FROM pds_records WHERE did = ?", (did,))
        await conn.execute("DELETE FROM pds_blobs WHERE did = ?", (did,))
    await store.remove_unreferenced(released)
    return counts


PLYR_COLLECTIONS = ("fm.plyr.track", "fm.plyr.like", "fm.plyr.comment", "fm.plyr.list", "fm.plyr.actor.profile")


async def delete_pds_records(session: Any) -> int:
    """Delete every fm.plyr.* record in the user's repo (not only those this node wrote), 200 at a time."""
    from .reconcile import list_all

    deleted = 0
    for collection in PLYR_COLLECTIONS:
        rkeys = list(await list_all(session, collection))
        for start in range(0, len(rkeys), 200):
            batch = rkeys[start:start + 200]
            await session.apply_writes([
                {"$type": "com.atproto.repo.applyWrites#delete", "collection": collection, "rkey": rk}
                for rk in batch
            ])
            deleted += len(batch)
    return deleted
