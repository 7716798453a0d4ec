"""Uploads: accept a file (decided by its bytes), then make it a playable track in the background.

Accepting (in the request, `accept_upload`): the form's files are already in the blob store, unreferenced. The
audio is probed, so a file plyrd cannot use answers a clear 4xx; artwork is checked and rendered; one transaction
writes the upload row (holding references on its files) and its job. Whatever the request stored that the upload
does not keep is removed, however the request ends: a refused file leaves no row and no file.

Processing (the `upload.process` job, resumable): create the track (playable at once when browsers can play the
original), transcode a web rendition when needed, then analyse (waveform peaks, loudness). Each step checks what is
already done, so a job interrupted by a crash picks up where it stopped. The track takes over the upload's file
references; an upload that finally fails releases them and removes its half-made track.

Imports (`accept_import`, used by plyrd.catalog.track_import) run the same job for audio whose fm.plyr.track record
another client already made: the track is created at once with that record's uri and cid, and nothing is published,
so the artist's record stays exactly as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..atproto.outbox import remember
from ..config import Config
from ..db import Database
from ..errors import Conflict, InvalidInput, NotFound
from ..jobs import Job, Reporter, enqueue, is_permanent, watch_job
from ..storage import Blob, BlobStore
from ..threads import ThreadSlots
from . import albums
from .artwork import Artwork, column_values, store_rendered
from .lists import album_ids_of_track, publish_album
from .publishing import TRACK_COLLECTION, publish_track
from .tracks import remove_track, set_track_tags

if TYPE_CHECKING:
    from ..atproto.identity import IdentityResolver
    from ..media.probe import AudioInfo

# plyrd.media pulls in PyAV, numpy and Pillow (about 35 MB): imported on first use, so an idle node stays small.

log = logging.getLogger("plyrd.uploads")

JOB_KIND = "upload.process"
MAX_TAGS = 10
MAX_TAG_CHARS = 50
MAX_TITLE_CHARS = 256
MAX_DESCRIPTION_CHARS = 5000
MAX_LABELS = 10
MAX_LABEL_CHARS = 128


@dataclass(frozen=True)
class ExistingRecord:
    """An fm.plyr.track record already on the artist's PDS, which an import adopts instead of publishing one."""

    uri: str
    cid: str
    rkey: str
    value: dict[str, Any]  # the record as the PDS holds it
    created_at: float  # its createdAt: the track keeps its place in time
    features: list[dict[str, str]] = field(default_factory=list)  # [{did, handle?}] as tracks.features holds them


class StoredFile(Protocol):
    """A file as a client sent it, already in the blob store and referenced by nothing yet (what
    plyrd.web.upload_stream reads a multipart form's files into)."""

    @property
    def filename(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class UploadFields:
    title: str | None
    album: str | None  # an upload's `album`: a title, found or created among the artist's albums; an import's: text
    description: str | None
    tags: list[str]
    self_labels: list[str] = field(default_factory=list)  # the artist's content notice, e.g. ["nudity"]
    unlisted: bool = False
    album_id: str | None = None  # an album of the uploader's to put the track on (never with `album`)
    features: list[dict[str, str]] = field(default_factory=list)  # [{did, handle}], resolved when accepted
    download_policy: str | None = None  # the track's own (tracks.download_policy); None follows the artist's


# Every text field an upload may carry: plyr.fm's form as the web player, the plyrfm SDK and its CLI send it, plus
# plyrd's own `unlisted` and `download_policy`. Anything else is refused by name rather than silently dropped.
UPLOAD_FIELDS = ("title", "album", "album_id", "description", "tags", "features", "self_labels", "unlisted",
                 "visibility", "publishing", "download_policy")
VISIBILITIES = {"public": False, "unlisted": True}  # plyr.fm's visibility -> tracks.unlisted


def parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise InvalidInput(f"{name} must be true or false")


def parse_json_list(name: str, raw: str, *, limit: int, item_chars: int) -> list[str]:
    try:
        value = json.loads(raw) if raw.strip() else []
    except json.JSONDecodeError:
        raise InvalidInput(f"{name} must be a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{name} must be a JSON list of strings")
    value = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if len(value) > limit:
        raise InvalidInput(f"at most {limit} {name}")
    if any(len(v) > item_chars for v in value):
        raise InvalidInput(f"each of {name} must be at most {item_chars} characters")
    return value


def _text(fields: dict[str, str], name: str, limit: int) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} must be at most {limit} characters")
    return value or None


