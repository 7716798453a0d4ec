"""Albums: an artist's own tracks in an explicit order, published as an fm.plyr.list record (listType album).

Each change is one transaction that updates the local rows and, through the outbox, rewrites the album's record
with the strongRefs of its tracks in order, so the answer comes from the local database at once and the PDS
catches up. An album without tracks is a shell (plyr.fm's multi-track upload creates one before its tracks
exist): it gets its record when its first track arrives, so an upload that fails entirely leaves no fake release.

Also here, because playlists share them: id parsing, times and covers (their records: plyrd.catalog.lists).

The node's library albums (the music folder's, plyrd.library.catalog writes them: `library_key` set, artist the
library) are read here too, by those who may see the library (plyrd.catalog.tracks `album_visible`): never
published, never anyone's to change, their artist the tags' album artist.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..atproto import outbox
from ..db import Database
from ..db.queries import fetchall, fetchone
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated, UnsupportedMedia
from ..storage import BlobStore
from .artwork import Artwork, set_artwork
from .downloads import track_refusal
from .lists import LIST_COLLECTION, MAX_ITEMS, publish_album
from .social import tracks_json
from .tracks import (
    ANONYMOUS,
    TRACK_SELECT,
    Audience,
    ImageFile,
    Where,
    album_visible,
    artist_name,
    artist_shown,
    delete_track,
    playable,
    visible,
)

if TYPE_CHECKING:
    from .uploads import StoredFile, Uploads

MAX_TITLE_CHARS = 256
MAX_DESCRIPTION_CHARS = 5000
MAX_SLUG_CHARS = 100
COVER_FIELD = "image"  # the multipart field a cover is sent in
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"

ALBUM_SELECT = """
SELECT a.*, u.handle AS artist_handle, u.display_name AS artist_display_name,
       (SELECT count(*) FROM album_tracks x WHERE x.album_id = a.id) AS track_count,
       (SELECT coalesce(sum(t.play_count), 0) FROM album_tracks x JOIN tracks t ON t.id = x.track_id
         WHERE x.album_id = a.id) AS total_plays
FROM albums a JOIN users u ON u.did = a.artist_did
"""


# ---- shared by albums and playlists -----------------------------------------------------------------------------


def parse_uuid(raw: str, what: str) -> str:
    """A UUID in its canonical lowercase form; anything else is a client mistake (400), not a missing thing."""
    value = raw.strip().lower()
    if not _UUID.fullmatch(value):
        raise InvalidInput(f"{what} id must be a UUID like 3f2b8c1e-7d4a-4e2b-9c1f-0a1b2c3d4e5f")
    return value


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def cover_urls(row: sqlite3.Row, public_url: str) -> dict[str, str | None]:
    return {
        "image_url": f"{public_url}/lists/covers/{row['display_sha']}" if row["display_sha"] else None,
        "thumbnail_url": f"{public_url}/lists/covers/{row['thumb_sha']}" if row["thumb_sha"] else None,
    }


async def cover_file(db: Database, sha: str, audience: Audience = ANONYMOUS) -> ImageFile:
    """An album or playlist cover blob (of an album `audience` may see): its type, and whether only library albums
    use it (no shared cache may keep it then); NotFound for anything else (the store holds audio too)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise NotFound("no such image")
    seen = album_visible(audience, "c")
    for table, where, library in (("albums", seen, "c.library_key IS NOT NULL"), ("playlists", Where(), "0")):
        row = await db.fetchone(
            f"SELECT image_sha, image_mime, {library} AS library FROM {table} c"
            f" WHERE (image_sha = ? OR thumb_sha = ? OR display_sha = ?) AND {where.sql} ORDER BY library LIMIT 1",
            (sha, sha, sha, *where.params))
        if row is not None:
            return ImageFile(row["image_mime"] if row["image_sha"] == sha else "image/webp", bool(row["library"]))
    raise NotFound("no such image")


async def store_cover(uploads: Uploads, image: StoredFile) -> Artwork:
    """Check a cover image (a file as sent) and store it with its renditions (unreferenced until a row takes them)."""
    data = await asyncio.to_thread(image.path.read_bytes)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        # Covers are shown everywhere, often as stills; plyr.fm refuses animated covers for them.
        raise UnsupportedMedia("covers must be JPEG, PNG or WebP; GIF is not accepted for covers")
    return await uploads.store_image(data)


