"""Subsonic's music folders, and folder-style browsing of the music folder's real directory tree.

Music folder 1 is the uploads ("plyrd"), browsed as before: artist -> album -> song. Each of the node's library
folders (plyrd.library, `library_folders`) is music folder `1 + its id`, browsed as it is on disk: getIndexes lists a
folder's top directories (and the songs right at its top), getMusicDirectory a directory's subdirectories, then its
songs. A directory's id is its folder and path (plyrd.subsonic.catalog.directory_id), so it needs no table and stays
the same across rescans; it exists for a caller when it holds a song they may see.

Every read goes through the catalog's `songs(audience)`; a caller who may not see the library (Audience.library)
sees no library folder, and so no directory, at all. `musicFolderId` narrows the lists to one folder (`scope`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..catalog.tracks import Audience, Where
from ..db import Database
from ..db.queries import rows
from . import catalog as sc

UPLOADS = 1
UPLOADS_NAME = "plyrd"


def may_see_library(audience: Audience) -> bool:
    """Whether the caller may see the music folder at all (plyrd.catalog.tracks decides: `Audience.library`)."""
    return audience.library


def music_folder_id(library_folder_id: int) -> int:
    return library_folder_id + 1


async def _library_folders(db: Database, audience: Audience) -> list[sqlite3.Row]:
    if not may_see_library(audience):
        return []
    return await db.read_fn(_read_library_folders, audience)


def _read_library_folders(conn: sqlite3.Connection, audience: Audience) -> list[sqlite3.Row]:
    if not may_see_library(audience):
        return []
    return rows(conn, "SELECT id, path FROM library_folders ORDER BY id")


def _folder_name(path: str) -> str:
    return PurePosixPath(path).name or path


async def music_folders(db: Database, audience: Audience) -> list[dict[str, Any]]:
    """getMusicFolders: the uploads, then each library folder the caller may see, by its directory's name."""
    return [{"id": UPLOADS, "name": UPLOADS_NAME}] + [
        {"id": music_folder_id(r["id"]), "name": _folder_name(r["path"])} for r in await _library_folders(db, audience)]


@dataclass(frozen=True)
class Scope:
    """What `musicFolderId` asked for: every folder (None), the uploads, or one library folder."""

    uploads: bool = True
    library_folder: int | None = None  # one library folder; None: every one the caller may see
    library: bool = True

    @property
    def where(self) -> Where:
        """The tracks in this scope (on top of the caller's visibility, never instead of it)."""
        if self.uploads and self.library:
            return sc.EVERYWHERE
        # Library tracks told by their owner, as plyrd.subsonic.catalog does (an early column of a row).
        if self.uploads:
            return Where.of(f"NOT ({sc.LIBRARY_TRACK})")
        if self.library_folder is None:
            return Where.of(sc.LIBRARY_TRACK)
        return Where.of(f"{sc.LIBRARY_TRACK} AND EXISTS (SELECT 1 FROM library_files lf0"
                        " WHERE lf0.track_id = t.id AND lf0.folder_id = ?)", self.library_folder)


EVERY_FOLDER = Scope()


async def scope(db: Database, audience: Audience, raw: str | None) -> Scope:
    """The `musicFolderId` parameter as a scope; 70 for a folder that does not exist for the caller."""
    if raw is None or raw.strip() == "":
        return EVERY_FOLDER
    return await db.read_fn(read_scope, audience, raw)


def read_scope(conn: sqlite3.Connection, audience: Audience, raw: str | None) -> Scope:
    """`scope` on a reader's thread (it reads the library folders only when a library folder is asked for)."""
    if raw is None or raw.strip() == "":
        return EVERY_FOLDER
    value = raw.strip()
    if value.isascii() and value.isdigit() and len(value) <= 18:
        if int(value) == UPLOADS:
            return Scope(uploads=True, library=False)
        wanted = int(value) - 1
        library = _read_library_folders(conn, audience)
        if any(r["id"] == wanted for r in library):
            # The only folder is the whole library: no need to look up each track's file.
            return Scope(uploads=False, library_folder=wanted if len(library) > 1 else None)
    raise sc.not_found("music folder")