def _visibility(name: str, raw: str) -> bool:
    """plyr.fm's `visibility` as plyrd's unlisted flag. plyrd has no supporters-only or private tracks: taking
    either as public would publish what the artist meant to keep in, so they are refused."""
    value = raw.strip().lower()
    if value not in VISIBILITIES:
        raise InvalidInput(f"{name} must be public or unlisted (plyrd has no supporters-only or private tracks)")
    return VISIBILITIES[value]


@dataclass(frozen=True)
class Publishing:
    """What plyrd takes from the plyrfm SDK's `publishing` field (its PublishingDefaults, "a complete publishing
    override" of the artist's template for this track): its visibility and download policy."""

    unlisted: bool | None = None
    download_policy: str | None = None


def parse_publishing(raw: str) -> Publishing:
    """The SDK's `{"access": {"listening", "downloads", "visibility"}, "attach_rights"}`. Honoured: visibility
    (public/unlisted) and downloads (plyr.fm's open/ask/off, or plyrd's tiers: the track's download policy).
    `listening` must be public: plyrd has no listening gates, and playing a gated track for everyone would go against
    what the artist asked. `attach_rights` (plyr.fm attaches its rights records to the track) is checked and then
    ignored on purpose: plyrd keeps no rights records, and leaving them out opens nothing up."""
    from .downloads import parse_policy

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput('publishing must be a JSON object like {"access": {"visibility": "unlisted"}}') from None
    if not isinstance(value, dict):
        raise InvalidInput('publishing must be a JSON object like {"access": {"visibility": "unlisted"}}')
    if unknown := sorted(set(value) - {"access", "attach_rights"}):
        raise InvalidInput(f"unknown publishing field(s): {', '.join(unknown)}; known: access, attach_rights")
    if not isinstance(value.get("attach_rights", False), bool):
        raise InvalidInput("publishing.attach_rights must be true or false")
    access = value.get("access", {})
    if not isinstance(access, dict):
        raise InvalidInput("publishing.access must be a JSON object")
    if unknown := sorted(set(access) - {"listening", "downloads", "visibility"}):
        raise InvalidInput(f"unknown publishing.access field(s): {', '.join(unknown)}; known: listening, downloads,"
                           " visibility")
    for key in access:
        if not isinstance(access[key], str):
            raise InvalidInput(f"publishing.access.{key} must be a string")
    if access.get("listening", "public").strip().lower() != "public":
        raise InvalidInput("publishing.access.listening must be public: on plyrd anyone may listen to a track")
    return Publishing(
        unlisted=_visibility("publishing.access.visibility", access["visibility"]) if "visibility" in access else None,
        download_policy=parse_policy("publishing.access.downloads", access["downloads"])
        if "downloads" in access else None,
    )


def _agreed(what: str, values: dict[str, Any]) -> Any:
    """The one value several fields set (None when none does); 400 naming them when they disagree."""
    given = {name: v for name, v in values.items() if v is not None}
    if len(set(given.values())) > 1:
        raise InvalidInput(f"{' and '.join(given)} disagree about the track's {what}; send one of them")
    return next(iter(given.values()), None)


