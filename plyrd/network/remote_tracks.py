"""Remote tracks: an fm.plyr.track record in another repo, known here by reference.

A like, comment or playlist item names a track by strongRef ({uri, cid}); ingest hands over followed artists' track
records. When the uri is not a track of this node, it is resolved: the DID to its PDS (plyrd.atproto.identity),
`com.atproto.repo.getRecord` through the SSRF-guarded client, the record validated against plyr.fm's lexicon and
its CID computed from the value it came with (a PDS that sends a value that does not hash to the CID it names is
refused). The record becomes a track row with `source = 'remote'` (plyrd.catalog.tracks: the one visibility rule,
one read model) and a `remote_tracks` row for what only a remote track has:

- its audio: `original_sha` is the SHA-256 its audioBlob's CID names, fetched from the artist's PDS on first play,
  verified and cached (plyrd.network.remote_audio); a record with only an `audioUrl` plays from that https URL;
- its artwork: a blob of the artist's own repo (a getBlob imageUrl) is fetched, checked and stored like an upload's
  cover; any other https imageUrl is shown as it is (pages allow https images);
- its artist: a users row with the DID's handle and PDS, named by the record's `artist` until their profile says
  otherwise (plyrd.network.bsky_profiles).

A record that changed is read again (`refresh`, `refresh_stale`: the next sync), one that is gone (deleted, or its
repo deactivated) makes its track `unavailable`: the row stays, so likes and playlist entries that point at it keep
it and show it as unavailable, as plyr.fm shows dangling list items. A supporters-only record (supportGate) is known
but not played here (plyrd has no supporter gating, and the artist asked for one).

Nothing here raises for one bad record or one unreachable PDS: `resolve` answers None and logs why, and the caller
(reconcile, ingest) tries again at its next pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from ..atproto.cbor import record_cid
from ..atproto.identity import IdentityResolver, is_did
from ..atproto.lexicon import RecordInvalid, validate, validate_value
from ..atproto.net import UpstreamStatusError, get_json
from ..atproto.records import at_uri
from ..catalog.artwork import Artwork, set_artwork
from ..catalog.publishing import TRACK_COLLECTION
from ..catalog.track_import import Skip, fetch_blob, image_cid_of, record_labels, record_tags, sha_of_cid
from ..catalog.tracks import REMOTE_SOURCE, set_track_tags
from ..config import Config
from ..db import Database
from ..errors import PlyrdError
from ..storage import BlobStore
from ..urls import check_url

if TYPE_CHECKING:
    from ..catalog.uploads import Uploads

log = logging.getLogger("plyrd.remote_tracks")

_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_EXT = re.compile(r"[a-z0-9]{1,16}")
RECHECK_SECONDS = 600.0  # a known remote track is read again for a reference to another version at most this often
LEXICON_MAX_AUDIO = 104_857_600  # fm.plyr.track's audioBlob maxSize
# A repo's PDS says it is not active: its tracks are hidden (users.repo_status) until it comes back.
INACTIVE_ERRORS = {"RepoDeactivated": "deactivated", "RepoTakendown": "takendown", "RepoSuspended": "suspended"}
GONE_ERRORS = {"RecordNotFound", "RepoNotFound"}
_MIME_OF_EXT = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg", "opus": "audio/ogg",
                "flac": "audio/flac", "wav": "audio/wav", "aiff": "audio/aiff", "aif": "audio/aiff",
                "webm": "audio/webm"}


def parse_track_uri(uri: Any) -> tuple[str, str] | None:
    """(did, rkey) of an fm.plyr.track AT-URI, or None for anything else."""
    if not isinstance(uri, str) or not uri.startswith("at://") or len(uri) > 2048:
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or parts[1] != TRACK_COLLECTION or not is_did(parts[0]) or not _RKEY.fullmatch(parts[2]):
        return None
    return parts[0], parts[2]


@dataclass(frozen=True)
class RemoteRecord:
    """An fm.plyr.track record of another repo, checked, as the columns it becomes."""

    did: str
    rkey: str
    cid: str
    title: str
    artist: str
    album: str | None
    description: str | None
    tags: list[str]
    labels: list[str]
    features: list[dict[str, str]]
    duration: float
    ext: str
    mime: str
    audio_cid: str | None
    audio_sha: str | None
    audio_size: int | None
    audio_url: str | None
    image_url: str | None
    image_cid: str | None
    created_at: float
    unavailable: str | None  # why it cannot play here, when it cannot

    @property
    def uri(self) -> str:
        return at_uri(self.did, TRACK_COLLECTION, self.rkey)


def read_record(did: str, rkey: str, cid: str, value: Any, *, now: float | None = None) -> RemoteRecord:
    """Check one fm.plyr.track record (its value as getRecord or an ingest event gives it) and the CID it came with.
    Raises Skip with the reason."""
    if not isinstance(value, Mapping):
        raise Skip("the record has no value")
    try:
        validate(TRACK_COLLECTION, {k: v for k, v in value.items() if k != "audioBlob"})
        if value.get("audioBlob") is not None:
            validate_value({"type": "blob"}, value["audioBlob"], lexicon=TRACK_COLLECTION, path="$.audioBlob")
        computed = record_cid(value)
    except RecordInvalid as e:
        raise Skip(f"not a valid fm.plyr.track record: {e.detail}") from None
    except PlyrdError as e:  # not encodable as DAG-CBOR (a float, a bad link)
        raise Skip(f"not a valid record: {e.detail}") from None
    if computed != cid:
        raise Skip(f"the record's value hashes to {computed}, not to the CID {cid} it came with")
    now = time.time() if now is None else now
    blob = value.get("audioBlob")
    audio_cid = audio_sha = audio_size = None
    unavailable = None
    mime = None
    if isinstance(blob, Mapping):
        audio_cid = blob["ref"]["$link"]
        audio_sha = sha_of_cid(audio_cid)
        audio_size = int(blob.get("size") or 0)
        mime = blob.get("mimeType")
        if audio_sha is None:
            audio_cid = None
    audio_url = _https(value.get("audioUrl"))
    if audio_sha is None and audio_url is None:
        unavailable = "the record has no audio this node can play (no audioBlob, no https audioUrl)"
    elif audio_size is not None and audio_size > LEXICON_MAX_AUDIO:
        unavailable = "its audio is over the 100 MB the lexicon allows"
    if value.get("supportGate") is not None:
        unavailable = "supporters only: the artist gates it, and this node has no supporter gating"
    ext = str(value["fileType"]).lower().lstrip(".")
    ext = ext if _EXT.fullmatch(ext) else "bin"
    try:
        created = datetime.fromisoformat(str(value["createdAt"]).replace("Z", "+00:00")).timestamp()
    except ValueError:
        created = now
    features = [{k: f[k] for k in ("did", "handle") if isinstance(f.get(k), str)}
                for f in value.get("features") or [] if isinstance(f, Mapping) and is_did(str(f.get("did", "")))]
    duration = value.get("duration")
    return RemoteRecord(
        did=did, rkey=rkey, cid=cid, title=value["title"].strip() or "untitled", artist=value["artist"].strip(),
        album=(value.get("album") or "").strip() or None,
        description=(value.get("description") or "").strip() or None,
        tags=record_tags(value.get("tags")), labels=record_labels(value.get("labels")), features=features,
        duration=float(duration) if isinstance(duration, int) and duration >= 0 else 0.0,
        ext=ext,
        mime=mime if isinstance(mime, str) and mime.startswith("audio/") else _MIME_OF_EXT.get(ext, "audio/mpeg"),
        audio_cid=audio_cid, audio_sha=audio_sha, audio_size=audio_size, audio_url=audio_url,
        image_url=_https(value.get("imageUrl")), image_cid=image_cid_of(value.get("imageUrl"), did),
        created_at=min(created, now),  # a createdAt in the future would hold the top of the network feed
        unavailable=unavailable)


def _https(url: Any) -> str | None:
    """An https URL fit to store and show (plyrd.urls), or None."""
    if not isinstance(url, str) or not url.startswith("https://"):
        return None
    try:
        return check_url(url, field="url")
    except PlyrdError:
        return None


class RemoteTracks:
    """Resolves, adopts and refreshes remote tracks (see the module docstring). One per node: `node.remote_tracks`."""

    def __init__(self, db: Database, store: BlobStore, uploads: Uploads, http: httpx.AsyncClient,
                 identity: IdentityResolver, config: Config) -> None:
        self.db = db
        self.store = store
        self.uploads = uploads
        self.http = http
        self.identity = identity
        self.config = config
        # One resolution per record at a time (a playlist naming a track twice, reconcile racing ingest).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._fetches = asyncio.Semaphore(4)  # PDSes are other people's servers: a few requests at a time
        self.on_new_artist: list[Any] = []  # async callables(did): a remote artist seen for the first time

    # ---- resolving references -------------------------------------------------------------------------------------

    async def known(self, uri: str) -> int | None:
        row = await self.db.fetchone("SELECT id FROM tracks WHERE record_uri = ?", (uri,))
        return row["id"] if row else None

    async def resolve(self, uri: Any, cid: Any = None) -> int | None:
        """The track a strongRef names: this node's own or a known remote one at once; otherwise its record is read
        from its artist's PDS and adopted. A known remote track whose CID differs from `cid` is read again (the
        record changed). None when it cannot be resolved now (logged)."""
        parsed = parse_track_uri(uri)
        if parsed is None:
            return None
        row = await self._known_row(uri)
        if row is not None and not _worth_reading(row, cid):
            return int(row["id"])
        lock = self._locks.get(uri)
        if lock is None:
            lock = self._locks[uri] = asyncio.Lock()
        async with lock:
            row = await self._known_row(uri)
            if row is not None and not _worth_reading(row, cid):
                return int(row["id"])
            did, rkey = parsed
            outcome = await self._fetch_and_adopt(did, rkey)
            if outcome is None and row is not None:
                return int(row["id"])  # known before: keep it (shown as it was) until the PDS answers again
            return outcome

    async def _known_row(self, uri: str) -> Any:
        return await self.db.fetchone(
            "SELECT t.id, t.source, t.record_cid, rt.fetched_at FROM tracks t"
            " LEFT JOIN remote_tracks rt ON rt.track_id = t.id WHERE t.record_uri = ?", (uri,))

    async def resolve_many(self, refs: Iterable[tuple[Any, Any]]) -> dict[str, int]:
        """Resolve many strongRefs (uri, cid) at once (a few PDS requests at a time); uri -> track id for those
        resolved."""
        wanted = {uri: cid for uri, cid in refs if parse_track_uri(uri) is not None}
        results = await asyncio.gather(*(self.resolve(uri, cid) for uri, cid in wanted.items()))
        return {uri: tid for uri, tid in zip(wanted, results, strict=True) if tid is not None}

    async def _fetch_and_adopt(self, did: str, rkey: str) -> int | None:
        uri = at_uri(did, TRACK_COLLECTION, rkey)
        try:
            async with self._fetches:
                ident = await self.identity.resolve(did)
                got = await get_json(self.http, f"{ident.pds_url.rstrip('/')}/xrpc/com.atproto.repo.getRecord",
                                     params={"repo": did, "collection": TRACK_COLLECTION, "rkey": rkey},
                                     max_bytes=256 * 1024)
        except UpstreamStatusError as e:
            if e.error in INACTIVE_ERRORS:
                await self.set_repo_status(did, INACTIVE_ERRORS[e.error])
            elif e.error in GONE_ERRORS or e.status == 404:
                await self.mark_gone(uri, "its record was deleted")
            log.info("remote track not resolved", extra={"fields": {"uri": uri, "reason": e.detail}})
            return None
        except PlyrdError as e:  # unreachable, refused by the SSRF guard, an identity that does not resolve
            log.info("remote track not resolved", extra={"fields": {"uri": uri, "reason": e.detail}})
            return None
        if got.get("uri") != uri or not isinstance(got.get("cid"), str):
            log.info("remote track not resolved", extra={"fields": {"uri": uri, "reason": "the PDS answered for "
                                                                    "another record"}})
            return None
        return await self.adopt(did, rkey, got["cid"], got.get("value"), pds_url=ident.pds_url, handle=ident.handle)

    # ---- adopting records -------------------------------------------------------------------------------------------

    async def adopt(self, did: str, rkey: str, cid: str, value: Any, *, pds_url: str | None = None,
                    handle: str | None = None) -> int | None:
        """Make (or update) the remote track of this record, already in hand (from getRecord or an ingest event).
        A record of this node's own tracks is left alone (the node's track is the record's source). Returns the
        track id, or None when the record is not acceptable (logged)."""
        uri = at_uri(did, TRACK_COLLECTION, rkey)
        try:
            rec = read_record(did, rkey, cid, value)
        except Skip as s:
            log.info("remote track record refused", extra={"fields": {"uri": uri, "reason": s.reason}})
            return None
        existing = await self.db.fetchone(
            "SELECT t.id, t.source, t.record_cid, t.status, t.image_sha, t.thumb_sha, t.display_sha, t.image_mime,"
            " rt.image_url FROM tracks t LEFT JOIN remote_tracks rt ON rt.track_id = t.id WHERE t.record_uri = ?",
            (uri,))
        if existing is not None and existing["source"] != REMOTE_SOURCE:
            return int(existing["id"])
        if existing is not None and existing["record_cid"] == cid and existing["status"] != "unavailable":
            await self.db.execute(f"UPDATE remote_tracks SET fetched_at = {_NOW_SQL} WHERE track_id = ?",
                                  (existing["id"],))
            return int(existing["id"])
        same_image = existing is not None and existing["image_url"] == rec.image_url
        artwork, stored = (Artwork.of(existing), []) if same_image else await self._artwork(rec)
        if pds_url is None:
            try:
                ident = await self.identity.resolve(did)
                pds_url, handle = ident.pds_url, ident.handle
            except PlyrdError:
                pds_url = None
        new_artist = False
        released: list[str] = []
        async with self.store.releasing(stored), self.db.write() as conn:
            async with conn.execute("SELECT 1 FROM users WHERE did = ?", (did,)) as cur:
                new_artist = await cur.fetchone() is None
            await _upsert_person(conn, did, handle=handle, pds_url=pds_url, name=rec.artist)
            async with conn.execute("SELECT id FROM tracks WHERE record_uri = ?", (uri,)) as cur:
                row = await cur.fetchone()  # again, inside the transaction: ingest and reconcile may race
            status = "unavailable" if rec.unavailable else "ready"
            columns = (rec.title, rec.album, rec.description, _json(rec.tags), rec.audio_sha, rec.ext, rec.mime,
                       rec.ext, rec.ext, rec.duration, status, rec.cid, _json(rec.features), _json(rec.labels))
            if row is None:
                cur = await conn.execute(
                    "INSERT INTO tracks(artist_did, title, album, description, tags, original_sha, original_ext,"
                    " original_mime, container, codec, duration, sample_rate, channels, status, record_cid,"
                    " features, self_labels, rkey, record_uri, created_at, source)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (did, *columns, rkey, uri, rec.created_at, REMOTE_SOURCE))
                track_id = int(cur.lastrowid or 0)
            else:
                track_id = int(row["id"])
                await conn.execute(
                    "UPDATE tracks SET title = ?, album = ?, description = ?, tags = ?, original_sha = ?,"
                    " original_ext = ?, original_mime = ?, container = ?, codec = ?, duration = ?, status = ?,"
                    f" record_cid = ?, features = ?, self_labels = ?, updated_at = {_NOW_SQL} WHERE id = ?",
                    (*columns, track_id))
            await set_track_tags(conn, track_id, rec.tags)
            released += await set_artwork(conn, self.store, "tracks", track_id, artwork)
            await conn.execute(
                "INSERT INTO remote_tracks(track_id, audio_cid, audio_size, audio_url, image_url, gone_reason)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(track_id) DO UPDATE SET audio_cid = excluded.audio_cid,"
                " audio_size = excluded.audio_size, audio_url = excluded.audio_url, image_url = excluded.image_url,"
                f" gone_reason = excluded.gone_reason, fetched_at = {_NOW_SQL}",
                (track_id, rec.audio_cid, rec.audio_size, rec.audio_url, rec.image_url, rec.unavailable))
        await self.store.remove_unreferenced(released)
        log.info("remote track adopted", extra={"fields": {"uri": uri, "track_id": track_id, "cid": cid,
                                                           "unavailable": rec.unavailable}})
        if new_artist:
            for callback in self.on_new_artist:
                try:
                    await callback(did)
                except Exception:  # a profile that cannot be read costs the track nothing
                    log.warning("new remote artist hook failed", exc_info=True, extra={"fields": {"did": did}})
        return track_id

    async def _artwork(self, rec: RemoteRecord) -> tuple[Artwork | None, list[str]]:
        """Cover art from a blob of the artist's own repo, stored as an upload's is, and every blob stored for it
        (unreferenced until the row takes the artwork: the caller releases them after its transaction; the image
        as fetched may be the artwork's own original). A broken cover costs the track nothing. Other https
        imageUrls are shown as they are."""
        sha = sha_of_cid(rec.image_cid) if rec.image_cid else None
        if rec.image_cid is None or sha is None:
            return None, []
        try:
            ident = await self.identity.resolve(rec.did)
            blob = await fetch_blob(self.http, self.store, pds_url=ident.pds_url, did=rec.did, cid=rec.image_cid,
                                    sha=sha, mime="application/octet-stream",
                                    max_bytes=int(self.config["media.max_image_mb"]) * 1024 * 1024,
                                    what="cover art", limit_name="media.max_image_mb")
        except (Skip, PlyrdError) as e:
            log.info("remote track's cover skipped", extra={"fields": {"uri": rec.uri, "reason": str(e)}})
            return None, []
        try:
            artwork = await self.uploads.store_image(blob.path)
        except PlyrdError as e:
            log.info("remote track's cover skipped", extra={"fields": {"uri": rec.uri, "reason": e.detail}})
            return None, [blob.sha256]
        return artwork, [blob.sha256, *artwork.blobs()]

    # ---- records that went away -------------------------------------------------------------------------------------

    async def mark_gone(self, uri: str, reason: str) -> bool:
        """A remote track whose record is gone: unavailable, its row kept for the likes and playlists naming it."""
        async with self.db.write() as conn:
            cur = await conn.execute(
                f"UPDATE tracks SET status = 'unavailable', updated_at = {_NOW_SQL}"
                f" WHERE record_uri = ? AND source = '{REMOTE_SOURCE}' AND status != 'unavailable'", (uri,))
            if cur.rowcount:
                await conn.execute(
                    "UPDATE remote_tracks SET gone_reason = ? WHERE track_id = (SELECT id FROM tracks"
                    " WHERE record_uri = ?)", (reason, uri))
        return bool(cur.rowcount)

    async def set_repo_status(self, did: str, status: str | None) -> None:
        """A repo's hosting status (None: active). Only people the node knows are recorded."""
        await self.db.execute("UPDATE users SET repo_status = ? WHERE did = ?", (status, did))

    async def refresh(self, track_id: int) -> int | None:
        """Read a remote track's record again (the next sync): changed, gone, or as it was."""
        row = await self.db.fetchone(
            f"SELECT artist_did, rkey FROM tracks WHERE id = ? AND source = '{REMOTE_SOURCE}'", (track_id,))
        if row is None:
            return None
        uri = at_uri(row["artist_did"], TRACK_COLLECTION, row["rkey"])
        lock = self._locks.get(uri)
        if lock is None:
            lock = self._locks[uri] = asyncio.Lock()
        async with lock:
            return await self._fetch_and_adopt(row["artist_did"], row["rkey"])

    async def refresh_referenced(self, did: str, older_than: float, limit: int = 100) -> int:
        """Read again the remote tracks `did` likes or has in a playlist, not read for `older_than` seconds: their
        sync brings what changed or went away on the artist's side (reconcile calls this)."""
        rows = await self.db.fetchall(
            "SELECT rt.track_id FROM remote_tracks rt WHERE rt.fetched_at < ? AND rt.track_id IN ("
            " SELECT track_id FROM likes WHERE did = ? UNION SELECT pi.track_id FROM playlist_items pi"
            " JOIN playlists p ON p.id = pi.playlist_id WHERE p.owner_did = ?) ORDER BY rt.fetched_at LIMIT ?",
            (time.time() - older_than, did, did, limit))
        for r in rows:
            await self._refresh_once(r["track_id"])
        return len(rows)

    async def _refresh_once(self, track_id: int) -> None:
        await self.refresh(track_id)
        # a record that could not be read is not asked for again at once
        await self.db.execute(f"UPDATE remote_tracks SET fetched_at = {_NOW_SQL} WHERE track_id = ?", (track_id,))

    async def refresh_stale(self, older_than: float, limit: int = 200) -> int:
        """Read again the remote tracks not read for `older_than` seconds, oldest first; how many were read."""
        rows = await self.db.fetchall(
            "SELECT track_id FROM remote_tracks WHERE fetched_at < ? ORDER BY fetched_at LIMIT ?",
            (time.time() - older_than, limit))
        for r in rows:
            await self._refresh_once(r["track_id"])
        return len(rows)


def _worth_reading(row: Any, cid: Any) -> bool:
    """Whether a known track's record should be read again for a reference naming `cid`: only a remote track, only
    when the reference names another version, and at most every RECHECK_SECONDS (a client naming made-up CIDs must
    not make the node ask a PDS on every request)."""
    if row["source"] != REMOTE_SOURCE or not isinstance(cid, str) or cid == row["record_cid"]:
        return False
    return row["fetched_at"] is None or time.time() - row["fetched_at"] > RECHECK_SECONDS


async def _upsert_person(conn: Any, did: str, *, handle: str | None, pds_url: str | None, name: str | None) -> None:
    """The users row of someone the node meets through the network: their DID, verified handle (unless another
    row holds it: handles move, and the other row learns its new one when it is next resolved) and PDS, and a name
    (the record's artist) until their profile gives one."""
    await conn.execute(
        "INSERT INTO users(did, handle, pds_url, display_name) VALUES (?, (SELECT ? WHERE NOT EXISTS"
        " (SELECT 1 FROM users WHERE handle = ?)), ?, ?) ON CONFLICT(did) DO UPDATE SET"
        " pds_url = coalesce(excluded.pds_url, users.pds_url),"
        " display_name = coalesce(users.display_name, excluded.display_name)",
        (did, handle, handle, pds_url, name or None))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


