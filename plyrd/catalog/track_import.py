"""Importing an artist's own fm.plyr.track records made by another client (plyr.fm, another plyrd).

An artist who moves here already has their tracks as records in their repo, most with the audio itself as a blob
(`audioBlob`). Reconciliation hands this module the artist's track records; each one this node does not carry is:

1. checked: a valid track record with an `audioBlob` (a record with only `audioUrl` has its audio on someone else's
   server, and plyrd never fetches arbitrary URLs), not supporters-only (plyrd has no gating: importing would make
   it public), and within `storage.max_upload_mb`;
2. fetched from the artist's own PDS with com.atproto.sync.getBlob (public), through the SSRF-guarded client,
   streamed into the blob store under the same size limit, and kept only if its bytes hash to the blob's CID;
3. probed like any upload (what a file is is decided by its bytes) and handed to `Uploads.accept_import`: the same
   durable job as an upload (web rendition when needed, waveform, loudness; resumed after a crash), with the track
   created at once holding the record's uri and cid, so likes, comments and playlists that point at that record
   resolve in the same reconciliation.

The record itself is never rewritten by an import: it stays exactly as the other client wrote it, audioBlob and
audioUrl included, so plyr.fm and other clients go on playing it. Only when the artist edits the track here is it
republished, like any track of this node (this node's audioUrl, the playable file as audioBlob).

Whatever goes wrong with one record is a skip with a reason, in the report and the log; nothing is kept for it (no
row, no file) and reconciliation goes on. Skipped records are looked at again at the next reconciliation, except one
whose import failed during processing: that one waits until the record changes (a new CID), so a file that breaks
the pipeline is not downloaded again at every sign-in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import libipld

from ..atproto.cbor import blob_cid
from ..atproto.lexicon import RecordInvalid, validate, validate_value
from ..atproto.net import describe_url
from ..atproto.outbox import queued_rkeys
from ..atproto.records import at_uri
from ..atproto.xrpc import PDSSession
from ..config import Config
from ..db import Database
from ..errors import PlyrdError, TooLarge
from ..storage import Blob, BlobStore
from .artwork import Artwork
from .publishing import TRACK_COLLECTION
from .uploads import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    ExistingRecord,
    UploadFields,
    Uploads,
)

log = logging.getLogger("plyrd.track_import")

_ERROR_BODY_LIMIT = 64 * 1024  # an error answer is read only to quote it


class Skip(Exception):
    """One record is not imported; `reason` says why, for the artist."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ImportResult:
    imported: list[dict[str, Any]] = field(default_factory=list)  # {uri, title, track_id, upload_id}
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {uri, title, reason}

    def as_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "skipped": self.skipped}


@dataclass(frozen=True)
class Plan:
    """What a record says, checked, before anything is fetched."""

    record: ExistingRecord
    fields: UploadFields
    audio_cid: str
    audio_sha: str  # the SHA-256 the blob's CID names: the bytes must hash to it
    audio_mime: str
    image_cid: str | None  # cover art, when imageUrl is a blob in the artist's own repo


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def record_tags(value: Any) -> list[str]:
    """plyr.fm's lexicon has no tags (plyr.fm keeps them in its database), but a record may carry a `tags` list of
    strings: normalised like an upload's, and what does not fit is left out rather than refusing the track."""
    out: list[str] = []
    for tag in value if isinstance(value, list) else []:
        if isinstance(tag, str) and (tag := " ".join(tag.lower().split())) and len(tag) <= MAX_TAG_CHARS:
            if tag not in out:
                out.append(tag)
    return out[:MAX_TAGS]


def record_labels(value: Any) -> list[str]:
    vals = value.get("values") if isinstance(value, Mapping) else None
    out = [v["val"] for v in vals or [] if isinstance(v, Mapping) and isinstance(v.get("val"), str)
           and 0 < len(v["val"]) <= MAX_LABEL_CHARS]
    return list(dict.fromkeys(out))[:MAX_LABELS]


