"""A track as an fm.plyr.track record on its artist's PDS, written through the outbox.

The record carries `audioUrl` (this node's public URL for the playable file) and, when the playable file fits the
configured blob limit, `audioBlob`: the file itself on the artist's PDS, which is what lets plyr.fm and any other
client play the track without this node. Every rewrite includes the blob again (a record rewritten without it lets
the PDS delete the audio). The rkey is a TID of the track's creation time, so publishing is idempotent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..atproto.cbor import blob_ref
from ..atproto.outbox import enqueue_delete, enqueue_put
from ..atproto.records import track_record
from ..atproto.tids import tid_for_time
from ..config import Config

TRACK_COLLECTION = "fm.plyr.track"

# A PDS sniffs an uploaded blob's type from its bytes and refuses a record whose blob ref names another
# ("Expected audio/x-flac, Got: audio/flac"), so the ref carries the names the reference PDS detects (measured with
# every accepted container). Blob refs are computed before the upload, hence the table.
PDS_BLOB_MIME = {
    "mp3": "audio/mpeg",
    "wav": "audio/vnd.wave",
    "flac": "audio/x-flac",
    "aiff": "audio/aiff",
    "m4a": "audio/x-m4a",
    "ogg": "audio/ogg",
}


async def publish_track(conn: Any, track_id: int, config: Config) -> None:
    """Queue the track's current record (inside the caller's transaction); a track still processing waits, and a
    library track never has one."""
    async with conn.execute(
        "SELECT t.*, u.handle AS artist_handle, u.display_name AS artist_display_name FROM tracks t"
        " JOIN users u ON u.did = t.artist_did WHERE t.id = ?", (track_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None or row["status"] != "ready" or row["source"] == "library":
        return  # a library track (the node's music folder) is nobody's published work: it never gets a record
    sha = row["web_sha"] or row["original_sha"]
    file_type = "mp3" if row["web_sha"] else row["original_ext"]
    mime = "audio/mpeg" if row["web_sha"] else PDS_BLOB_MIME.get(row["container"], row["original_mime"])
    if row["codec"] == "opus" and not row["web_sha"]:
        mime = "audio/opus"
    async with conn.execute("SELECT size FROM blobs WHERE sha256 = ?", (sha,)) as cur:
        size = (await cur.fetchone())["size"]
    blobs: list[tuple[str, str, int]] = []
    audio_blob = None
    if size <= config["atproto.pds_blob_limit_mb"] * 1024 * 1024:
        audio_blob = blob_ref(sha, mime, size)
        blobs.append((sha, mime, size))
    public_url = config.public_url
    created = datetime.fromtimestamp(row["created_at"], UTC)
    rkey = row["rkey"] or tid_for_time(created)
    file_tags = json.loads(row["file_tags"] or "{}")
    artist = row["artist_display_name"] or row["artist_handle"] or file_tags.get("artist") or row["artist_did"]
    record = track_record(
        title=row["title"],
        artist=artist[:256],
        file_type=file_type,
        created_at=created,
        audio_url=f"{public_url}/audio/{sha}",
        audio_blob=audio_blob,
        album=row["album"],
        duration=row["duration"],
        features=json.loads(row["features"] or "[]"),
        image_url=f"{public_url}/images/{row['display_sha']}" if row["display_sha"] else None,
        description=row["description"],
        labels=json.loads(row["self_labels"] or "[]"),
    )
    uri, cid = await enqueue_put(conn, did=row["artist_did"], collection=TRACK_COLLECTION, rkey=rkey, record=record,
                                 blobs=blobs)
    await conn.execute("UPDATE tracks SET rkey = ?, record_uri = ?, record_cid = ? WHERE id = ?",
                       (rkey, uri, cid, track_id))


async def unpublish_track(conn: Any, row: Any) -> None:
    """Queue the deletion of a track's record (inside the caller's transaction that deletes the track)."""
    if row["rkey"]:
        await enqueue_delete(conn, did=row["artist_did"], collection=TRACK_COLLECTION, rkey=row["rkey"])
