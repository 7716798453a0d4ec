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
from ..catalog.artwork import Artwork, column_values, set_artwork
from ..catalog.lists import MAX_ITEMS as MAX_ALBUM_TRACKS
from ..catalog.tracks import remove_track
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


@dataclass
class _Planned:
    """A file that becomes (or stays) a track, as the batch writes it."""

    read: FileRead
    track_id: int | None = None  # None: a new track
    file_id: int | None = None  # its library_files row, None: a new row
    kind: str = "added"  # added, updated, moved
    old: sqlite3.Row | None = None  # the track's row before (original_sha and artwork columns)


def _ids_json(values: Iterable[Any]) -> str:
    return json.dumps(list(values))


_TRACK_COLUMNS = ("title", "album", "tags", "original_sha", "original_ext", "original_mime", "container", "codec",
                  "duration", "sample_rate", "channels", "bit_depth", "bitrate", "lossless", "file_tags", "lyrics",
                  "image_sha", "image_mime", "thumb_sha", "display_sha")


def _track_values(r: FileRead) -> tuple[Any, ...]:
    info = r.info
    assert info is not None
    tags = info.tags
    return (title_of(r.seen.rel, tags), tags.album, json.dumps(genres_of(tags)), r.fingerprint, info.extension,
            info.mime, info.container, info.codec, info.duration, info.sample_rate, info.channels, info.bit_depth,
            info.bitrate, int(info.lossless), json.dumps(tags.stored()), tags.lyrics, *column_values(r.artwork))


