"""The scanner's catalog writes: the only code that writes library tracks, library albums and library_files.

A file read by the scan (`FileRead`) becomes, inside one write transaction per batch of files:
- an external blob named by its fingerprint (plyrd.storage `link_external`: a link in blobs/ to the file);
- a `tracks` row of the library (source 'library', artist LIBRARY_DID, never an rkey), its tags from the file's tags
  (genres lower-cased into tracks.tags and track_tags, the rest in file_tags via `Tags.stored()`, the lyrics);
- its place on a library album (`albums.library_key`, see `album_key`), the album's tracks in disc/track order;
- its artwork: the album's cover (embedded picture or cover image beside the files, stored once per album);
- its library_files row (size, mtime, fingerprint, track), or the row's error when it is not a track.

A file that vanished loses its track through plyrd.catalog.tracks `remove_track` (likes and playlist entries go
with it); a file found at a new path with the fingerprint of a file that is gone keeps that file's track.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..catalog.albums import slugify
from ..catalog.artwork import Artwork, set_artwork
from ..catalog.tracks import remove_track, set_track_tags
from ..db.queries import fetchall, fetchone
from ..storage import BlobStore
from . import LIBRARY_DID
from .scan import Known, Seen

if TYPE_CHECKING:
    from ..media.probe import AudioInfo, Tags

MAX_TAGS = 10
MAX_TAG_CHARS = 50
MAX_TITLE_CHARS = 256
VARIOUS_ARTISTS = "Various Artists"
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"
# A folder that only holds one disc of an album ("CD1", "Disc 2", "disk 03"): the album is its parent's.
_DISC_DIR = re.compile(r"^(?:cd|dis[ck]|dvd|side)[\s._-]*\d{1,2}\b", re.IGNORECASE)


def _norm(text: str | None) -> str:
    """Case and spacing folded, for grouping ("The Album" and "the  album" are one album)."""
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def album_dir(rel: str) -> str:
    """The directory that holds a file's album: its own, or its parent's when its own is a disc folder."""
    parts = rel.split("/")[:-1]
    if parts and _DISC_DIR.match(parts[-1]):
        parts = parts[:-1]
    return "/".join(parts)


def album_key(folder_id: int, rel: str, tags: Tags) -> str | None:
    """The album a file belongs to (albums.library_key), or None when its tags name no album.

    A MusicBrainz album id is the album, wherever its files are (two releases of one name are two albums, and one
    release split across folders is one). Without one: the album's directory, its name and its tagged album artist,
    so two albums of one name in two folders stay two albums, and a compilation in one folder is one album however
    many artists its tracks have (when no album artist is tagged; see `album_artist_of`)."""
    if not tags.album or not tags.album.strip():
        return None
    if tags.mb_album_id:
        return f"mb:{tags.mb_album_id}"
    return f"dir:{folder_id}:{album_dir(rel)}\x1f{_norm(tags.album)}\x1f{_norm(tags.album_artist)}"


def genres_of(tags: Tags) -> list[str]:
    out: list[str] = []
    for g in tags.genres or ((tags.genre,) if tags.genre else ()):
        g = " ".join(g.lower().split())[:MAX_TAG_CHARS]
        if g and g not in out:
            out.append(g)
    return out[:MAX_TAGS]


def title_of(rel: str, tags: Tags) -> str:
    if tags.title and tags.title.strip():
        return tags.title.strip()[:MAX_TITLE_CHARS]
    stem = Path(rel).stem.replace("_", " ").strip()
    return stem[:MAX_TITLE_CHARS] or "untitled"


@dataclass
class FileRead:
    """What reading one new or changed file gave (in a worker thread), ready to be written."""

    seen: Seen
    known: Known | None
    fingerprint: str | None = None
    info: AudioInfo | None = None  # without its cover bytes (the artwork is resolved before writing)
    error: str | None = None
    album: str | None = None  # album_key
    artwork: Artwork | None = None  # the cover the track shows: its album's, else its own


@dataclass
class BatchResult:
    added: int = 0
    updated: int = 0
    moved: int = 0
    errors: int = 0
    released: list[str] = field(default_factory=list)  # blobs nothing references any more, to remove after commit


class LibraryCatalog:
    """Writes for one scan (folder paths resolved once); every method runs inside the caller's write transaction,
    taken under `store.exclusive()` (external links are made inside it)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._roots: dict[int, Path] = {}

    def root(self, folder_id: int, path: Path) -> None:
        self._roots[folder_id] = path

    async def _root_of(self, conn: aiosqlite.Connection, folder_id: int) -> Path:
        if folder_id not in self._roots:
            row = await fetchone(conn, "SELECT path FROM library_folders WHERE id = ?", (folder_id,))
            assert row is not None
            self._roots[folder_id] = Path(row["path"])
        return self._roots[folder_id]

    # ---- files read ------------------------------------------------------------------------------------------------

    async def write(self, conn: aiosqlite.Connection, folder_id: int, reads: Iterable[FileRead]) -> BatchResult:
        result = BatchResult()
        albums: set[str] = set()
        for r in reads:
            if r.info is None:
                await self._write_error(conn, folder_id, r)
                result.errors += 1
                continue
            kind = await self._write_track(conn, folder_id, r, albums, result.released)
            if kind == "added":
                result.added += 1
            elif kind == "moved":
                result.moved += 1
            else:
                result.updated += 1
        for album_id in albums:
            result.released += await self.refresh_album(conn, album_id)
        return result

    async def _write_error(self, conn: aiosqlite.Connection, folder_id: int, r: FileRead) -> None:
        """A file that is not a track (not audio, broken, unreadable). A track it was stays (its likes with it) until
        the file is readable again or goes: a file caught halfway through a copy must not cost anyone their likes."""
        if r.known is not None:
            await conn.execute(
                f"UPDATE library_files SET size = ?, mtime_ns = ?, fingerprint = ?, error = ?, scanned_at = {_NOW_SQL}"
                " WHERE id = ?", (r.seen.size, r.seen.mtime_ns, r.fingerprint, r.error, r.known.id))
        else:
            await conn.execute(
                "INSERT INTO library_files(folder_id, rel_path, size, mtime_ns, fingerprint, error)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (folder_id, r.seen.rel, r.seen.size, r.seen.mtime_ns, r.fingerprint, r.error))

    async def _moved_from(self, conn: aiosqlite.Connection, fingerprint: str) -> sqlite3.Row | None:
        """A track's file row with this fingerprint whose file is no longer where it was: the file moved here."""
        for row in await fetchall(
                conn, "SELECT f.id, f.folder_id, f.rel_path, f.track_id, d.path AS root FROM library_files f"
                " JOIN library_folders d ON d.id = f.folder_id WHERE f.fingerprint = ? AND f.track_id IS NOT NULL",
                (fingerprint,)):
            if not await asyncio.to_thread(os.path.lexists, Path(row["root"]) / row["rel_path"]):
                return row
        return None

    async def _write_track(self, conn: aiosqlite.Connection, folder_id: int, r: FileRead, albums: set[str],
                           released: list[str]) -> str:
        info = r.info
        assert info is not None and r.fingerprint is not None
        tags = info.tags
        path = await self._root_of(conn, folder_id) / r.seen.rel
        await self.store.link_external(conn, path, r.fingerprint, r.seen.size, info.mime)

        kind = "updated"
        track_id = r.known.track_id if r.known is not None else None
        file_id = r.known.id if r.known is not None else None
        if track_id is None and (moved := await self._moved_from(conn, r.fingerprint)) is not None:
            # The file of a track, found at a new path: the track (its likes, plays, playlist entries) follows.
            if file_id is not None:
                await conn.execute("DELETE FROM library_files WHERE id = ?", (file_id,))
            file_id, track_id, kind = moved["id"], moved["track_id"], "moved"

        genres = genres_of(tags)
        values = (
            title_of(r.seen.rel, tags), tags.album, json.dumps(genres), r.fingerprint, info.extension, info.mime,
            info.container, info.codec, info.duration, info.sample_rate, info.channels, info.bit_depth,
            info.bitrate, int(info.lossless), json.dumps(tags.stored()), tags.lyrics,
        )
        old: sqlite3.Row | None = None
        if track_id is not None:
            old = await fetchone(conn, "SELECT original_sha FROM tracks WHERE id = ?", (track_id,))
        if old is None:
            row = await fetchone(
                conn,
                "INSERT INTO tracks(artist_did, source, status, title, album, tags, original_sha, original_ext,"
                " original_mime, container, codec, duration, sample_rate, channels, bit_depth, bitrate, lossless,"
                " file_tags, lyrics) VALUES (?, 'library', 'ready', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id", (LIBRARY_DID, *values))
            assert row is not None
            track_id, kind = int(row[0]), "added"
            await self.store.incref(conn, r.fingerprint)
        else:
            same_audio = old["original_sha"] == r.fingerprint
            await conn.execute(
                "UPDATE tracks SET title = ?, album = ?, tags = ?, original_sha = ?, original_ext = ?,"
                " original_mime = ?, container = ?, codec = ?, duration = ?, sample_rate = ?, channels = ?,"
                " bit_depth = ?, bitrate = ?, lossless = ?, file_tags = ?, lyrics = ?, status = 'ready',"
                f" updated_at = {_NOW_SQL} WHERE id = ?", (*values, track_id))
            if not same_audio:
                # New bytes: the old analysis describes other audio (plyrd.library.analysis computes it again).
                await conn.execute("UPDATE tracks SET peaks = NULL, loudness_lufs = NULL, track_gain_db = NULL,"
                                   " sample_peak = NULL WHERE id = ?", (track_id,))
                await self.store.incref(conn, r.fingerprint)
                released += await self._drop(conn, old["original_sha"])
        await set_track_tags(conn, track_id, genres)

        if file_id is None:
            await conn.execute(
                "INSERT INTO library_files(folder_id, rel_path, size, mtime_ns, fingerprint, track_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (folder_id, r.seen.rel, r.seen.size, r.seen.mtime_ns, r.fingerprint, track_id))
        else:
            await conn.execute(
                "UPDATE library_files SET folder_id = ?, rel_path = ?, size = ?, mtime_ns = ?, fingerprint = ?,"
                f" track_id = ?, error = NULL, scanned_at = {_NOW_SQL} WHERE id = ?",
                (folder_id, r.seen.rel, r.seen.size, r.seen.mtime_ns, r.fingerprint, track_id, file_id))

        released += await self._place_on_album(conn, track_id, r, albums)
        return kind

    async def _drop(self, conn: aiosqlite.Connection, sha: str) -> list[str]:
        """Drop a track's reference on an external blob; if another library file with the same fingerprint still
        uses it, its link follows that file. Returns the blob when nothing references it."""
        if await self.store.decref(conn, sha) == 0:
            return [sha]
        await self.relink(conn, sha)
        return []

    async def relink(self, conn: aiosqlite.Connection, sha: str) -> None:
        """Point a still-referenced external blob's link at a file of that fingerprint that exists."""
        for row in await fetchall(
                conn, "SELECT f.rel_path, f.size, d.path AS root, b.mime FROM library_files f"
                " JOIN library_folders d ON d.id = f.folder_id JOIN blobs b ON b.sha256 = f.fingerprint"
                " WHERE f.fingerprint = ? AND f.track_id IS NOT NULL AND b.external = 1", (sha,)):
            path = Path(row["root"]) / row["rel_path"]
            if await asyncio.to_thread(os.path.exists, path):
                await self.store.link_external(conn, path, sha, row["size"], row["mime"])
                return

    # ---- albums ---------------------------------------------------------------------------------------------------

    async def _place_on_album(self, conn: aiosqlite.Connection, track_id: int, r: FileRead,
                              albums: set[str]) -> list[str]:
        """Put the track on its album (made if new) and give it its cover; returns artwork blobs let go of."""
        released: list[str] = []
        current = await fetchone(conn, "SELECT album_id FROM album_tracks WHERE track_id = ?", (track_id,))
        album_id: str | None = None
        if r.album is not None:
            album_id = await self._album(conn, r)
        if current is not None and current["album_id"] != album_id:
            await conn.execute("DELETE FROM album_tracks WHERE track_id = ?", (track_id,))
            albums.add(current["album_id"])
        if album_id is not None:
            if current is None or current["album_id"] != album_id:
                await conn.execute(
                    "INSERT INTO album_tracks(album_id, position, track_id) SELECT ?, coalesce(max(position) + 1, 0),"
                    " ? FROM album_tracks WHERE album_id = ?", (album_id, track_id, album_id))
            albums.add(album_id)
        released += await set_artwork(conn, self.store, "tracks", track_id, r.artwork)
        return released

    async def _album(self, conn: aiosqlite.Connection, r: FileRead) -> str:
        """The album row of r.album (a library_key), made when new, with r's cover if it has none yet."""
        assert r.info is not None and r.album is not None
        row = await fetchone(conn, "SELECT id, image_sha FROM albums WHERE library_key = ?", (r.album,))
        if row is None:
            title = (r.info.tags.album or "").strip()[:MAX_TITLE_CHARS]
            album_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO albums(id, artist_did, slug, title, library_key, album_artist) VALUES (?, ?, ?, ?, ?, ?)",
                (album_id, LIBRARY_DID, await self._free_slug(conn, title, album_id), title, r.album,
                 r.info.tags.album_artist or r.info.tags.artist))
            if r.artwork is not None:
                await set_artwork(conn, self.store, "albums", album_id, r.artwork)
            return album_id
        if row["image_sha"] is None and r.artwork is not None:
            await set_artwork(conn, self.store, "albums", row["id"], r.artwork)
        return str(row["id"])

    async def _free_slug(self, conn: aiosqlite.Connection, title: str, album_id: str) -> str:
        base = slugify(title) or f"album-{album_id[:8]}"
        taken = {r[0] for r in await fetchall(
            conn, "SELECT slug FROM albums WHERE artist_did = ? AND (slug = ? OR slug LIKE ?)",
            (LIBRARY_DID, base, base + "-%"))}
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def refresh_album(self, conn: aiosqlite.Connection, album_id: str) -> list[str]:
        """After its tracks changed: the album in disc/track order (then by path), its album artist from its tracks'
        tags, or gone when it has no track left (its cover released). Returns the blobs let go of."""
        members = await fetchall(
            conn, "SELECT t.id, t.file_tags, f.rel_path FROM album_tracks x JOIN tracks t ON t.id = x.track_id"
            " LEFT JOIN library_files f ON f.track_id = t.id WHERE x.album_id = ?", (album_id,))
        if not members:
            released = await set_artwork(conn, self.store, "albums", album_id, None)
            await conn.execute("DELETE FROM albums WHERE id = ? AND library_key IS NOT NULL", (album_id,))
            return released
        tagged = [(m, json.loads(m["file_tags"] or "{}")) for m in members]

        def order(item: tuple[sqlite3.Row, dict[str, Any]]) -> tuple[int, int, str]:
            m, t = item
            return (t.get("disc_number") or 1, t.get("track_number") or 1_000_000, m["rel_path"] or "")

        tagged.sort(key=order)
        await conn.execute("DELETE FROM album_tracks WHERE album_id = ?", (album_id,))
        await conn.executemany("INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, ?, ?)",
                               [(album_id, i, m["id"]) for i, (m, _) in enumerate(tagged)])
        await conn.execute(f"UPDATE albums SET album_artist = ?, updated_at = {_NOW_SQL} WHERE id = ?",
                           (album_artist_of([t for _, t in tagged]), album_id))
        return []

    # ---- files gone -----------------------------------------------------------------------------------------------

    async def remove_gone(self, conn: aiosqlite.Connection, gone: Known, folder_id: int) -> tuple[bool, list[str]]:
        """Forget a file that is no longer there (checked again here: it may have moved meanwhile): its row, and its
        track through remove_track. Returns (whether a track went, blobs let go of). The file is never touched."""
        row = await fetchone(conn, "SELECT f.folder_id, f.rel_path, d.path AS root FROM library_files f"
                             " JOIN library_folders d ON d.id = f.folder_id WHERE f.id = ?", (gone.id,))
        if row is None or row["folder_id"] != folder_id or row["rel_path"] != gone.rel:
            return False, []  # moved (its track kept) or already forgotten
        if await asyncio.to_thread(os.path.lexists, Path(row["root"]) / row["rel_path"]):
            return False, []
        return await self.forget(conn, gone.id)

    async def forget(self, conn: aiosqlite.Connection, file_id: int) -> tuple[bool, list[str]]:
        """A library_files row and its track gone (the track through remove_track, its albums refreshed): the
        catalog forgets a file, which is left as it is. Returns (whether a track went, blobs let go of)."""
        row = await fetchone(conn, "DELETE FROM library_files WHERE id = ? RETURNING track_id", (file_id,))
        if row is None or row["track_id"] is None:
            return False, []
        track = await fetchone(conn, "SELECT * FROM tracks WHERE id = ?", (row["track_id"],))
        if track is None:
            return False, []
        albums = [r[0] for r in await fetchall(conn, "SELECT album_id FROM album_tracks WHERE track_id = ?",
                                               (track["id"],))]
        released = await remove_track(conn, self.store, track, unpublish=False)
        if track["original_sha"] not in released:
            await self.relink(conn, track["original_sha"])  # another file with this fingerprint keeps the blob
        for album_id in albums:
            released += await self.refresh_album(conn, album_id)
        return True, released


def album_artist_of(tags: list[dict[str, Any]]) -> str | None:
    """What an album's tracks say its artist is: the tagged album artist; "Various Artists" for a compilation
    (so flagged, or tracks by several artists); else their one artist."""
    for t in tags:
        if t.get("album_artist"):
            return str(t["album_artist"])
    artists = {_norm(t.get("artist")) for t in tags if t.get("artist")}
    if any(t.get("compilation") for t in tags) or len(artists) > 1:
        return VARIOUS_ARTISTS
    return next((str(t["artist"]) for t in tags if t.get("artist")), None)