async def change_cover(db: Database, store: BlobStore, uploads: Uploads, table: str,
                       files: Mapping[str, StoredFile] | None,
                       owned: Callable[[aiosqlite.Connection], Awaitable[sqlite3.Row]]) -> None:
    """Give an album or playlist the cover sent as the file `image` (`files` as a multipart form brought them,
    already in the store), or none (`files` None); `owned` reads the row inside the write, checking its owner.
    Whatever was stored for it that the row does not keep, and the cover it replaced, are removed, however this
    ends."""
    async with store.releasing(f.sha256 for f in (files or {}).values()) as stored:
        artwork = None
        if files is not None:
            if (image := files.get(COVER_FIELD)) is None:
                raise InvalidInput(f"add the image as the multipart field '{COVER_FIELD}'")
            artwork = await store_cover(uploads, image)
            stored += artwork.blobs()
        async with db.write() as conn:
            row = await owned(conn)
            stored += await set_artwork(conn, store, table, row["id"], artwork)


async def release_owned_covers(conn: aiosqlite.Connection, store: BlobStore, did: str) -> list[str]:
    """For account deletion, inside its transaction before the rows go: drop the cover references of every album
    and playlist `did` owns. Returns the blobs let go of (for store.remove_unreferenced after the commit)."""
    released: list[str] = []
    for table, owner in (("albums", "artist_did"), ("playlists", "owner_did")):
        for row in await fetchall(conn, f"SELECT id FROM {table} WHERE {owner} = ? AND image_sha IS NOT NULL", (did,)):
            released += await set_artwork(conn, store, table, row["id"], None)
    return released


# ---- albums -----------------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """A URL slug: ASCII when the title transliterates (NFKD), else the title's own letters; at most 100 chars."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:  # a title in a script without a Latin transliteration keeps its own letters
        slug = re.sub(r"[\W_]+", "-", unicodedata.normalize("NFKC", text).lower()).strip("-")
    return slug[:MAX_SLUG_CHARS].strip("-")


def _title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("title is required")
    value = value.strip()
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title must be at most {MAX_TITLE_CHARS} characters")
    return value


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("description must be a string")
    value = value.strip()
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION_CHARS} characters")
    return value or None


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not (slug := slugify(value)):
        raise InvalidInput("slug must contain at least one letter or digit")
    return slug


def _track_ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InvalidInput("track_ids must be a list of track ids (integers)")
    if len(set(value)) != len(value):
        raise InvalidInput("track_ids lists a track more than once")
    if len(value) > MAX_ITEMS:
        raise InvalidInput(f"an album holds at most {MAX_ITEMS} tracks")
    return value