class LibraryCatalog:
    """Writes for one scan (folder paths resolved once); every method runs inside the caller's write transaction,
    taken under `store.exclusive()` (external links are made inside it). A batch is written set by set (a statement
    per kind of row for the whole batch, not one per file): a first scan of a large collection is bound by reading
    the files, not by the database."""

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
        root = await self._root_of(conn, folder_id)
        reads = list(reads)
        audio = [r for r in reads if r.info is not None]
        refused = await self.store.link_external_many(
            conn, [(root / r.seen.rel, r.fingerprint, r.seen.size, r.info.mime) for r in audio
                   if r.fingerprint is not None and r.info is not None])
        for r in audio:
            if r.fingerprint in refused:  # not expected: a fingerprint equal to some other file's content hash
                r.info, r.error = None, "The file's fingerprint collides with a stored file; it was left out."
        await self._write_errors(conn, folder_id, [r for r in reads if r.info is None])
        result.errors = sum(1 for r in reads if r.info is None)
        planned = await self._plan(conn, [r for r in reads if r.info is not None])
        albums, covered = await self._albums(conn, planned)
        result.released += await self._write_tracks(conn, folder_id, planned)
        result.released += await self._place(conn, planned, albums, covered)
        for p in planned:
            setattr(result, p.kind, getattr(result, p.kind) + 1)
        return result

    async def _write_errors(self, conn: aiosqlite.Connection, folder_id: int, reads: list[FileRead]) -> None:
        """Files that are not tracks (not audio, broken, unreadable). A track one was stays (its likes with it) until
        the file is readable again or goes: a file caught halfway through a copy must not cost anyone their likes."""
        await conn.executemany(
            f"UPDATE library_files SET size = ?, mtime_ns = ?, fingerprint = ?, error = ?, scanned_at = {_NOW_SQL}"
            " WHERE id = ?", [(r.seen.size, r.seen.mtime_ns, r.fingerprint, r.error, r.known.id)
                              for r in reads if r.known is not None])
        await conn.executemany(
            "INSERT INTO library_files(folder_id, rel_path, size, mtime_ns, fingerprint, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(folder_id, r.seen.rel, r.seen.size, r.seen.mtime_ns, r.fingerprint, r.error)
             for r in reads if r.known is None])

    async def _plan(self, conn: aiosqlite.Connection, reads: list[FileRead]) -> list[_Planned]:
        """Which track each file is: its own (a changed file), a vanished file's (the same fingerprint at a new
        path: the file moved, its track follows with its likes, plays and playlist entries), or a new one."""
        planned = [_Planned(r, r.known.track_id if r.known else None, r.known.id if r.known else None,
                            "updated" if r.known and r.known.track_id else "added") for r in reads]
        loose = [p for p in planned if p.track_id is None]
        if loose:
            rows = await fetchall(
                conn, "SELECT f.id, f.rel_path, f.track_id, f.fingerprint, d.path AS root FROM library_files f"
                " JOIN library_folders d ON d.id = f.folder_id"
                " WHERE f.track_id IS NOT NULL AND f.fingerprint IN (SELECT value FROM json_each(?))",
                (_ids_json({p.read.fingerprint for p in loose}),))
            gone = await asyncio.to_thread(
                lambda: [r for r in rows if not os.path.lexists(Path(r["root"]) / r["rel_path"])])
            by_fp: dict[str, list[sqlite3.Row]] = {}
            for row in gone:
                by_fp.setdefault(row["fingerprint"], []).append(row)
            superseded: list[int] = []
            for p in loose:
                if found := by_fp.get(p.read.fingerprint or ""):
                    row = found.pop(0)
                    if p.file_id is not None:
                        superseded.append(p.file_id)  # this path's old row (an error) gives way to the moved one
                    p.track_id, p.file_id, p.kind = row["track_id"], row["id"], "moved"
            await conn.executemany("DELETE FROM library_files WHERE id = ?", [(i,) for i in superseded])
        known = [p.track_id for p in planned if p.track_id is not None]
        if known:
            old = {r["id"]: r for r in await fetchall(
                conn, "SELECT id, original_sha, image_sha, image_mime, thumb_sha, display_sha FROM tracks"
                " WHERE id IN (SELECT value FROM json_each(?))", (_ids_json(known),))}
            for p in planned:
                if p.track_id is not None:
                    p.old = old.get(p.track_id)
                    if p.old is None:  # its track went meanwhile: a new one
                        p.track_id, p.kind = None, "added"
        return planned

    async def _write_tracks(self, conn: aiosqlite.Connection, folder_id: int, planned: list[_Planned]) -> list[str]:
        released: list[str] = []
        new = [p for p in planned if p.track_id is None]
        if new:
            row = await fetchone(conn, "SELECT coalesce(max(id), 0) FROM tracks")
            # Ids chosen here, as SQLite would (max + 1), so a whole batch is one statement.
            first = int(row[0]) + 1 if row else 1
            for i, p in enumerate(new):
                p.track_id = first + i
            await conn.executemany(
                f"INSERT INTO tracks(id, artist_did, source, status, {', '.join(_TRACK_COLUMNS)})"
                f" VALUES (?, ?, 'library', 'ready', {', '.join('?' * len(_TRACK_COLUMNS))})",
                [(p.track_id, LIBRARY_DID, *_track_values(p.read)) for p in new])
        known = [p for p in planned if p.old is not None]
        await conn.executemany(
            f"UPDATE tracks SET {', '.join(f'{c} = ?' for c in _TRACK_COLUMNS)}, status = 'ready',"
            f" updated_at = {_NOW_SQL} WHERE id = ?", [(*_track_values(p.read), p.track_id) for p in known])
        # New bytes: the old analysis describes other audio (plyrd.library.analysis computes it again).
        await conn.executemany(
            "UPDATE tracks SET peaks = NULL, loudness_lufs = NULL, track_gain_db = NULL, sample_peak = NULL"
            " WHERE id = ?", [(p.track_id,) for p in known if p.old and p.old["original_sha"] != p.read.fingerprint])

        # References: what each track holds now is taken before what it held is let go of (the same blob stays).
        taken: list[str] = []
        dropped: list[str] = []
        for p in planned:
            art = p.read.artwork.blobs() if p.read.artwork else []
            if p.old is None:
                taken += [p.read.fingerprint or "", *art]
                continue
            old_art = Artwork.of(p.old)
            if p.old["original_sha"] != p.read.fingerprint:
                taken.append(p.read.fingerprint or "")
                dropped.append(p.old["original_sha"])
            if old_art != p.read.artwork:
                taken += art
                dropped += old_art.blobs() if old_art else []
        await self.store.incref_many(conn, taken)
        for sha in dropped:
            released += await self._drop(conn, sha)

        await conn.executemany("DELETE FROM track_tags WHERE track_id = ?", [(p.track_id,) for p in known])
        await conn.executemany("INSERT OR IGNORE INTO track_tags(tag, track_id) VALUES (?, ?)",
                               [(g, p.track_id) for p in planned for g in genres_of(p.read.info.tags)
                                if p.read.info is not None])
        await conn.executemany(
            "INSERT INTO library_files(folder_id, rel_path, size, mtime_ns, fingerprint, track_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(folder_id, p.read.seen.rel, p.read.seen.size, p.read.seen.mtime_ns, p.read.fingerprint, p.track_id)
             for p in planned if p.file_id is None])
        await conn.executemany(
            "UPDATE library_files SET folder_id = ?, rel_path = ?, size = ?, mtime_ns = ?, fingerprint = ?,"
            f" track_id = ?, error = NULL, scanned_at = {_NOW_SQL} WHERE id = ?",
            [(folder_id, p.read.seen.rel, p.read.seen.size, p.read.seen.mtime_ns, p.read.fingerprint, p.track_id,
              p.file_id) for p in planned if p.file_id is not None])
        return released

    async def _drop(self, conn: aiosqlite.Connection, sha: str) -> list[str]:
        """Drop a track's reference on a blob; if it is external and another library file with the same fingerprint
        still uses it, its link follows that file. Returns the blob when nothing references it."""
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

    async def _albums(self, conn: aiosqlite.Connection, planned: list[_Planned]) -> tuple[dict[str, str], set[str]]:
        """The album of each track (made when new), and the cover each track shows: its album's, which the first
        track found with a cover gives to an album that has none. Returns (library_key -> album id, the albums that
        got their cover in this batch)."""
        keys = {p.read.album for p in planned if p.read.album}
        albums: dict[str, str] = {}
        covers: dict[str, Artwork | None] = {}
        covered: set[str] = set()
        if not keys:
            return albums, covered
        for row in await fetchall(conn, "SELECT id, library_key, image_sha, image_mime, thumb_sha, display_sha"
                                  " FROM albums WHERE library_key IN (SELECT value FROM json_each(?))",
                                  (_ids_json(keys),)):
            albums[row["library_key"]] = row["id"]
            covers[row["library_key"]] = Artwork.of(row)
        for p in planned:
            key, art = p.read.album, p.read.artwork
            if key is None:
                continue
            if key not in albums:
                albums[key] = await self._new_album(conn, p.read)
                covers[key] = None
            if covers[key] is None and art is not None:
                await set_artwork(conn, self.store, "albums", albums[key], art)  # had none: nothing released
                covers[key] = art
                covered.add(albums[key])
        for p in planned:
            if p.read.album is not None and covers[p.read.album] is not None:
                p.read.artwork = covers[p.read.album]
        return albums, covered

    async def _place(self, conn: aiosqlite.Connection, planned: list[_Planned], albums: dict[str, str],
                     covered: set[str]) -> list[str]:
        """Each track on its album, each album touched put in disc/track order again; a track whose tags no longer
        name its album leaves it. An album that just got its cover gives it to its earlier tracks too."""
        released: list[str] = []
        current = {r["track_id"]: r["album_id"] for r in await fetchall(
            conn, "SELECT track_id, album_id FROM album_tracks WHERE track_id IN (SELECT value FROM json_each(?))",
            (_ids_json(p.track_id for p in planned),))}
        leaving: list[int] = []
        touched: dict[str, list[int]] = {}
        for p in planned:
            assert p.track_id is not None
            target = albums.get(p.read.album or "")
            was = current.get(p.track_id)
            if was is not None and was != target:
                leaving.append(p.track_id)
                touched.setdefault(was, [])
            if target is not None:
                touched.setdefault(target, [])
                if was != target:
                    touched[target].append(p.track_id)
        await conn.executemany("DELETE FROM album_tracks WHERE track_id = ?", [(i,) for i in leaving])
        for album_id, joining in touched.items():
            released += await self.refresh_album(conn, album_id, joining)
        in_batch = {p.track_id for p in planned}
        for album_id in covered:
            album = await fetchone(conn, "SELECT image_sha, image_mime, thumb_sha, display_sha FROM albums"
                                   " WHERE id = ?", (album_id,))
            for row in await fetchall(conn, "SELECT track_id FROM album_tracks WHERE album_id = ?", (album_id,)):
                if row[0] not in in_batch:
                    released += await set_artwork(conn, self.store, "tracks", row[0], Artwork.of(album))
        return released

    async def _new_album(self, conn: aiosqlite.Connection, r: FileRead) -> str:
        assert r.info is not None
        title = (r.info.tags.album or "").strip()[:MAX_TITLE_CHARS]
        album_id = str(uuid.uuid4())
        await conn.execute(
            "INSERT INTO albums(id, artist_did, slug, title, library_key, album_artist) VALUES (?, ?, ?, ?, ?, ?)",
            (album_id, LIBRARY_DID, await self._free_slug(conn, title, album_id), title, r.album,
             r.info.tags.album_artist or r.info.tags.artist))
        return album_id

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

    async def refresh_album(self, conn: aiosqlite.Connection, album_id: str, joining: Iterable[int] = ()) -> list[str]:
        """After its tracks changed (`joining` tracks added to it): the album in disc/track order (then by path),
        its album artist from its tracks' tags, or gone when it has no track left (its cover released). Returns the
        blobs let go of."""
        members = await fetchall(
            conn, "SELECT t.id, t.file_tags, f.rel_path FROM tracks t LEFT JOIN library_files f ON f.track_id = t.id"
            " WHERE t.id IN (SELECT track_id FROM album_tracks WHERE album_id = ?)"
            " OR t.id IN (SELECT value FROM json_each(?))", (album_id, _ids_json(joining)))
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
                               [(album_id, i, m["id"]) for i, (m, _) in enumerate(tagged[:MAX_ALBUM_TRACKS])])
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