def parse_fields(fields: Mapping[str, str]) -> UploadFields:
    """Validate the form's text fields (plyr.fm's limits: 10 tags of up to 50 characters). An unknown field is
    refused by name; `features` is checked here and resolved to DIDs by `Uploads.accept_upload`."""
    from .downloads import parse_track_policy

    if unknown := sorted(set(fields) - set(UPLOAD_FIELDS)):
        raise InvalidInput(f"unknown upload field(s): {', '.join(unknown)}; accepted: {', '.join(UPLOAD_FIELDS)}")
    tags: list[str] = []
    raw = fields.get("tags")
    if raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise InvalidInput('tags must be a JSON list of strings, like ["ambient", "field recording"]') from None
        if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
            raise InvalidInput('tags must be a JSON list of strings, like ["ambient", "field recording"]')
        for tag in parsed:
            tag = " ".join(tag.lower().split())
            if not tag:
                continue
            if len(tag) > MAX_TAG_CHARS:
                raise InvalidInput(f"each tag must be at most {MAX_TAG_CHARS} characters")
            if tag not in tags:
                tags.append(tag)
        if len(tags) > MAX_TAGS:
            raise InvalidInput(f"at most {MAX_TAGS} tags")
    album = _text(fields, "album", MAX_TITLE_CHARS)
    album_id = albums.parse_uuid(fields["album_id"], "album") if (fields.get("album_id") or "").strip() else None
    if album and album_id:
        raise InvalidInput("album and album_id are mutually exclusive")  # plyr.fm's words
    publishing = parse_publishing(fields["publishing"]) if (fields.get("publishing") or "").strip() else Publishing()
    unlisted = _agreed("visibility", {
        "unlisted": parse_bool("unlisted", fields["unlisted"]) if "unlisted" in fields else None,
        "visibility": _visibility("visibility", fields["visibility"]) if "visibility" in fields else None,
        "publishing.access.visibility": publishing.unlisted,
    })
    download_policy = _agreed("download policy", {
        "download_policy": parse_track_policy("download_policy", fields["download_policy"])
        if "download_policy" in fields else None,
        "publishing.access.downloads": publishing.download_policy,
    })
    return UploadFields(
        title=_text(fields, "title", MAX_TITLE_CHARS),
        album=album,
        description=_text(fields, "description", MAX_DESCRIPTION_CHARS),
        tags=tags,
        self_labels=parse_json_list("self_labels", fields.get("self_labels") or "", limit=MAX_LABELS,
                                    item_chars=MAX_LABEL_CHARS),
        unlisted=bool(unlisted),
        album_id=album_id,
        download_policy=download_policy,
    )


async def _resolve_features(raw: str, resolver: IdentityResolver, did: str) -> list[dict[str, str]]:
    """Featured artists as PATCH /tracks/{id} takes them (a JSON list of handles or DIDs, resolved now, so a name
    that cannot be found is a 400 here rather than a failed job), as tracks.features holds them: [{did, handle}]."""
    from .editing import parse_changes  # editing builds on this module

    changes = await parse_changes({"features": raw}, resolver, owner_did=did)
    return json.loads(changes.values["features"])


def _fallback_title(filename: str | None) -> str:
    stem = Path(filename or "").stem.replace("_", " ").strip()
    return stem[:MAX_TITLE_CHARS] or "untitled"


def _blobs_of(audio_sha: str, artwork: Artwork | None) -> list[str]:
    """The blobs an upload of this audio and artwork holds references on."""
    return [audio_sha, *(artwork.blobs() if artwork else [])]


def _job_payload(upload_id: str, did: str, audio_sha: str, filename: str | None, fields: UploadFields,
                 artwork: Artwork | None) -> dict[str, Any]:
    """What an `upload.process` job needs to make the track, stored with the job (a crash resumes from it)."""
    return {
        "upload_id": upload_id,
        "did": did,
        "audio_sha": audio_sha,
        "filename": filename,
        "fields": {"title": fields.title, "album": fields.album, "description": fields.description,
                   "tags": fields.tags, "self_labels": fields.self_labels, "unlisted": fields.unlisted,
                   "album_id": fields.album_id, "features": fields.features,
                   "download_policy": fields.download_policy},
        "artwork": artwork.columns() if artwork else None,
    }


