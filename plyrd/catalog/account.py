"""A user's account on this node: export everything they own as a zip, or delete it all.

The export streams (plyrd.catalog.zips): memory stays constant however large the originals are. Deletion removes
everything the user owns here; when they ask, it first deletes their fm.plyr.* records on their PDS, through the
outbox module (plyrd.atproto.outbox.delete_collections).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ..atproto.outbox import delete_collections, forget_account
from ..atproto.xrpc import PDSSession
from ..db import Database
from ..errors import InvalidInput
from ..network.bsky_profiles import release_avatar
from ..network.follows import forget_follows
from ..storage import BlobStore
from .albums import release_owned_covers
from .tracks import TRACK_SELECT, artist_name, remove_track, track_json
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
    # Subsonic apps' state on this node: bookmarks, stars of albums and artists, the last queue save.
    ("subsonic_bookmarks", "did"),
    ("subsonic_starred_albums", "did"),
    ("subsonic_starred_artists", "did"),
    ("subsonic_queue_saves", "did"),
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
        "tracks": [track_json(t, public_url, viewer_did=did) for t in tracks],
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


PLYR_COLLECTIONS = ("fm.plyr.track", "fm.plyr.like", "fm.plyr.comment", "fm.plyr.list", "fm.plyr.actor.profile")


async def delete_account(db: Database, store: BlobStore, did: str,
                         pds: PDSSession | None = None) -> tuple[dict[str, int], int]:
    """Delete everything the user owns on this node. With `pds` (their session: they chose to delete their records
    too) every fm.plyr.* record in their repo goes first, not only those this node wrote, while the session still
    exists: if the PDS refuses, nothing here has been deleted yet. Returns the counts of what was deleted here and
    how many records were deleted there."""
    records_deleted = await delete_collections(pds, PLYR_COLLECTIONS) if pds is not None else 0
    return await delete_local(db, store, did), records_deleted


async def delete_local(db: Database, store: BlobStore, did: str) -> dict[str, int]:
    """Delete everything the user owns on this node; files no one else uses are removed. Returns counts."""
    counts: dict[str, int] = {}
    tables = await _existing_tables(db)
    owned = [(t, c) for t, c in OWNED_TABLES if t in tables and c in await _columns(db, t)]
    async with db.write() as conn:
        released = await release_owned_covers(conn, store, did)
        # Their albums go before their tracks: removing a track then has no album record left to rewrite.
        cur = await conn.execute("DELETE FROM albums WHERE artist_did = ?", (did,))
        counts["albums"] = cur.rowcount
        async with conn.execute("SELECT * FROM tracks WHERE artist_did = ?", (did,)) as cur:
            tracks = await cur.fetchall()
        for track in tracks:
            # Their records are left as they are: delete_account deleted them first, or the user keeps them.
            released += await remove_track(conn, store, track, unpublish=False)
        counts["tracks"] = len(tracks)
        for table, column in owned:
            cur = await conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (did,))
            counts[table] = counts.get(table, 0) + cur.rowcount
        # Credentials are not exported, but go with the account: a Subsonic password must not outlive it.
        await conn.execute("DELETE FROM subsonic_passwords WHERE did = ?", (did,))
        cur = await conn.execute("DELETE FROM auth_sessions WHERE did = ?", (did,))
        counts["sessions"] = cur.rowcount
        counts["queued_writes"] = await forget_account(conn, did)
        # whom they followed, that they were a user here, and the node's copy of their Bluesky avatar
        await forget_follows(conn, did)
        released += await release_avatar(conn, store, did)
    await store.remove_unreferenced(released)
    return counts
