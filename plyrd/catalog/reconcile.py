"""Reconciliation: bring the node in line with what a user's PDS actually holds.

A user's records belong to them; other clients (plyr.fm itself, or a second plyrd) write and delete them too. On
sign-in and on demand the node lists the user's fm.plyr.* records and:

- adopts records it does not know: a like or a comment made elsewhere on a track this node has appears here;
- drops what was deleted elsewhere: a like or comment that plyrd saw reach the PDS (it is in pds_records) and that
  the PDS no longer lists goes away here too.

Tracks are not deleted this way: a track record missing from the PDS never costs the artist their audio here (the
node keeps the file; republishing or deleting it stays the artist's choice). For artists allowed to upload, track
records made elsewhere are imported when their audio is a blob in the PDS (plyrd.catalog.track_import), before
likes, comments and playlists are adopted, so those find the imported tracks in the same pass.

Anything still waiting in the outbox is left alone: it has not reached the PDS, so its absence there means nothing.
Playlists (fm.plyr.list records of listType playlist) are reconciled the same way, edits included.

What never had a record is the node's own and is never removed here: likes of library tracks (the node's music
folder), and a playlist's library items, which keep their place after the published item they followed when the
playlist's record is replaced by one edited elsewhere.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..atproto.lexicon import RecordInvalid, validate
from ..atproto.outbox import forget, list_records, queued_rkeys, remember, synced_rkeys
from ..atproto.xrpc import PDSSession
from ..db import Database
from ..storage import BlobStore
from .artwork import set_artwork
from .playlists import LIBRARY_ITEM
from .profiles import reconcile_profile

if TYPE_CHECKING:
    from ..network.remote_tracks import RemoteTracks
    from .track_import import TrackImporter

log = logging.getLogger("plyrd.reconcile")
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"
REMOTE_REFRESH_SECONDS = 3600.0  # a remote track a user keeps is read again at their sync after an hour

@dataclass
class ReconcileReport:
    adopted: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    profile: str | None = None  # adopted, created or pending
    tracks: dict[str, Any] | None = None  # imported and skipped track records, when the user may upload
    remote: dict[str, int] = field(default_factory=dict)  # other repos' tracks read again

    def as_json(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "removed": self.removed, "skipped": self.skipped, "profile": self.profile,
                "tracks": self.tracks, "remote": self.remote}


def _ts(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _synced_and_pending(db: Database, did: str, collection: str) -> tuple[set[str], set[str]]:
    """The rkeys plyrd saw reach the PDS, and those with a write of plyrd's on its way (see the module docstring)."""
    return await synced_rkeys(db, did, collection), await queued_rkeys(db, did, collection)


async def _remember(conn: Any, did: str, collection: str, rkey: str, rec: dict[str, Any]) -> None:
    await remember(conn, did=did, collection=collection, rkey=rkey, uri=rec["uri"], cid=rec["cid"],
                   record=rec["value"])


async def _track_by_uri(conn: Any, uri: Any) -> Any:
    if not isinstance(uri, str):
        return None
    async with conn.execute("SELECT id, duration FROM tracks WHERE record_uri = ?", (uri,)) as cur:
        return await cur.fetchone()


async def _resolve_subjects(remote: RemoteTracks | None, subjects: list[Any]) -> None:
    """Tracks these strongRefs name that the node does not carry are read from their artists' PDSes (remote tracks),
    before the write transaction that adopts what points at them: a like of a plyr.fm track is kept, not dropped."""
    if remote is None:
        return
    refs = [(s.get("uri"), s.get("cid")) for s in subjects if isinstance(s, dict)]
    await remote.resolve_many(refs)


# ---- one record at a time: what reconciliation does for each, and what ingest does for each event ------------------

