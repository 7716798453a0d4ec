"""A user's account on this node: export everything they own as a zip, or delete it all.

The export streams (plyrd.catalog.zips): memory stays constant however large the originals are.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ..db import Database
from ..errors import InvalidInput
from ..storage import BlobStore
from .albums import release_owned_covers
from .tracks import BLOB_COLUMNS, TRACK_SELECT, artist_name, track_json
from .zips import ZipNames, stream_zip

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


async def export_zip(db: Database, store: BlobStore, did: str, public_url: str) -> AsyncIterator[bytes]:
    """The zip's bytes: plyrd-export.json with every record the user owns here, and the original of each track."""
    metadata = await collect_metadata(db, did, public_url)
    tracks = await db.fetchall(TRACK_SELECT + " WHERE t.artist_did = ? ORDER BY t.created_at", (did,))
    names = ZipNames("tracks")
    files = [(names.add(f"{artist_name(t)} - {t['title']}", t["original_ext"]), store.path_for(t["original_sha"]))
             for t in tracks]
    document = json.dumps(metadata, indent=2, default=str).encode()
    async for chunk in stream_zip(files, documents=[("plyrd-export.json", document)]):
        yield chunk


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