def image_cid_of(image_url: Any, did: str) -> str | None:
    """The CID when imageUrl is com.atproto.sync.getBlob for this artist's repo (then it is fetched from their own
    PDS, whatever host the URL names); any other URL is not fetched."""
    if not isinstance(image_url, str):
        return None
    parts = urllib.parse.urlsplit(image_url)
    if not parts.path.endswith("/xrpc/com.atproto.sync.getBlob"):
        return None
    query = urllib.parse.parse_qs(parts.query)
    cid = (query.get("cid") or [None])[0]
    return cid if (query.get("did") or [None])[0] == did and cid else None


def sha_of_cid(cid: str) -> str | None:
    """The SHA-256 hex a blob CID names, or None when it is not a raw-codec sha2-256 CIDv1 (as every blob is)."""
    try:
        digest = libipld.decode_cid(cid)["hash"]["digest"]
        sha = bytes(digest).hex()
        return sha if len(sha) == 64 and blob_cid(sha) == cid else None
    except (ValueError, KeyError, TypeError, PlyrdError):
        return None


def plan_import(did: str, rkey: str, rec: Mapping[str, Any], *, max_bytes: int) -> Plan:
    """Check one fm.plyr.track record for import; raises Skip with the reason."""
    value = rec.get("value")
    if not isinstance(value, Mapping):
        raise Skip("the record has no value")
    uri = rec.get("uri")
    if uri != at_uri(did, TRACK_COLLECTION, rkey) or not isinstance(rec.get("cid"), str):
        raise Skip("the record's uri or cid is not what its repository says")
    blob = value.get("audioBlob")
    try:
        # The audio is checked from its bytes below, not from the declared type, so the blob's `accept` and the
        # lexicon's 100 MB are not applied here; this node's own limit is.
        validate(TRACK_COLLECTION, {k: v for k, v in value.items() if k != "audioBlob"})
        if blob is not None:
            validate_value({"type": "blob"}, blob, lexicon=TRACK_COLLECTION, path="$.audioBlob")
    except RecordInvalid as e:
        raise Skip(f"not a valid fm.plyr.track record: {e.detail}") from None
    if blob is None:
        if not isinstance(value.get("audioUrl"), str):
            raise Skip("no audioBlob and no audioUrl: the record has no audio")
        raise Skip(f"no audioBlob: its audio is only at {describe_url(value['audioUrl'])}, and this node fetches "
                   "audio only from the artist's own PDS")
    if value.get("supportGate") is not None:
        raise Skip("supporters-only (supportGate): this node has no supporter gating, so importing it would make "
                   "it public")
    cid = blob["ref"]["$link"]
    sha = sha_of_cid(cid)
    if sha is None:
        raise Skip(f"its audioBlob CID {cid} is not a sha2-256 raw blob CID")
    if blob["size"] > max_bytes:
        raise Skip(f"its audio is {_mb(blob['size'])}, over this node's limit of {_mb(max_bytes)} "
                   "(storage.max_upload_mb)")
    created = datetime.fromisoformat(value["createdAt"].replace("Z", "+00:00")).timestamp()
    features = [{k: f[k] for k in ("did", "handle") if isinstance(f.get(k), str)}
                for f in value.get("features") or [] if isinstance(f, Mapping)]
    record = ExistingRecord(uri=uri, cid=rec["cid"], rkey=rkey, value=dict(value), created_at=created,
                            features=features)
    fields = UploadFields(
        title=value["title"].strip() or None,
        album=(value.get("album") or "").strip() or None,
        description=(value.get("description") or "").strip() or None,
        tags=record_tags(value.get("tags")),
        self_labels=record_labels(value.get("labels")),
    )
    return Plan(record=record, fields=fields, audio_cid=cid, audio_sha=sha, audio_mime=blob["mimeType"],
                image_cid=image_cid_of(value.get("imageUrl"), did))


async def _error_body(response: httpx.Response) -> dict[str, Any]:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            break
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