async def adopt_like(conn: Any, did: str, rkey: str, rec: dict[str, Any], *, keep: bool) -> bool:
    """A valid fm.plyr.like record ({uri, cid, value}) of `did`, inside the caller's transaction: liked here when its
    track is (this node's, or a remote track already resolved). `keep`: the record is a node user's, noted as on
    their PDS (reconciliation removes it when it goes). False when nothing changed."""
    track = await _track_by_uri(conn, rec["value"]["subject"]["uri"])
    if track is None:
        return False  # a like of a track this node does not carry
    cur = await conn.execute(
        "INSERT OR IGNORE INTO likes(did, track_id, rkey, position, created_at) VALUES (?, ?, ?,"
        " (SELECT coalesce(min(position), 1) - 1 FROM likes WHERE did = ?), ?)",
        (did, track["id"], rkey, did, _ts(rec["value"]["createdAt"]) or 0.0),
    )
    if cur.rowcount and keep:
        await _remember(conn, did, "fm.plyr.like", rkey, rec)
    return bool(cur.rowcount)


async def adopt_comment(conn: Any, did: str, rkey: str, rec: dict[str, Any], *, keep: bool) -> bool:
    """A valid fm.plyr.comment record of `did`, inside the caller's transaction, as adopt_like; an edit (the same
    record key again) replaces its text."""
    value = rec["value"]
    track = await _track_by_uri(conn, value["subject"]["uri"])
    if track is None:
        return False
    cur = await conn.execute(
        "INSERT INTO comments(track_id, did, text, timestamp_ms, rkey, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(did, rkey) DO UPDATE SET text = excluded.text,"
        " timestamp_ms = excluded.timestamp_ms, updated_at = excluded.updated_at"
        " WHERE comments.text IS NOT excluded.text OR comments.timestamp_ms IS NOT excluded.timestamp_ms",
        (track["id"], did, value["text"], max(0, int(value["timestampMs"])), rkey,
         _ts(value["createdAt"]) or 0.0, _ts(value.get("updatedAt"))),
    )
    if cur.rowcount and keep:
        await _remember(conn, did, "fm.plyr.comment", rkey, rec)
    return bool(cur.rowcount)


async def drop_record(conn: Any, did: str, collection: str, rkey: str) -> bool:
    """A like or comment deleted from `did`'s repo, inside the caller's transaction. False when it was not here."""
    table = {"fm.plyr.like": "likes", "fm.plyr.comment": "comments"}[collection]
    cur = await conn.execute(f"DELETE FROM {table} WHERE did = ? AND rkey = ?", (did, rkey))
    await forget(conn, did=did, collection=collection, rkey=rkey)
    return bool(cur.rowcount)


def valid_record(collection: str, value: Any) -> bool:
    """Whether a record's value is what plyr.fm's lexicon allows (another client may write anything)."""
    try:
        validate(collection, value)
        return True
    except RecordInvalid:
        return False


def _valid(collection: str, rec: dict[str, Any], report: ReconcileReport) -> bool:
    try:
        validate(collection, rec["value"])
        return True
    except RecordInvalid:
        report.skipped += 1  # another client wrote something plyr.fm's lexicon does not allow: leave it be
        return False


async def _likes(db: Database, did: str, remote: dict[str, dict[str, Any]], report: ReconcileReport,
                 tracks: RemoteTracks | None = None) -> None:
    collection = "fm.plyr.like"
    synced, pending = await _synced_and_pending(db, did, collection)
    # likes of library tracks never had a record: nothing on the PDS speaks for or against them
    local = {r["rkey"]: r["id"] for r in await db.fetchall(
        "SELECT l.id, l.rkey FROM likes l JOIN tracks t ON t.id = l.track_id WHERE l.did = ? AND t.source != 'library'",
        (did,))}
    gone = [rk for rk in local if rk not in remote and rk in synced and rk not in pending]
    await _resolve_subjects(tracks, [rec["value"].get("subject") for rk, rec in remote.items()
                                     if rk not in local and isinstance(rec.get("value"), dict)])
    adopted = removed = 0
    async with db.write() as conn:
        for rkey in gone:
            await conn.execute("DELETE FROM likes WHERE id = ?", (local[rkey],))
            await forget(conn, did=did, collection=collection, rkey=rkey)
            removed += 1
        for rkey, rec in remote.items():
            if rkey in local or not _valid(collection, rec, report):
                continue
            if await adopt_like(conn, did, rkey, rec, keep=True):
                adopted += 1
    report.adopted["likes"], report.removed["likes"] = adopted, removed


