"""Replacing a published track's audio, and the revisions that keep the audio it replaced (plyr.fm's replace_audio,
revisions and restore_revision).

Replacing (`AudioReplacements.accept`, in the request): the new file is already in the blob store; it is probed, so
a file plyrd cannot use answers a clear 4xx and leaves nothing behind, and one transaction writes an upload row
naming the track it replaces (`uploads.replaces`, holding a reference on the file) and its `track.replace_audio`
job. The client follows it at /tracks/uploads/{id}/progress like any upload.

Processing (the job, resumable): the steps of an upload (probe, an MP3 rendition when browsers need one, waveform
and loudness), while the track keeps playing its current audio. Then one transaction swaps: the current audio
becomes a revision, the new audio becomes the track's, and the track's record is rewritten through the outbox with
the new blob (same URI, so likes, comments, plays and playlist entries stay; the record keeps its createdAt), as
are the records of the albums holding it (their strongRefs name the record's new CID). A failed replacement
releases its files and leaves the track as it was.

Revisions hold the references on their blobs that the track held: references move between the track and its
revisions, so a file goes only when nothing uses it any more. At most MAX_REVISIONS are kept per track, the oldest
pruned (as plyr.fm); restoring one makes the current audio a revision in its place. A track removed
(plyrd.catalog.tracks.remove_track) drops its revisions first, through `drop_revisions`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..config import Config
from ..db import Database
from ..db.queries import fetchall, fetchone
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..jobs import Job, JobFailed, Reporter, enqueue, is_permanent
from ..storage import BlobStore
from .lists import album_ids_of_track, publish_album
from .publishing import publish_track

if TYPE_CHECKING:
    from ..media.analysis import Analysis
    from ..media.probe import AudioInfo
    from .uploads import StoredFile, Uploads

log = logging.getLogger("plyrd.revisions")

JOB_KIND = "track.replace_audio"
MAX_REVISIONS = 10  # plyr.fm's MAX_REVISIONS_PER_TRACK

# What a revision keeps of a track: the columns that describe its audio (0004_tracks.sql, 0016_track_revisions.sql).
AUDIO_COLUMNS = ("original_sha", "original_ext", "original_mime", "web_sha", "container", "codec", "duration",
                 "sample_rate", "channels", "bit_depth", "bitrate", "lossless", "file_tags", "peaks",
                 "loudness_lufs", "track_gain_db", "sample_peak")
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def audio_blobs(row: Mapping[str, Any] | sqlite3.Row) -> list[str]:
    """The blobs a track's or a revision's audio holds references on: its original, and its MP3 rendition."""
    return [sha for sha in (row["original_sha"], row["web_sha"]) if sha]


def _replaceable(track: sqlite3.Row | None, track_id: int, did: str, verb: str) -> sqlite3.Row:
    """The track, if `did` is its artist and it is published (plyr.fm's order of refusals: 404, 403, then state)."""
    if track is None:
        raise NotFound("track not found")
    if track["artist_did"] != did:
        raise Forbidden(f"you can only {verb} on your own tracks")
    if track["status"] != "ready" or not track["record_uri"]:
        raise Conflict(f"track {track_id} is still processing; try again once it is published")
    return track


# ---- revisions: what a transaction does with them -----------------------------------------------------------------


async def _snapshot(conn: aiosqlite.Connection, track_id: int) -> int:
    """Keep the track's current audio as a new revision; the track's references on its files move to it."""
    columns = ", ".join(AUDIO_COLUMNS)
    row = await fetchone(conn, f"INSERT INTO track_revisions(track_id, {columns}) SELECT id, {columns} FROM tracks"
                               " WHERE id = ? RETURNING id", (track_id,))
    assert row is not None
    return int(row["id"])


async def _set_audio(conn: aiosqlite.Connection, track_id: int, values: Mapping[str, Any]) -> None:
    """Give the track this audio (every column of AUDIO_COLUMNS); the caller moves the references to it."""
    sets = ", ".join(f"{c} = ?" for c in AUDIO_COLUMNS)
    await conn.execute(f"UPDATE tracks SET {sets}, updated_at = {_NOW_SQL} WHERE id = ?",
                       [*(values[c] for c in AUDIO_COLUMNS), track_id])


async def _republish(conn: aiosqlite.Connection, track_id: int, config: Config) -> None:
    """Rewrite the track's record with its audio now (the same rkey and createdAt), and the albums holding it."""
    await publish_track(conn, track_id, config)
    for album_id in await album_ids_of_track(conn, track_id):
        await publish_album(conn, album_id)


async def prune(conn: aiosqlite.Connection, store: BlobStore, track_id: int, *, keep: int = MAX_REVISIONS) -> list[str]:
    """Drop the track's revisions beyond the newest `keep`, inside the caller's transaction, with their references.
    Returns the blobs nothing references any more, for store.remove_unreferenced once the transaction commits."""
    dropped = await fetchall(conn, "SELECT * FROM track_revisions WHERE track_id = ?"
                                   " ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?", (track_id, keep))
    released: list[str] = []
    for rev in dropped:
        await conn.execute("DELETE FROM track_revisions WHERE id = ?", (rev["id"],))
        released += [sha for sha in audio_blobs(rev) if await store.decref(conn, sha) == 0]
    return released


async def drop_revisions(conn: aiosqlite.Connection, store: BlobStore, track_id: int) -> list[str]:
    """Every revision of a track that is being removed, inside the caller's transaction (see `prune`)."""
    return await prune(conn, store, track_id, keep=0)


# ---- reading and restoring ----------------------------------------------------------------------------------------


def audio_storage(size: int | None, config: Config) -> str:
    """plyr.fm's `audio_storage` for audio of this size: on this node only ("r2", plyr.fm's name for its own store),
    or as a blob on the artist's PDS too ("both"), which it is when it fits the blob limit."""
    fits = size is not None and size <= config["atproto.pds_blob_limit_mb"] * 1024 * 1024
    return "both" if fits else "r2"


_REVISION_SELECT = ("SELECT r.*, b.size AS playable_size FROM track_revisions r"
                    " LEFT JOIN blobs b ON b.sha256 = coalesce(r.web_sha, r.original_sha)")


def revision_json(row: sqlite3.Row, config: Config) -> dict[str, Any]:
    """plyr.fm's RevisionResponse (the SDK's AudioRevision), plus the files it names."""
    return {
        "id": row["id"],
        "track_id": row["track_id"],
        "created_at": _iso(row["created_at"]),
        "file_type": "mp3" if row["web_sha"] else row["original_ext"],
        "original_file_type": row["original_ext"],
        "audio_storage": audio_storage(row["playable_size"], config),
        "duration": round(row["duration"]),
        "was_gated": False,
        "file_id": row["web_sha"] or row["original_sha"],
        "original_file_id": row["original_sha"],
    }


async def _owned(conn_or_db: aiosqlite.Connection | Database, track_id: int, did: str) -> sqlite3.Row:
    sql, params = "SELECT * FROM tracks WHERE id = ?", (track_id,)
    row = await (conn_or_db.fetchone(sql, params) if isinstance(conn_or_db, Database)
                 else fetchone(conn_or_db, sql, params))
    if row is None:
        raise NotFound("track not found")
    if row["artist_did"] != did:
        raise Forbidden("you can only view or restore revisions on your own tracks")
    return row


async def list_revisions(db: Database, config: Config, track_id: int, did: str) -> dict[str, Any]:
    """The track's earlier audio, newest first (the current audio is the track's, not listed); its artist only."""
    await _owned(db, track_id, did)
    rows = await db.fetchall(f"{_REVISION_SELECT} WHERE r.track_id = ? ORDER BY r.created_at DESC, r.id DESC",
                             (track_id,))
    return {"track_id": track_id, "revisions": [revision_json(r, config) for r in rows]}


async def restore_revision(db: Database, store: BlobStore, config: Config, track_id: int, revision_id: int,
                           did: str) -> dict[str, Any]:
    """Make a revision the track's audio again, in one transaction: the current audio becomes a new revision (which
    is returned, as plyr.fm does), the chosen revision's audio the track's, and the record is rewritten with it."""
    async with db.write() as conn:
        track = await _owned(conn, track_id, did)
        _replaceable(track, track_id, did, "view or restore revisions")
        rev = await fetchone(conn, "SELECT * FROM track_revisions WHERE id = ? AND track_id = ?",
                             (revision_id, track_id))
        if rev is None:
            raise NotFound("revision not found")
        dup = await fetchone(conn, "SELECT id FROM tracks WHERE artist_did = ? AND original_sha = ? AND id != ?",
                             (did, rev["original_sha"], track_id))
        if dup is not None:  # one file, one track of an artist's (as uploads keep it)
            raise Conflict(f"this audio is your track {dup['id']} now")
        new_id = await _snapshot(conn, track_id)
        await _set_audio(conn, track_id, rev)  # the revision's references move back to the track
        await conn.execute("DELETE FROM track_revisions WHERE id = ?", (revision_id,))
        await _republish(conn, track_id, config)
        released = await prune(conn, store, track_id)
        snapshot = await fetchone(conn, f"{_REVISION_SELECT} WHERE r.id = ?", (new_id,))
    await store.remove_unreferenced(released)
    log.info("revision restored", extra={"fields": {"track_id": track_id, "revision": revision_id}})
    assert snapshot is not None
    return revision_json(snapshot, config)


# ---- replacing ----------------------------------------------------------------------------------------------------


class AudioReplacements:
    """Accepts replacement audio and runs its `track.replace_audio` jobs, with the upload pipeline's parts (the
    probe, thread slots, rendition and analysis settings) from `uploads`."""

    def __init__(self, uploads: Uploads) -> None:
        self.uploads = uploads
        self.db = uploads.db
        self.store = uploads.store
        self.config = uploads.config

    async def check(self, track_id: int, did: str) -> None:
        """The refusals that need no body (404, 403, 409), before a client's file is read; checked again after."""
        track = await self.db.fetchone("SELECT * FROM tracks WHERE id = ?", (track_id,))
        _replaceable(track, track_id, did, "replace audio")

    async def accept(self, did: str, track_id: int, fields: Mapping[str, str],
                     files: Mapping[str, StoredFile]) -> dict[str, Any]:
        """Accept new audio for a track as the client sent it (the form's files already in the store, the audio as
        `file`); returns the upload's answer. Whatever was stored that the replacement does not keep is removed,
        however this ends: a refused file leaves no row and no file."""
        async with self.store.releasing(f.sha256 for f in files.values()):
            if fields:
                raise InvalidInput(f"a replacement takes only the audio file; unknown field(s): "
                                   f"{', '.join(sorted(fields))[:200]}")
            audio = files.get("file")
            if audio is None:
                raise InvalidInput("add the new audio as the multipart field 'file'")
            if set(files) - {"file"}:
                raise InvalidInput("only 'file' may be a file when replacing a track's audio")
            info = await self.uploads.probe_file(audio.path)
            upload_id = str(uuid.uuid4())
            async with self.db.write() as conn:
                track = _replaceable(await fetchone(conn, "SELECT * FROM tracks WHERE id = ?", (track_id,)),
                                     track_id, did, "replace audio")
                if track["original_sha"] == audio.sha256:
                    raise Conflict("this file is already the track's audio")
                dup = await fetchone(conn, "SELECT id FROM tracks WHERE artist_did = ? AND original_sha = ?",
                                     (did, audio.sha256))
                if dup is not None:
                    raise Conflict(f"you already uploaded this file: track {dup['id']}")
                busy = await fetchone(conn, "SELECT u.id FROM uploads u JOIN jobs j ON j.id = u.job_id"
                                            " WHERE u.replaces = ? AND j.state IN ('queued', 'running')", (track_id,))
                if busy is not None:
                    raise Conflict("this track's audio is already being replaced; wait until that is done")
                await self.store.incref(conn, audio.sha256)
                payload = {"upload_id": upload_id, "did": did, "track_id": track_id, "audio_sha": audio.sha256,
                           "filename": audio.filename}
                job_id = await enqueue(conn, JOB_KIND, payload, max_attempts=3)
                await conn.execute("INSERT INTO uploads(id, did, job_id, blob_refs, replaces) VALUES (?, ?, ?, ?, ?)",
                                   (upload_id, did, job_id, json.dumps([audio.sha256]), track_id))
        log.info("audio replacement accepted", extra={"fields": {
            "upload_id": upload_id, "did": did, "track_id": track_id, "codec": info.codec,
            "duration": round(info.duration, 1)}})
        return {"upload_id": upload_id, "status": "pending", "track_id": track_id, "title": track["title"],
                "message": "audio replace queued for processing"}

    async def process(self, job: Job, report: Reporter) -> None:
        try:
            await self._process(job, report)
        except Exception as e:
            if is_permanent(e) or job.attempts >= job.max_attempts:
                await self.uploads.finish(job.payload["upload_id"])  # releases what the upload row holds
            raise

    async def _process(self, job: Job, report: Reporter) -> None:
        from ..media.analysis import analyse
        from ..media.probe import needs_web_rendition, probe

        p = job.payload
        upload = await self.db.fetchone("SELECT * FROM uploads WHERE id = ?", (p["upload_id"],))
        if upload is None:
            raise JobFailed(f"upload {p['upload_id']} vanished")
        # The row holds [new original, its rendition once made]; empty once swapped in (an attempt interrupted
        # after the swap committed has nothing left to do).
        refs = json.loads(upload["blob_refs"])
        if not refs:
            return
        if upload["replaces"] is None:
            raise JobFailed("the track was deleted before its new audio was ready")
        src = self.store.path_for(p["audio_sha"])

        await report(0.02, "probing")
        info = await self.uploads.slots.run(probe, src, max_duration=None, check=False)
        await report(0.1, "stored")
        web_sha = refs[1] if len(refs) > 1 else None
        wav_max = self.config["media.wav_rendition_mb"] * 1024 * 1024
        if web_sha is None and needs_web_rendition(info, wav_max_bytes=wav_max):
            await report(0.12, "transcoding")
            web_sha = await self._transcode(p["upload_id"], src, report)
        await report(0.85, "analysing")
        analysis = await self.uploads.slots.run(analyse, src)
        await report(0.95, "publishing")
        released = await self._swap(p, info, web_sha, analysis)
        await self.store.remove_unreferenced(released)
        from ..moderation import duplicates  # new audio, new fingerprint (and a new look for a duplicate)

        if duplicates.enabled(self.config):
            await duplicates.check_upload(self.db, self.uploads.slots, self.config, upload["replaces"], src)
        await report(1.0, "done")

    async def _transcode(self, upload_id: str, src: Any, report: Reporter) -> str:
        """The MP3 rendition, stored and referenced by the upload row (so a retry finds it, a failure releases it)."""
        blob = await self.uploads.render_mp3(src, report, name="replace")
        async with self.db.write() as conn:
            row = await fetchone(conn, "SELECT blob_refs FROM uploads WHERE id = ?", (upload_id,))
            refs = json.loads(row["blob_refs"]) if row is not None else []
            if not refs:  # released meanwhile: the blob stays unreferenced, for the caller's failure to collect
                raise JobFailed("the replacement was released while its rendition was made")
            await self.store.incref(conn, blob.sha256)
            await conn.execute("UPDATE uploads SET blob_refs = ? WHERE id = ?",
                               (json.dumps([refs[0], blob.sha256]), upload_id))
        return blob.sha256

    async def _swap(self, p: dict[str, Any], info: AudioInfo, web_sha: str | None, analysis: Analysis) -> list[str]:
        """The one transaction that makes the new audio the track's (see the module docstring); returns the blobs
        pruning released."""
        values = {
            "original_sha": p["audio_sha"], "original_ext": info.extension, "original_mime": info.mime,
            "web_sha": web_sha, "container": info.container, "codec": info.codec, "duration": info.duration,
            "sample_rate": info.sample_rate, "channels": info.channels, "bit_depth": info.bit_depth,
            "bitrate": info.bitrate, "lossless": int(info.lossless), "file_tags": json.dumps(info.tags.stored()),
            **analysis.columns(),
        }
        async with self.db.write() as conn:
            upload = await fetchone(conn, "SELECT * FROM uploads WHERE id = ?", (p["upload_id"],))
            if upload is None or not json.loads(upload["blob_refs"]):
                return []
            track = await fetchone(conn, "SELECT * FROM tracks WHERE id = ?", (upload["replaces"],))
            if track is None or track["artist_did"] != p["did"]:
                raise JobFailed("the track was deleted before its new audio was ready")
            if sorted(json.loads(upload["blob_refs"])) != sorted(audio_blobs(values)):
                raise JobFailed("the replacement's files are not the ones it stored")
            await _snapshot(conn, track["id"])
            await _set_audio(conn, track["id"], values)
            # Lyrics are the track's (the artist may have edited them), not the file's: the new file's fill only
            # a track that has none.
            if info.tags.lyrics:
                await conn.execute("UPDATE tracks SET lyrics = ? WHERE id = ? AND lyrics IS NULL",
                                   (info.tags.lyrics, track["id"]))
            # The upload's references on the new files are the track's now.
            await conn.execute("UPDATE uploads SET blob_refs = '[]' WHERE id = ?", (p["upload_id"],))
            await _republish(conn, track["id"], self.config)
            released = await prune(conn, self.store, track["id"])
        log.info("audio replaced", extra={"fields": {"upload_id": p["upload_id"], "track_id": track["id"],
                                                     "released": len(released)}})
        return released