async def fetch_blob(http: httpx.AsyncClient, store: BlobStore, *, pds_url: str, did: str, cid: str, sha: str,
                     mime: str, max_bytes: int, what: str = "audio",
                     limit_name: str = "storage.max_upload_mb") -> Blob:
    """Stream one blob of `did`'s repo from its PDS into the store, at most `max_bytes`, and keep it only if its
    bytes are the ones the CID names (`sha`). Raises Skip with the reason (naming the blob `what`, the limit
    `limit_name`); on any failure nothing stays stored."""
    name = describe_url(pds_url)
    url = f"{pds_url.rstrip('/')}/xrpc/com.atproto.sync.getBlob"
    try:
        async with http.stream("GET", url, params={"did": did, "cid": cid}) as response:
            if not response.is_success:
                err = await _error_body(response)
                error, message = str(err.get("error") or ""), str(err.get("message") or "")
                if response.status_code == 404 or error == "BlobNotFound" or "not found" in message.lower():
                    raise Skip(f"its {what} blob is missing at the PDS ({name}: {error or response.status_code}"
                               f"{': ' + message if message else ''})")
                said = ": ".join(p for p in (error, message) if p)
                raise Skip(f"the PDS ({name}) answered HTTP {response.status_code} for its {what} blob"
                           f"{': ' + said if said else ''}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{declared} bytes")
            async with await store.open_writer(max_bytes=max_bytes) as writer:
                async for chunk in response.aiter_bytes():  # decoded: the limit is on the blob's own bytes
                    await writer.write(chunk)  # TooLarge past the limit, its temporary file removed
                blob = await writer.commit(mime)
    except TooLarge:
        raise Skip(f"its {what} is over this node's limit of {_mb(max_bytes)} ({limit_name})") from None
    except httpx.TimeoutException:
        raise Skip(f"the PDS ({name}) did not send its {what} blob in time") from None
    except httpx.HTTPError as e:
        raise Skip(f"could not fetch its {what} blob from the PDS ({name}): {e or type(e).__name__}") from None
    except PlyrdError as e:  # the SSRF guard refusing the PDS's address, among others
        raise Skip(f"could not fetch its {what} blob: {e.detail}") from None
    if blob.sha256 != sha:
        # A PDS that sends other bytes than the CID names is broken or lying: keep nothing of it.
        await store.remove_unreferenced([blob.sha256])
        raise Skip(f"the bytes the PDS sent for its {what} do not match the blob's CID {cid} (they hash to "
                   f"{blob.sha256})")
    return blob