async def _comments(db: Database, did: str, remote: dict[str, dict[str, Any]], report: ReconcileReport,
                    tracks: RemoteTracks | None = None) -> None:
    collection = "fm.plyr.comment"
    synced, pending = await _synced_and_pending(db, did, collection)
    local = {r["rkey"]: r for r in await db.fetchall("SELECT id, rkey, text FROM comments WHERE did = ?", (did,))}
    await _resolve_subjects(tracks, [rec["value"].get("subject") for rk, rec in remote.items()
                                     if rk not in local and isinstance(rec.get("value"), dict)])
    adopted = removed = 0
    async with db.write() as conn:
        for rkey, row in local.items():
            if rkey not in remote and rkey in synced and rkey not in pending:
                await conn.execute("DELETE FROM comments WHERE id = ?", (row["id"],))
                await forget(conn, did=did, collection=collection, rkey=rkey)
                removed += 1
        for rkey, rec in remote.items():
            if rkey in local or not _valid(collection, rec, report):
                continue
            if await adopt_comment(conn, did, rkey, rec, keep=True):
                adopted += 1
    report.adopted["comments"], report.removed["comments"] = adopted, removed


async def _playlists(db: Database, store: BlobStore | None, did: str, remote_lists: dict[str, dict[str, Any]],
                     report: ReconcileReport, tracks: RemoteTracks | None = None) -> None:
    """Playlists (fm.plyr.list with listType playlist) made, edited or deleted in another client."""
    collection = "fm.plyr.list"
    remote = {rk: rec for rk, rec in remote_lists.items()
              if isinstance(rec.get("value"), dict) and rec["value"].get("listType") == "playlist"}
    synced, pending = await _synced_and_pending(db, did, collection)
    local = {r["rkey"]: r for r in await db.fetchall(
        "SELECT id, rkey, record_cid FROM playlists WHERE owner_did = ? AND rkey IS NOT NULL", (did,))}
    albums = {r["rkey"] for r in await db.fetchall(
        "SELECT rkey FROM albums WHERE artist_did = ? AND rkey IS NOT NULL", (did,))}
    await _resolve_subjects(tracks, [item.get("subject") for rec in remote.values()
                                     if isinstance(rec["value"].get("items"), list)
                                     for item in rec["value"]["items"][:500] if isinstance(item, dict)])
    adopted = removed = updated = 0
    released: list[str] = []
    async with db.write() as conn:
        for rkey, row in local.items():
            if rkey not in remote and rkey in synced and rkey not in pending:
                if store is not None:
                    released += await set_artwork(conn, store, "playlists", row["id"], None)
                await conn.execute("DELETE FROM playlists WHERE id = ?", (row["id"],))
                await forget(conn, did=did, collection=collection, rkey=rkey)
                removed += 1
        for rkey, rec in remote.items():
            if rkey in albums or rkey in pending or not _valid(collection, rec, report):
                continue
            existing = local.get(rkey)
            if existing is not None and existing["record_cid"] == rec["cid"]:
                continue  # what this node wrote last
            value = rec["value"]
            if existing is None:
                playlist_id = str(uuid.uuid4())
                await conn.execute(
                    "INSERT INTO playlists(id, owner_did, name, rkey, record_uri, record_cid, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (playlist_id, did, (value.get("name") or "untitled")[:64], rkey, rec["uri"], rec["cid"],
                     _ts(value.get("createdAt")) or 0.0),
                )
                adopted += 1
            else:
                playlist_id = existing["id"]
                await conn.execute("UPDATE playlists SET name = ?, record_cid = ? WHERE id = ?",
                                   ((value.get("name") or "untitled")[:64], rec["cid"], playlist_id))
                updated += 1
            async with conn.execute("SELECT * FROM playlist_items WHERE playlist_id = ? ORDER BY position",
                                    (playlist_id,)) as cur:
                before = list(await cur.fetchall())
            await conn.execute("DELETE FROM playlist_items WHERE playlist_id = ?", (playlist_id,))
            remote_items: list[tuple[Any, ...]] = []
            for item in value.get("items", [])[:500]:
                subject = item["subject"]
                track = await _track_by_uri(conn, subject["uri"])
                remote_items.append((track["id"] if track else None, subject["uri"], subject["cid"], None))
            for position, (track_id, uri, cid, added_at) in enumerate(_with_library_items(before, remote_items)):
                await conn.execute(
                    "INSERT INTO playlist_items(playlist_id, position, track_id, track_uri, track_cid, added_at)"
                    f" VALUES (?, ?, ?, ?, ?, coalesce(?, {_NOW_SQL}))",
                    (playlist_id, position, track_id, uri, cid, added_at),
                )
            await _remember(conn, did, collection, rkey, rec)
    if store is not None:
        await store.remove_unreferenced(released)
    report.adopted["playlists"], report.removed["playlists"] = adopted, removed
    report.adopted["playlists_updated"] = updated