# ---- the directory tree -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subdirectory:
    id: str
    name: str
    has_art: bool


@dataclass(frozen=True)
class Directory:
    id: str
    name: str
    parent: str | None
    subdirectories: list[Subdirectory]
    songs: list[sqlite3.Row]


# A directory's songs in the order their tags give (disc, track number), then by file name.
_SONG_ORDER = ("ORDER BY coalesce(json_extract(t.file_tags, '$.disc_number'), 1),"
               " coalesce(json_extract(t.file_tags, '$.track_number'), 1000000), lf.rel_path, t.id")


async def _children(db: Database, audience: Audience, folder_id: int, rel: str) -> tuple[list[Subdirectory],
                                                                                          list[sqlite3.Row]]:
    """The subdirectories holding a song the caller may see, then the songs right in the directory."""
    low, high = sc.path_range(rel)
    within = Where.of("lf.folder_id = ? AND lf.rel_path >= ? AND lf.rel_path < ?", folder_id, low, high)
    where = sc.songs(audience) & within
    rows = await db.fetchall(f"""
        SELECT substr(rest, 1, instr(rest, '/') - 1) AS name, max(art) AS art FROM (
          SELECT substr(lf.rel_path, ?) AS rest,
                 t.display_sha IS NOT NULL OR al.display_sha IS NOT NULL AS art
            FROM library_files lf JOIN tracks t ON t.id = lf.track_id
            LEFT JOIN album_tracks x ON x.track_id = t.id LEFT JOIN albums al ON al.id = x.album_id
           WHERE {where.sql})
        WHERE instr(rest, '/') > 0 GROUP BY name""", [len(low) + 1, *where.params])
    subdirectories = [Subdirectory(sc.directory_id(folder_id, f"{rel}/{r['name']}" if rel else r["name"]), r["name"],
                                   bool(r["art"]))
                      for r in sorted(rows, key=lambda r: (r["name"].casefold(), r["name"]))]
    here = where & Where.of("instr(substr(lf.rel_path, ?), '/') = 0", len(low) + 1)
    return subdirectories, await sc.song_rows(db, here, _SONG_ORDER)


async def directory(db: Database, audience: Audience, raw_id: str) -> Directory:
    """getMusicDirectory of a library directory (`dir-...`); 70 when it holds nothing the caller may see (a
    folder's own top is there for whoever may see the folder, even empty)."""
    folder_id, rel = sc.directory_of(raw_id)
    folder = next((r for r in await _library_folders(db, audience) if r["id"] == folder_id), None)
    if folder is None:
        raise sc.not_found("directory")
    subdirectories, songs = await _children(db, audience, folder_id, rel)
    if rel and not subdirectories and not songs:
        raise sc.not_found("directory")
    parent = None if not rel else sc.directory_id(folder_id, rel.rpartition("/")[0])
    name = rel.rpartition("/")[2] if rel else _folder_name(folder["path"])
    return Directory(sc.directory_id(folder_id, rel), name, parent, subdirectories, songs)


async def tops(db: Database, audience: Audience, chosen: Scope) -> list[Directory]:
    """The top of each library folder in scope that the caller may see (what getIndexes lists of them)."""
    if not chosen.library:
        return []
    found = []
    for folder in await _library_folders(db, audience):
        if chosen.library_folder in (None, folder["id"]):
            found.append(await directory(db, audience, sc.directory_id(folder["id"], "")))
    return found


def subdirectory_entry(parent: str, sub: Subdirectory) -> dict[str, Any]:
    """A subdirectory as a `Child` (isDir) in its parent's listing."""
    entry: dict[str, Any] = {"id": sub.id, "parent": parent, "isDir": True, "title": sub.name, "album": sub.name}
    if sub.has_art:
        entry["coverArt"] = sub.id
    return entry


def index_entry(sub: Subdirectory) -> dict[str, Any]:
    """A folder's top directory as getIndexes lists it (an `Artist`: id and name)."""
    entry: dict[str, Any] = {"id": sub.id, "name": sub.name}
    if sub.has_art:
        entry["coverArt"] = sub.id
    return entry