class TrackImporter:
    """Imports an artist's fm.plyr.track records that this node does not carry (see the module docstring)."""

    def __init__(self, db: Database, store: BlobStore, uploads: Uploads, http: httpx.AsyncClient,
                 config: Config) -> None:
        self.db = db
        self.store = store
        self.uploads = uploads
        self.http = http
        self.config = config
        # One pass per artist at a time (sign-in and POST /sync/reconcile may race): never fetch a blob twice.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def max_bytes(self) -> int:
        return int(self.config["storage.max_upload_mb"]) * 1024 * 1024

    async def import_records(self, session: PDSSession, remote: Mapping[str, Mapping[str, Any]]) -> ImportResult:
        """Import what `remote` (rkey -> {uri, cid, value}, the artist's fm.plyr.track records) holds that this node
        does not; the artist is `session.did`. Never raises for one record: each problem is a skip."""
        did = session.did
        lock = self._locks.get(did)
        if lock is None:
            lock = self._locks[did] = asyncio.Lock()
        result = ImportResult()
        async with lock:
            known = await self.db.fetchall(
                "SELECT rkey, record_uri FROM tracks WHERE artist_did = ? AND (rkey IS NOT NULL OR record_uri IS NOT"
                " NULL)", (did,))
            here = {r["rkey"] for r in known} | {r["record_uri"] for r in known}  # imported, importing or our own
            # A write of this node's still on its way (a track deleted here, its delete not sent yet): not foreign.
            pending = await queued_rkeys(self.db, did, TRACK_COLLECTION)
            failed = {r["record_uri"]: r for r in await self.db.fetchall(
                "SELECT u.record_uri, u.record_cid, j.error FROM uploads u JOIN jobs j ON j.id = u.job_id"
                " WHERE u.did = ? AND u.record_uri IS NOT NULL AND j.state = 'failed' ORDER BY u.created_at",
                (did,))}
            # Oldest first, so imported tracks are created in the order they were published.
            for rkey, rec in sorted(remote.items()):
                uri = rec.get("uri")
                if rkey in here or uri in here or rkey in pending:
                    continue
                value = rec.get("value")
                title = value.get("title") if isinstance(value, Mapping) else None
                try:
                    previous = failed.get(uri)
                    if previous is not None and previous["record_cid"] == rec.get("cid"):
                        raise Skip(f"its import failed before ({previous['error']}); it is tried again when the "
                                   "record changes")
                    result.imported.append(await self._import_one(session, rkey, rec))
                except Skip as s:
                    result.skipped.append({"uri": uri, "title": title, "reason": s.reason})
                    log.info("track not imported", extra={"fields": {"did": did, "uri": uri, "reason": s.reason}})
                except Exception as e:  # one record must never stop the others, nor reconciliation
                    reason = e.detail if isinstance(e, PlyrdError) else f"unexpected error: {e!r}"
                    result.skipped.append({"uri": uri, "title": title, "reason": reason})
                    log.warning("track import failed", exc_info=not isinstance(e, PlyrdError),
                                extra={"fields": {"did": did, "uri": uri, "reason": reason}})
        return result

    async def _import_one(self, session: PDSSession, rkey: str, rec: Mapping[str, Any]) -> dict[str, Any]:
        did = session.did
        plan = plan_import(did, rkey, rec, max_bytes=self.max_bytes)
        same = await self.db.fetchone("SELECT id FROM tracks WHERE artist_did = ? AND original_sha = ?",
                                      (did, plan.audio_sha))
        if same is not None:  # the CID names the bytes: no need to fetch them to know
            raise Skip(f"the same audio is already here as track {same['id']}")
        blob = await fetch_blob(self.http, self.store, pds_url=session.pds_url, did=did, cid=plan.audio_cid,
                                sha=plan.audio_sha, mime=plan.audio_mime, max_bytes=self.max_bytes)
        # What the upload comes to reference stays; anything else fetched or made for this record goes.
        async with self.store.releasing([blob.sha256]) as stored:
            try:
                info = await self.uploads.probe_file(blob.path)
            except PlyrdError as e:
                raise Skip(f"not audio this node accepts: {e.detail}") from None
            artwork = await self._artwork(session, plan, stored)
            try:
                upload_id, track_id = await self.uploads.accept_import(
                    did=did, fields=plan.fields, audio_sha=blob.sha256, info=info, artwork=artwork,
                    record=plan.record)
            except PlyrdError as e:
                raise Skip(e.detail) from None
        log.info("track imported", extra={"fields": {"did": did, "uri": plan.record.uri, "track_id": track_id,
                                                     "upload_id": upload_id, "bytes": blob.size}})
        return {"uri": plan.record.uri, "title": plan.fields.title, "track_id": track_id, "upload_id": upload_id}

    async def _artwork(self, session: PDSSession, plan: Plan, stored: list[str]) -> Artwork | None:
        """Cover art only from a blob in the artist's repo; a broken or missing one costs the track nothing (the
        file's embedded cover, if any, is used instead). What it stores is added to `stored`, which the caller
        releases once the upload references what it keeps (the original image may be the very bytes fetched)."""
        if plan.image_cid is None:
            return None
        sha = sha_of_cid(plan.image_cid)
        if sha is None:
            return None
        max_image = int(self.config["media.max_image_mb"]) * 1024 * 1024
        try:
            blob = await fetch_blob(self.http, self.store, pds_url=session.pds_url, did=session.did,
                                    cid=plan.image_cid, sha=sha, mime="application/octet-stream",
                                    max_bytes=max_image, what="cover art", limit_name="media.max_image_mb")
        except Skip as s:
            log.info("imported track's cover skipped", extra={"fields": {"uri": plan.record.uri, "reason": s.reason}})
            return None
        stored.append(blob.sha256)
        try:
            artwork = await self.uploads.store_image(blob.path)
        except PlyrdError as e:
            log.info("imported track's cover skipped", extra={"fields": {"uri": plan.record.uri, "reason": e.detail}})
            return None
        stored += artwork.blobs()
        return artwork