def _with_library_items(before: list[Any], remote: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The remote record's items with the playlist's library items put back (they are in no record): each after
    the published item it followed before (at the front when none did; at the end when that item is gone)."""
    after: dict[str | None, list[tuple[Any, ...]]] = {}
    anchor: str | None = None
    for item in before:
        if item["track_uri"].startswith(LIBRARY_ITEM):
            after.setdefault(anchor, []).append((item["track_id"], item["track_uri"], item["track_cid"],
                                                 item["added_at"]))
        else:
            anchor = item["track_uri"]
    merged = list(after.pop(None, []))
    for entry in remote:
        if entry[1].startswith(LIBRARY_ITEM):
            continue  # another client copied a name only this node gives: not a track
        merged.append(entry)
        merged += after.pop(entry[1], [])
    return merged + [entry for rest in after.values() for entry in rest]


async def reconcile(db: Database, session: PDSSession, store: BlobStore | None = None,
                    importer: TrackImporter | None = None, remote: RemoteTracks | None = None) -> ReconcileReport:
    """One pass over the user's fm.plyr.* records. Safe to run at any time and repeatedly. With an `importer` (the
    user may upload here), their track records made elsewhere are imported first. With `remote`, likes, comments
    and playlist items of tracks this node does not carry resolve to remote tracks (read from their artists'
    PDSes) instead of being dropped."""
    did = session.did
    report = ReconcileReport()
    report.profile = await reconcile_profile(db, did, await list_records(session, "fm.plyr.actor.profile"))
    if importer is not None:
        imported = await importer.import_records(session, await list_records(session, "fm.plyr.track"))
        report.adopted["tracks"] = len(imported.imported)
        report.tracks = imported.as_json()
    await _likes(db, did, await list_records(session, "fm.plyr.like"), report, remote)
    await _comments(db, did, await list_records(session, "fm.plyr.comment"), report, remote)
    await _playlists(db, store, did, await list_records(session, "fm.plyr.list"), report, remote)
    if remote is not None:  # the next sync of the remote tracks they keep: changed or gone on the artist's side
        report.remote["refreshed"] = await remote.refresh_referenced(did, REMOTE_REFRESH_SECONDS)
    tracks = report.tracks and {k: len(v) for k, v in report.tracks.items()}  # each import and skip has its own line
    log.info("reconciled", extra={"fields": {"did": did, **report.as_json(), "tracks": tracks}})
    return report