def album_json(row: sqlite3.Row, public_url: str) -> dict[str, Any]:
    """An album's metadata in plyr.fm's field names (list_uri is its fm.plyr.list record). A library album's
    artist is its tagged album artist."""
    handle = row["artist_handle"]
    if row["library_key"] is not None:  # its address is /u/{the library's DID}/album/{slug}
        artist, handle = row["album_artist"] or "Unknown artist", row["artist_did"]
    else:
        artist = row["artist_display_name"] or row["artist_handle"] or row["artist_did"]
    return {
        "id": row["id"],
        "title": row["title"],
        "slug": row["slug"],
        "description": row["description"],
        "artist": artist,
        "artist_handle": handle,
        "artist_did": row["artist_did"],
        "track_count": row["track_count"],
        "total_plays": row["total_plays"],
        **cover_urls(row, public_url),
        "list_uri": row["record_uri"],
        "atproto_record_uri": row["record_uri"],
        "atproto_record_cid": row["record_cid"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


async def get_album(db: Database, album_id: str, audience: Audience = ANONYMOUS) -> sqlite3.Row:
    """An album by id that `audience` may see (nobody's own album is a library album: the default suits owners)."""
    seen = album_visible(audience)
    row = await db.fetchone(f"{ALBUM_SELECT} WHERE a.id = ? AND {seen.sql}",
                            (parse_uuid(album_id, "album"), *seen.params))
    if row is None:
        raise NotFound("album not found")
    return row


async def _owned(conn: aiosqlite.Connection, album_id: str, did: str) -> sqlite3.Row:
    """The album row, inside a transaction, if `did` is its artist."""
    row = await fetchone(conn, "SELECT * FROM albums WHERE id = ?", (parse_uuid(album_id, "album"),))
    if row is None:
        raise NotFound("album not found")
    if row["artist_did"] != did:
        raise Forbidden("only the album's artist can change it")
    return row


async def check_owner(db: Database, album_id: str, did: str) -> None:
    """Ownership checked before expensive work (cover processing); checked again inside the write."""
    row = await get_album(db, album_id)
    if row["artist_did"] != did:
        raise Forbidden("only the album's artist can change it")


async def _write_order(conn: aiosqlite.Connection, album_id: str, track_ids: list[int]) -> None:
    await conn.execute("DELETE FROM album_tracks WHERE album_id = ?", (album_id,))
    await conn.executemany("INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, ?, ?)",
                           [(album_id, i, t) for i, t in enumerate(track_ids)])
    await conn.execute(f"UPDATE albums SET updated_at = {_NOW_SQL} WHERE id = ?", (album_id,))


async def _current_order(conn: aiosqlite.Connection, album_id: str) -> list[int]:
    rows = await fetchall(conn, "SELECT track_id FROM album_tracks WHERE album_id = ? ORDER BY position", (album_id,))
    return [r["track_id"] for r in rows]


async def _check_members(conn: aiosqlite.Connection, album_id: str, did: str, track_ids: list[int]) -> None:
    """Each track exists, is the artist's own, has a record to reference, and is on no other album."""
    for track_id in track_ids:
        track = await fetchone(conn, "SELECT artist_did, record_uri, record_cid FROM tracks WHERE id = ?", (track_id,))
        if track is None:
            raise NotFound(f"track {track_id} not found")
        if track["artist_did"] != did:
            raise Forbidden(f"track {track_id} is not yours: an album holds only its artist's own tracks")
        if not track["record_uri"] or not track["record_cid"]:
            raise InvalidInput(f"track {track_id} has no ATProto record yet; try again once it is published")
        other = await fetchone(conn, "SELECT a.id, a.title FROM album_tracks x JOIN albums a ON a.id = x.album_id"
                               " WHERE x.track_id = ? AND x.album_id != ?", (track_id, album_id))
        if other is not None:
            raise Conflict(f"track {track_id} is already on the album {other['title']!r}; remove it there first")


async def create_album(db: Database, did: str, body: dict[str, Any]) -> str:
    """A new, empty album; 409 when the artist already has one with this slug."""
    title = _title(body.get("title"))
    album_id = str(uuid.uuid4())
    # A title of only punctuation still makes an album; its slug then comes from the id.
    slug = _slug(body["slug"]) if body.get("slug") is not None else (slugify(title) or f"album-{album_id[:8]}")
    description = _description(body.get("description"))
    async with db.write() as conn:
        clash = await fetchone(conn, "SELECT id FROM albums WHERE artist_did = ? AND slug = ?", (did, slug))
        if clash is not None:
            raise Conflict(f"you already have an album at /{slug} (id {clash['id']}); pick another title or slug")
        await conn.execute("INSERT INTO albums(id, artist_did, slug, title, description) VALUES (?, ?, ?, ?, ?)",
                           (album_id, did, slug, title, description))
    return album_id


# ---- uploads onto albums (plyrd.catalog.uploads): the form's `album` (a title) and `album_id`


async def check_upload_album(db: Database, album_id: str, did: str) -> None:
    """An album an upload names by `album_id`, checked when the upload is accepted: it exists (404), it is the
    uploader's (403), it has room for one more track (400). Checked again when the track is made."""
    album = await get_album(db, album_id)
    if album["artist_did"] != did:
        raise Forbidden("album_id names someone else's album: a track goes only on its artist's own albums")
    if album["track_count"] >= MAX_ITEMS:
        raise InvalidInput(f"that album already holds {MAX_ITEMS} tracks, the most an album can")


async def find_or_create_album(conn: aiosqlite.Connection, did: str, title: str) -> sqlite3.Row:
    """plyr.fm's get_or_create_album, inside the caller's transaction: the artist's album whose slug is the title's
    (so "My Album" and "my album!" are one album), else a new one. A new album is a shell until the caller puts the
    track on it (link_track), and gets its record with its first published track."""
    title = _title(title)
    slug = slugify(title)
    by = "slug = ?" if slug else "title = ?"  # a title of only punctuation has no slug to find it by
    album = await fetchone(conn, f"SELECT * FROM albums WHERE artist_did = ? AND {by}", (did, slug or title))
    if album is not None:
        return album
    album_id = str(uuid.uuid4())
    await conn.execute("INSERT INTO albums(id, artist_did, slug, title) VALUES (?, ?, ?, ?)",
                       (album_id, did, slug or f"album-{album_id[:8]}", title))
    album = await fetchone(conn, "SELECT * FROM albums WHERE id = ?", (album_id,))
    assert album is not None
    return album


async def upload_album(conn: aiosqlite.Connection, album_id: str, did: str) -> sqlite3.Row | None:
    """The album an accepted upload named by id, read again when its track is made (inside that transaction);
    None when it has gone or changed hands since."""
    return await fetchone(conn, "SELECT * FROM albums WHERE id = ? AND artist_did = ?", (album_id, did))


async def link_track(conn: aiosqlite.Connection, album_id: str, track_id: int) -> bool:
    """Put a track just made (not on any album) at the end of the album, inside the caller's transaction; the
    caller republishes the album once the track has its record (publish_album). False when the album is full."""
    row = await fetchone(conn, "SELECT count(*) AS n, coalesce(max(position) + 1, 0) AS next FROM album_tracks"
                         " WHERE album_id = ?", (album_id,))
    assert row is not None
    if row["n"] >= MAX_ITEMS:
        return False
    await conn.execute("INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, ?, ?)",
                       (album_id, row["next"], track_id))
    await conn.execute(f"UPDATE albums SET updated_at = {_NOW_SQL} WHERE id = ?", (album_id,))
    return True


async def update_album(db: Database, album_id: str, did: str, changes: dict[str, Any]) -> None:
    """Title and description; the slug changes only when asked, so links to the album keep working."""
    unknown = set(changes) - {"title", "description", "slug"}
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}; an album has title, description and slug")
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        title = _title(changes["title"]) if changes.get("title") is not None else album["title"]
        description = _description(changes["description"]) if "description" in changes else album["description"]
        slug = _slug(changes["slug"]) if changes.get("slug") is not None else album["slug"]
        if slug != album["slug"]:
            clash = await fetchone(conn, "SELECT id FROM albums WHERE artist_did = ? AND slug = ? AND id != ?",
                                   (did, slug, album["id"]))
            if clash is not None:
                raise Conflict(f"you already have an album at /{slug}")
        await conn.execute(f"UPDATE albums SET title = ?, description = ?, slug = ?, updated_at = {_NOW_SQL}"
                           " WHERE id = ?", (title, description, slug, album["id"]))
        if title != album["title"]:
            await publish_album(conn, album["id"])  # the record carries the title as its name


async def set_order(db: Database, album_id: str, did: str, track_ids: Any) -> None:
    """Replace the album's tracks with exactly these, in this order; tracks left out stay, without an album."""
    ids = _track_ids(track_ids)
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        await _check_members(conn, album["id"], did, ids)
        await _write_order(conn, album["id"], ids)
        await publish_album(conn, album["id"])


async def finalize(db: Database, album_id: str, did: str, track_ids: Any) -> None:
    """plyr.fm's finalize: tracks already on the album and not named keep their order in front, the named ones
    follow in the order given (added when new). Called after a multi-track upload settles."""
    ids = _track_ids(track_ids)
    if not ids:
        raise InvalidInput("track_ids must not be empty")
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        order = [t for t in await _current_order(conn, album["id"]) if t not in set(ids)] + ids
        if len(order) > MAX_ITEMS:
            raise InvalidInput(f"an album holds at most {MAX_ITEMS} tracks")
        await _check_members(conn, album["id"], did, ids)
        await _write_order(conn, album["id"], order)
        await publish_album(conn, album["id"])


async def add_track(db: Database, album_id: str, did: str, track_id: Any, position: Any = None) -> None:
    """Put one of the artist's tracks on the album, at the end or at `position` (0-based)."""
    if not isinstance(track_id, int) or isinstance(track_id, bool):
        raise InvalidInput("track_id must be a track id (an integer)")
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        order = await _current_order(conn, album["id"])
        if track_id in order:
            raise Conflict(f"track {track_id} is already on this album")
        if len(order) >= MAX_ITEMS:
            raise InvalidInput(f"an album holds at most {MAX_ITEMS} tracks")
        if position is None:
            position = len(order)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= len(order):
            raise InvalidInput(f"position must be an integer from 0 to {len(order)}")
        await _check_members(conn, album["id"], did, [track_id])
        order.insert(position, track_id)
        await _write_order(conn, album["id"], order)
        await publish_album(conn, album["id"])


async def remove_track(db: Database, album_id: str, did: str, track_id: int) -> None:
    """Take a track off the album; the track itself stays."""
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        if await fetchone(conn, "SELECT 1 FROM tracks WHERE id = ?", (track_id,)) is None:
            raise NotFound(f"track {track_id} not found")
        order = await _current_order(conn, album["id"])
        if track_id not in order:
            raise InvalidInput(f"track {track_id} is not on this album")
        order.remove(track_id)
        await _write_order(conn, album["id"], order)
        await publish_album(conn, album["id"])


async def set_cover(db: Database, store: BlobStore, uploads: Uploads, album_id: str, did: str,
                    files: Mapping[str, StoredFile] | None) -> None:
    """Replace the album's cover with the image sent (see change_cover), or remove it (`files` None)."""
    await check_owner(db, album_id, did)
    await change_cover(db, store, uploads, "albums", files, lambda conn: _owned(conn, album_id, did))


async def delete_album(db: Database, store: BlobStore, album_id: str, did: str, *, cascade: bool) -> list[int]:
    """Delete the album and its record; its tracks stay without an album, or with `cascade` are deleted too.
    Returns the ids of the tracks deleted."""
    async with db.write() as conn:
        album = await _owned(conn, album_id, did)
        track_ids = await _current_order(conn, album["id"])
        released = await set_artwork(conn, store, "albums", album["id"], None)
        await conn.execute("DELETE FROM albums WHERE id = ?", (album["id"],))
        if album["rkey"]:
            await outbox.enqueue_delete(conn, did=did, collection=LIST_COLLECTION, rkey=album["rkey"])
    await store.remove_unreferenced(released)
    if not cascade:
        return []
    # The album is gone first, so a failure half-way leaves ordinary tracks rather than an album naming dead ones.
    deleted = []
    for track_id in track_ids:
        try:
            await delete_track(db, store, track_id, did=did)
        except NotFound:
            continue  # deleted meanwhile
        deleted.append(track_id)
    return deleted


# ---- reading ----------------------------------------------------------------------------------------------------


async def _artist_did(db: Database, handle: str, *, library: bool = False) -> str:
    """The artist behind a handle (or a DID, which artist pages accept too); the node's library only when
    `library` (its albums are found by its DID; it is no artist to list)."""
    shown = Where() if library else artist_shown()
    if handle.startswith("did:"):
        row = await db.fetchone(f"SELECT did FROM users u WHERE did = ? AND {shown.sql}", (handle,))
    else:
        row = await db.fetchone(f"SELECT did FROM users u WHERE handle = ? AND {shown.sql}",
                                (handle.lower().lstrip("@"),))
    if row is None:
        raise NotFound("artist not found")
    return row["did"]


async def find_album(db: Database, handle: str, slug: str, audience: Audience) -> sqlite3.Row:
    """An album by its artist's handle (or DID) and its slug, if `audience` may see it."""
    did = await _artist_did(db, handle, library=audience.library)
    seen = album_visible(audience)
    album = await db.fetchone(f"{ALBUM_SELECT} WHERE a.artist_did = ? AND a.slug = ? AND {seen.sql}",
                              (did, slug, *seen.params))
    if album is None:
        raise NotFound("album not found")
    return album


async def album_tracks(db: Database, album_id: str, where: Where) -> list[sqlite3.Row]:
    """The album's tracks that meet `where` (the read model's visible(audience), perhaps & playable()), in order."""
    return await db.fetchall(f"{TRACK_SELECT} JOIN album_tracks x ON x.track_id = t.id WHERE x.album_id = ?"
                             f" AND {where.sql} ORDER BY x.position", [album_id, *where.params])


async def album_detail(db: Database, handle: str, slug: str, public_url: str, audience: Audience) -> dict[str, Any]:
    """An album with the tracks `audience` may see in order, as plyr.fm's GET /albums/{handle}/{slug} answers."""
    album = await find_album(db, handle, slug, audience)
    tracks = await album_tracks(db, album["id"], visible(audience))
    return {"metadata": album_json(album, public_url),
            "tracks": await tracks_json(db, tracks, audience.did, public_url)}


_COVER_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


async def album_zip(db: Database, store: BlobStore, handle: str, slug: str,
                    audience: Audience) -> tuple[str, AsyncIterator[bytes]]:
    """plyr.fm's album download: the zip's file name and its bytes, streamed. In album order, the original of each
    track `audience` may see that is ready ("01 artist - title.flac") and that its download policy lets them have,
    then the cover as sent. NotFound while no track is ready; the policy's refusal (401 or 403) when none may be
    downloaded by them (401 when signing in would open one)."""
    from .zips import ZipNames, safe_name, stream_zip

    album = await find_album(db, handle, slug, audience)
    ready = await album_tracks(db, album["id"], visible(audience) & playable())
    if not ready:
        raise NotFound("this album has no tracks to download yet")
    refusals = [track_refusal(t, audience.did) for t in ready]
    # Numbered by place on the album, so a track held back leaves its number out rather than shifting the rest.
    tracks = [(n, t) for n, (t, refusal) in enumerate(zip(ready, refusals, strict=True), 1) if refusal is None]
    if not tracks:
        raise next((r for r in refusals if isinstance(r, Unauthenticated)), refusals[0])
    names = ZipNames()
    width = max(2, len(str(len(ready))))
    files = [(names.add(f"{n:0{width}d} {artist_name(t)} - {t['title']}", t["original_ext"]),
              store.path_for(t["original_sha"])) for n, t in tracks]
    if album["image_sha"] and album["image_mime"] in _COVER_EXT:
        files.append((names.add("cover", _COVER_EXT[album["image_mime"]]), store.path_for(album["image_sha"])))
    artist = album["artist_display_name"] or album["artist_handle"] or album["artist_did"]
    title = album["title"]
    return safe_name(f"{artist} - {title}") + ".zip", stream_zip(files)


async def album_metadata(db: Database, album_id: str, public_url: str,
                         audience: Audience = ANONYMOUS) -> dict[str, Any]:
    return album_json(await get_album(db, album_id, audience), public_url)


async def list_albums(db: Database, public_url: str, audience: Audience = ANONYMOUS) -> list[dict[str, Any]]:
    """Every album `audience` may see with at least one track (empty shells are drafts of an upload in progress)."""
    seen = album_visible(audience)
    rows = await db.fetchall(f"{ALBUM_SELECT} WHERE EXISTS (SELECT 1 FROM album_tracks x WHERE x.album_id = a.id)"
                             f" AND {seen.sql} ORDER BY lower(a.title), a.id", seen.params)
    return [album_json(r, public_url) for r in rows]


async def library_albums(db: Database, did: str, public_url: str,
                         audience: Audience = ANONYMOUS) -> list[dict[str, Any]]:
    """The library hub's albums: the viewer's own (drafts included), then albums holding a track they liked, most
    recently liked first (those `audience`, the viewer, may see)."""
    seen = album_visible(audience)
    rows = await db.fetchall(
        ALBUM_SELECT + f""" LEFT JOIN (SELECT x.album_id, max(l.created_at) AS liked_at FROM likes l
                                      JOIN album_tracks x ON x.track_id = l.track_id WHERE l.did = ?1
                                      GROUP BY x.album_id) k ON k.album_id = a.id
        WHERE (a.artist_did = ?1 OR k.liked_at IS NOT NULL) AND {seen.sql}
        ORDER BY a.artist_did = ?1 DESC, k.liked_at DESC, lower(a.title), a.id""", (did,))
    return [{**album_json(r, public_url), "is_own": r["artist_did"] == did} for r in rows]


async def list_artist_albums(db: Database, handle: str, public_url: str, *, viewer_did: str | None) -> list[
        dict[str, Any]]:
    """An artist's albums; the artist also sees their empty shells."""
    did = await _artist_did(db, handle)
    rows = await db.fetchall(ALBUM_SELECT + " WHERE a.artist_did = ? ORDER BY lower(a.title), a.id", (did,))
    return [album_json(r, public_url) for r in rows if r["track_count"] or viewer_did == did]