class Uploads:
    def __init__(self, db: Database, store: BlobStore, slots: ThreadSlots, config: Config) -> None:
        self.db = db
        self.store = store
        self.slots = slots
        self.config = config
        self.cancel = threading.Event()  # set when the node stops: transcodes in threads give up promptly

    @property
    def max_duration(self) -> float:
        return self.config["media.max_duration_minutes"] * 60.0

    # ---- accepting

    async def probe_file(self, path: Path) -> AudioInfo:
        from ..media.probe import probe

        return await self.slots.run(probe, path, max_duration=self.max_duration)

    async def store_image(self, source: bytes | Path) -> Artwork:
        """Check an image by its content (the bytes, or a stored file's path) and store it with its renditions,
        unreferenced until a row takes them. Raises UnsupportedMedia, TooLarge or Unprocessable for a bad image."""
        from ..media.artwork import process_image

        data = await asyncio.to_thread(source.read_bytes) if isinstance(source, Path) else source
        image = await self.slots.run(process_image, data, max_bytes=self.config["media.max_image_mb"] * 1024 * 1024)
        return await store_rendered(self.store, image)

    async def accept_upload(self, did: str, fields: Mapping[str, str], files: Mapping[str, StoredFile], *,
                            resolver: IdentityResolver) -> str:
        """Accept an upload as the client sent it: the form's text fields, and its files (already in the store) with
        the audio in `file` and perhaps a cover in `image`. Returns the upload id. Whatever was stored for it that
        the upload does not keep (a refused file, an image re-encoded upright) is removed, however this ends.

        Refused before the audio is looked at: an unknown field, an `album_id` that is not one of the uploader's
        albums (404, 403), featured artists who cannot be found (`resolver` looks them up)."""
        async with self.store.releasing(f.sha256 for f in files.values()) as stored:
            audio = files.get("file")
            if audio is None:
                raise InvalidInput("add the audio as the multipart field 'file'")
            if set(files) - {"file", "image"}:
                raise InvalidInput("only 'file' and 'image' may be files")
            parsed = parse_fields(fields)
            if parsed.album_id is not None:
                await albums.check_upload_album(self.db, parsed.album_id, did)
            if (fields.get("features") or "").strip():
                parsed = replace(parsed, features=await _resolve_features(fields["features"], resolver, did))
            info = await self.probe_file(audio.path)
            artwork = None
            if (image := files.get("image")) is not None:
                artwork = await self.store_image(image.path)
                stored += artwork.blobs()
            return await self._accept(did=did, fields=parsed, audio_sha=audio.sha256, info=info,
                                      filename=audio.filename, artwork=artwork)

    async def _accept(self, *, did: str, fields: UploadFields, audio_sha: str, info: AudioInfo,
                      filename: str | None, artwork: Artwork | None) -> str:
        """Record an upload whose audio (already probed) and artwork are in the store; returns the upload id."""
        dup = await self.db.fetchone(
            "SELECT id FROM tracks WHERE artist_did = ? AND original_sha = ?", (did, audio_sha)
        )
        if dup is not None:
            raise Conflict(f"you already uploaded this file: track {dup['id']}")
        upload_id = str(uuid.uuid4())
        payload = _job_payload(upload_id, did, audio_sha, filename, fields, artwork)
        async with self.db.write() as conn:
            await self._insert_upload(conn, upload_id, payload, _blobs_of(audio_sha, artwork))
        log.info("upload accepted", extra={"fields": {"upload_id": upload_id, "did": did, "codec": info.codec,
                                                      "duration": round(info.duration, 1)}})
        return upload_id

    async def _insert_upload(self, conn: Any, upload_id: str, payload: dict[str, Any], files: list[str],
                             record: ExistingRecord | None = None) -> None:
        """The upload row and its job, holding references on its files, inside the caller's transaction."""
        for sha in files:
            await self.store.incref(conn, sha)
        job_id = await enqueue(conn, JOB_KIND, payload, max_attempts=3)
        await conn.execute(
            "INSERT INTO uploads(id, did, job_id, blob_refs, record_uri, record_cid) VALUES (?, ?, ?, ?, ?, ?)",
            (upload_id, payload["did"], job_id, json.dumps(files), record and record.uri, record and record.cid),
        )

    async def accept_import(
        self,
        *,
        did: str,
        fields: UploadFields,
        audio_sha: str,
        info: AudioInfo,
        artwork: Artwork | None,
        record: ExistingRecord,
    ) -> tuple[str, int]:
        """Record the import of audio (stored, probed) whose record another client made; returns (upload id, track id).

        Unlike an upload, the track is created in the same transaction as the upload and its job: it carries the
        record's uri and cid from the start, so likes, comments and playlists elsewhere that point at that record
        find it in the same reconciliation. The job then makes the rendition and the analysis as for any upload.
        Raises Conflict when the record or the same audio is already a track of this artist."""
        upload_id = str(uuid.uuid4())
        async with self.store.releasing() as embedded:  # the file's own cover, when it comes to be stored here
            if artwork is None and (artwork := await self._embedded_artwork(upload_id, info)) is not None:
                embedded += artwork.blobs()
            payload = {
                **_job_payload(upload_id, did, audio_sha, None, fields, artwork),
                "record": {"uri": record.uri, "cid": record.cid},  # marks the job as an import: it never publishes
            }
            async with self.db.write() as conn:
                async with conn.execute(
                    "SELECT id FROM tracks WHERE artist_did = ? AND (rkey = ? OR record_uri = ? OR original_sha = ?)",
                    (did, record.rkey, record.uri, audio_sha),
                ) as cur:
                    taken = await cur.fetchone()
                if taken is not None:  # checked again here: a concurrent pass or upload may have just made it
                    raise Conflict(f"already here as track {taken['id']}")
                await self._insert_upload(conn, upload_id, payload, _blobs_of(audio_sha, artwork), record)
                track_id = await self._insert_track(conn, upload_id, payload, info, artwork, record)
        log.info("import accepted", extra={"fields": {"upload_id": upload_id, "did": did, "uri": record.uri,
                                                      "codec": info.codec, "duration": round(info.duration, 1)}})
        return upload_id, track_id

    # ---- processing

    async def process(self, job: Job, report: Reporter) -> None:
        try:
            await self._process(job, report)
        except Exception as e:
            if is_permanent(e) or job.attempts >= job.max_attempts:
                await self._give_up(job.payload["upload_id"])
            raise

    async def _process(self, job: Job, report: Reporter) -> None:
        from ..media.analysis import analyse
        from ..media.probe import needs_web_rendition, probe

        p = job.payload
        upload_id = p["upload_id"]
        upload = await self.db.fetchone("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        if upload is None:
            raise NotFound(f"upload {upload_id} vanished")
        src = self.store.path_for(p["audio_sha"])

        await report(0.02, "probing")
        info = await self.slots.run(probe, src, max_duration=None, check=False)
        track_id = upload["track_id"]  # an import's track exists from the start
        if track_id is None:
            track_id = await self._create_track(upload_id, p, info)
        await report(0.1, "stored")

        track = await self.db.fetchone("SELECT * FROM tracks WHERE id = ?", (track_id,))
        assert track is not None
        wav_max = self.config["media.wav_rendition_mb"] * 1024 * 1024
        if track["web_sha"] is None and needs_web_rendition(info, wav_max_bytes=wav_max):
            await report(0.12, "transcoding")
            await self._transcode(track_id, src, report, publish="record" not in p)

        if track["peaks"] is None:
            await report(0.85, "analysing")
            result = await self.slots.run(analyse, src)
            columns = result.columns()
            await self.db.execute(
                f"UPDATE tracks SET {', '.join(f'{c} = ?' for c in columns)},"
                " updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ?",
                (*columns.values(), track_id),
            )
        from ..moderation import duplicates

        if duplicates.enabled(self.config):  # another uploader's recording? flagged for review, never refused
            await report(0.95, "fingerprinting")
            await duplicates.check_upload(self.db, self.slots, self.config, track_id, src)  # never raises
        await self.finish(upload_id)
        await report(1.0, "done")

    async def reconcile(self) -> int:
        """Release what uploads hold whose jobs failed without their handler seeing it (a crash on the last attempt,
        failed at start-up by the job runner's recovery). Returns how many were cleaned up."""
        rows = await self.db.fetchall(
            "SELECT u.id FROM uploads u JOIN jobs j ON j.id = u.job_id WHERE j.state = 'failed' AND"
            " (u.blob_refs != '[]' OR u.track_id IS NOT NULL)"
        )
        for row in rows:
            await self._give_up(row["id"])
        return len(rows)

    async def _embedded_artwork(self, upload_id: str, info: AudioInfo) -> Artwork | None:
        """The cover the audio file carries, stored (unreferenced: the caller releases it if it goes unused)."""
        if info.cover is None:
            return None
        try:
            return await self.store_image(info.cover.data)
        except Exception as e:  # a broken embedded cover must not sink the upload
            log.info("embedded cover ignored", extra={"fields": {"upload_id": upload_id, "error": str(e)}})
            return None

    async def _create_track(self, upload_id: str, p: dict[str, Any], info: AudioInfo) -> int:
        async with self.store.releasing() as embedded:
            artwork = Artwork.of(p.get("artwork"))
            if artwork is None and (artwork := await self._embedded_artwork(upload_id, info)) is not None:
                embedded += artwork.blobs()
            async with self.db.write() as conn:
                return await self._insert_track(conn, upload_id, p, info, artwork, None)

    async def _insert_track(self, conn: Any, upload_id: str, p: dict[str, Any], info: AudioInfo,
                            artwork: Artwork | None, record: ExistingRecord | None) -> int:
        """The track row of an upload, inside the caller's transaction. A new track is published (once playable);
        an imported one keeps the record it came from, untouched, and plyrd remembers that record as on the PDS
        (with its blobs), so a later edit or delete here rewrites or deletes that same record."""
        from ..media.probe import needs_web_rendition

        fields = p["fields"]
        tags = info.tags
        wav_max = self.config["media.wav_rendition_mb"] * 1024 * 1024
        ready = not needs_web_rendition(info, wav_max_bytes=wav_max)
        genre_tags = fields["tags"] or ([tags.genre.lower()[:MAX_TAG_CHARS]] if tags.genre else [])
        album = await self._upload_album(conn, upload_id, p) if record is None else None
        cur = await conn.execute(
            "INSERT INTO tracks(artist_did, title, album, description, tags, original_sha, original_ext,"
            " original_mime, image_sha, image_mime, thumb_sha, display_sha, container, codec, duration,"
            " sample_rate, channels, bit_depth, bitrate, lossless, file_tags, status,"
            " self_labels, unlisted, features, download_policy, lyrics)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                p["did"],
                fields["title"] or tags.title or _fallback_title(p.get("filename")),
                album["title"] if album is not None else fields["album"] or tags.album,
                fields["description"],
                json.dumps(genre_tags),
                p["audio_sha"], info.extension, info.mime, *column_values(artwork),
                info.container, info.codec, info.duration, info.sample_rate, info.channels, info.bit_depth,
                info.bitrate, int(info.lossless), json.dumps(tags.stored()), "ready" if ready else "processing",
                json.dumps(fields.get("self_labels") or []), int(bool(fields.get("unlisted"))),
                json.dumps(fields.get("features") or []), fields.get("download_policy"), tags.lyrics,
            ),
        )
        track_id = int((await cur.fetchone())[0])
        await set_track_tags(conn, track_id, genre_tags)
        if album is not None and not await albums.link_track(conn, album["id"], track_id):
            log.warning("album full: track left off it", extra={"fields": {"upload_id": upload_id,
                                                                           "album_id": album["id"]}})
        if record is None:
            await publish_track(conn, track_id, self.config)  # only a playable track is published
            if album is not None:  # its list record names the track once the track has its record
                await publish_album(conn, album["id"])
        else:
            await conn.execute(
                "UPDATE tracks SET rkey = ?, record_uri = ?, record_cid = ?, created_at = ?, features = ?"
                " WHERE id = ?",
                (record.rkey, record.uri, record.cid, record.created_at, json.dumps(record.features), track_id),
            )
            await remember(conn, did=p["did"], collection=TRACK_COLLECTION, rkey=record.rkey, uri=record.uri,
                           cid=record.cid, record=record.value)
        # The track takes its own references; the upload keeps its until it finishes or gives up.
        for sha in _blobs_of(p["audio_sha"], artwork):
            await self.store.incref(conn, sha)
        await conn.execute("UPDATE uploads SET track_id = ? WHERE id = ?", (track_id, upload_id))
        return track_id

    async def _upload_album(self, conn: Any, upload_id: str, p: dict[str, Any]) -> sqlite3.Row | None:
        """The album an upload's track goes on, inside the transaction that makes the track: the one `album_id`
        named (if still the artist's), or the artist's album titled `album`, found or created (plyr.fm's
        get_or_create_album). None for neither; a title only in the file's tags makes no album."""
        fields = p["fields"]
        if fields.get("album_id"):
            album = await albums.upload_album(conn, fields["album_id"], p["did"])
            if album is None:
                log.warning("album gone: track made without it", extra={"fields": {
                    "upload_id": upload_id, "album_id": fields["album_id"]}})
            return album
        if fields.get("album"):
            return await albums.find_or_create_album(conn, p["did"], fields["album"])
        return None

    async def render_mp3(self, src: Path, report: Reporter, *, name: str) -> Blob:
        """An MP3 rendition of `src` for listeners, stored in the blob store and not yet referenced (the caller
        takes its reference in its own transaction). Progress goes to `report`; a stopping node cancels it."""
        from ..media.transcode import TranscodeCancelled, transcode_to_mp3

        dst = self.store.tmp / f"render-{name}-{uuid.uuid4().hex[:8]}.mp3"

        def progress(fraction: float) -> None:
            report.from_thread(0.12 + 0.7 * fraction, "transcoding")

        try:
            await self.slots.run(transcode_to_mp3, src, dst, progress=progress, cancel=self.cancel)
            return await self.store.ingest(dst, mime="audio/mpeg")
        except TranscodeCancelled:
            raise asyncio.CancelledError from None  # the node is stopping: back to the queue, no attempt lost
        finally:
            dst.unlink(missing_ok=True)

    async def _transcode(self, track_id: int, src: Path, report: Reporter, *, publish: bool = True) -> None:
        blob = await self.render_mp3(src, report, name=str(track_id))
        async with self.db.write() as conn:
            await self.store.incref(conn, blob.sha256)
            await conn.execute(
                "UPDATE tracks SET web_sha = ?, status = 'ready',"
                " updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ? AND web_sha IS NULL",
                (blob.sha256, track_id),
            )
            if publish:  # an import's record stays the artist's as it is, audioBlob and all
                await publish_track(conn, track_id, self.config)
                for album_id in await album_ids_of_track(conn, track_id):  # now with the track's record in it
                    await publish_album(conn, album_id)

    async def finish(self, upload_id: str) -> None:
        """Release the upload's own file references once its track holds them (called when the job is done)."""
        await self._release(upload_id, delete_track=False)

    async def _give_up(self, upload_id: str) -> None:
        await self._release(upload_id, delete_track=True)

    async def _release(self, upload_id: str, *, delete_track: bool) -> None:
        released: list[str] = []
        async with self.db.write() as conn:
            async with conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)) as cur:
                upload = await cur.fetchone()
            if upload is None:
                return
            for sha in json.loads(upload["blob_refs"]):
                if await self.store.decref(conn, sha) == 0:
                    released.append(sha)
            await conn.execute("UPDATE uploads SET blob_refs = '[]' WHERE id = ?", (upload_id,))
            if delete_track and upload["track_id"] is not None:
                async with conn.execute("SELECT * FROM tracks WHERE id = ?", (upload["track_id"],)) as cur:
                    track = await cur.fetchone()
                if track is not None:  # a failed import leaves the record it came from alone
                    released += await remove_track(conn, self.store, track, unpublish=upload["record_uri"] is None)
        await self.store.remove_unreferenced(released)

    # ---- progress

    async def progress(self, upload_id: str):  # type: ignore[no-untyped-def]
        """Snapshots of an upload's progress until it ends (for server-sent events)."""
        upload = await self.db.fetchone("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        if upload is None:
            raise NotFound("no such upload")
        async for job in watch_job(self.db, upload["job_id"], poll=2.0):
            # A replacement of a track's audio (plyrd.catalog.revisions) names its track in `replaces`.
            track = await self.db.fetchone("SELECT coalesce(track_id, replaces) AS track_id FROM uploads WHERE id = ?",
                                           (upload_id,))
            status = {"queued": "pending", "running": "processing", "done": "completed", "failed": "failed"}[job.state]
            pct = round(job.progress * 100, 1) if job.state != "done" else 100.0
            event: dict[str, Any] = {
                "upload_id": upload_id,
                "status": status,
                "phase": job.phase or ("queued" if job.state == "queued" else None),
                "percent": pct,
                "server_progress_pct": pct,
                "track_id": track["track_id"] if track else None,
                "attempts": job.attempts,
            }
            if job.error:
                event["error"] = job.error
            yield event
