"""The music folder's scanner (plyrd.library): real files made with PyAV in a real folder, scanned by the node's
`Library` service into a real database and blob store (in this process: the scanner has no HTTP side), and by the
`plyrd library` command.

What a scan makes of tags (tracks, genres, lyrics, MusicBrainz ids, albums grouped as listeners expect, covers
embedded or beside the files), what it says of files it cannot use, and what rescans do: nothing opened when nothing
changed (the kernel's own record of opened files, through inotify, says so), a renamed file keeps its track and its
like, a deleted file takes its track, like and playlist entry with it and its link in blobs/, never the file. The
folder's files are byte-identical at the end: the node never writes to them.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import pty
import select
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import clean_env

from plyrd.catalog import likes, playlists
from plyrd.catalog.tracks import Audience
from plyrd.config import Config, load_config
from plyrd.db import Database
from plyrd.library import LIBRARY_DID
from plyrd.library.service import Library, ScanReport
from plyrd.storage import BlobStore

MB_ALBUM = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"
MB_TRACK = "b1a9c0e9-d987-4042-ae91-78d6a3267d69"
LISTENER = "did:plc:listenerlistenerlisten"


@dataclass
class Lib:
    config: Config
    music: Path
    db: Database
    store: BlobStore
    library: Library

    async def scan(self, **kw: Any) -> ScanReport:
        return await self.library.scan(trigger="cli", **kw)

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.db.fetchall(sql, params)]

    async def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
        found = await self.rows(sql, params)
        assert len(found) == 1, found
        return found[0]

    async def track(self, title: str) -> dict[str, Any]:
        return await self.one("SELECT * FROM tracks WHERE title = ?", (title,))

    async def check_refcounts(self) -> None:
        """Every blob's refcount is the number of rows naming it (tracks, albums), and every external blob's name
        in blobs/ is a link to a file of the folder."""
        counted: dict[str, int] = {}
        for table, columns in (("tracks", ("original_sha", "web_sha", "image_sha", "thumb_sha", "display_sha")),
                               ("albums", ("image_sha", "thumb_sha", "display_sha"))):
            for row in await self.rows(f"SELECT {', '.join(columns)} FROM {table}"):
                for sha in row.values():
                    if sha:
                        counted[sha] = counted.get(sha, 0) + 1
        for blob in await self.rows("SELECT sha256, refcount, external FROM blobs"):
            assert blob["refcount"] == counted.get(blob["sha256"], 0), blob
            path = self.store.path_for(blob["sha256"])
            if blob["external"]:
                assert path.is_symlink() and Path(os.readlink(path)).is_relative_to(self.music), path
            else:
                assert path.is_file() and not path.is_symlink()


@pytest.fixture
async def lib(tmp_path: Path) -> AsyncIterator[Lib]:
    music = tmp_path / "music"
    music.mkdir()
    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path / "data"),
                                            "library.folders": [str(music)]})
    for d in (config.data_dir, config.blobs_dir, config.tmp_dir):
        d.mkdir(mode=0o700, exist_ok=True)
    db = Database(config.db_path)
    await db.open()
    store = BlobStore(config.blobs_dir, config.tmp_dir, db)
    library = Library(db, store, config)
    await library.start()
    try:
        yield Lib(config, music, db, store, library)
    finally:
        await db.close()


def put(path: Path, fmt: str, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_audio(path, fmt, seconds=kw.pop("seconds", 1.0), **kw)


def linked(path: Path) -> bool:
    """Whether a name exists in the store, even as a dangling link."""
    return os.path.lexists(path)


def digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` and the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the kernel's word on which files were opened -------------------------------------------------------------------

IN_OPEN, IN_ISDIR = 0x20, 0x40000000


class Opens:
    """inotify IN_OPEN on every directory of a tree: the names of the files (not directories) opened meanwhile."""

    def __init__(self, root: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0
        for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            assert self.libc.inotify_add_watch(self.fd, str(d).encode(), IN_OPEN) >= 0

    def files(self) -> list[str]:
        names: list[str] = []
        while select.select([self.fd], [], [], 0.2)[0]:
            data = os.read(self.fd, 65536)
            i = 0
            while i < len(data):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", data, i)
                name = data[i + 16:i + 16 + size].rstrip(b"\0").decode()
                if not mask & IN_ISDIR:
                    names.append(name)
                i += 16 + size
        return names

    def close(self) -> None:
        os.close(self.fd)


# --- tags, albums, covers -------------------------------------------------------------------------------------------


async def test_tags_become_library_tracks_on_albums_in_disc_and_track_order(lib: Lib) -> None:
    cover = jpeg_bytes(40, 40, (10, 200, 10))
    album = lib.music / "Ann" / "Night Drive"
    common = {"album": "Night Drive", "album_artist": "Ann", "date": "1999-05-01", "genre": "Synth Pop;Rock",
              "MusicBrainz Album Id": MB_ALBUM}
    put(album / "a.mp3", "mp3", cover=cover, tags={**common, "title": "Late", "artist": "Ann", "track": "1/2",
                                                   "disc": "2/2", "lyrics": "first line\nsecond line",
                                                   "MusicBrainz Track Id": MB_TRACK})
    put(album / "b.mp3", "mp3", tags={**common, "title": "Early", "artist": "Ann feat. Bo", "track": "2/2",
                                      "disc": "1/2"})
    put(album / "c.mp3", "mp3", tags={**common, "title": "Earliest", "artist": "Ann", "track": "1/2", "disc": "1/2"})

    report = await lib.scan()
    assert (report.seen, report.added, report.errors) == (3, 3, 0)

    late = await lib.track("Late")
    assert late["source"] == "library" and late["artist_did"] == LIBRARY_DID
    assert late["rkey"] is None and late["record_uri"] is None and late["status"] == "ready"
    assert late["album"] == "Night Drive" and late["container"] == "mp3" and late["duration"] == pytest.approx(1, 0.2)
    assert json.loads(late["tags"]) == ["synth pop", "rock"]
    assert late["lyrics"] == "first line\nsecond line"
    tags = json.loads(late["file_tags"])
    assert (tags["artist"], tags["album_artist"], tags["year"], tags["date"]) == ("Ann", "Ann", 1999, "1999-05-01")
    assert (tags["track_number"], tags["disc_number"], tags["genres"]) == (1, 2, ["Synth Pop", "Rock"])
    assert (tags["mb_album_id"], tags["mb_track_id"]) == (MB_ALBUM, MB_TRACK)
    assert sorted(r["tag"] for r in await lib.rows("SELECT tag FROM track_tags WHERE track_id = ?", (late["id"],))) \
        == ["rock", "synth pop"]
    assert json.loads((await lib.track("Early"))["file_tags"])["artist"] == "Ann feat. Bo"

    # One album, the MusicBrainz release, never published, in disc then track order.
    albums = await lib.rows("SELECT * FROM albums")
    assert len(albums) == 1
    a = albums[0]
    assert (a["title"], a["album_artist"], a["artist_did"], a["library_key"]) == \
        ("Night Drive", "Ann", LIBRARY_DID, f"mb:{MB_ALBUM}")
    assert a["rkey"] is None and a["record_uri"] is None
    order = await lib.rows("SELECT t.title FROM album_tracks x JOIN tracks t ON t.id = x.track_id"
                           " WHERE x.album_id = ? ORDER BY x.position", (a["id"],))
    assert [r["title"] for r in order] == ["Earliest", "Early", "Late"]

    # The embedded picture is the album's cover, stored once as ordinary blobs; every track shows it.
    assert a["image_sha"] == hashlib.sha256(cover).hexdigest()
    assert {t["image_sha"] for t in await lib.rows("SELECT image_sha FROM tracks")} == {a["image_sha"]}

    # The audio is the file itself: an external blob named by its fingerprint, a link in blobs/, never a copy.
    from plyrd.library.fingerprint import fingerprint

    assert late["original_sha"] == fingerprint(album / "a.mp3")
    blob = await lib.one("SELECT * FROM blobs WHERE sha256 = ?", (late["original_sha"],))
    assert blob["external"] == 1 and blob["size"] == (album / "a.mp3").stat().st_size
    assert os.readlink(lib.store.path_for(late["original_sha"])) == str(album / "a.mp3")
    await lib.check_refcounts()
    # Nothing of the library goes to any PDS.
    assert await lib.rows("SELECT * FROM outbox") == []


async def test_albums_group_as_listeners_expect_with_covers_beside_or_inside(lib: Lib) -> None:
    blue, red = jpeg_bytes(30, 30, (0, 0, 250)), jpeg_bytes(30, 30, (250, 0, 0))
    # A compilation: one folder, one album name, a different artist on each track, no album artist tagged.
    for i, artist in enumerate(["Xan", "Yul", "Zed"], 1):
        put(lib.music / "Hits" / f"{i}.flac", "flac", tags={"title": f"Hit {i}", "artist": artist,
                                                             "album": "Summer Hits", "track": str(i)})
    (lib.music / "Hits" / "Cover.JPG").write_bytes(blue)  # any case
    # Flagged compilation with an album artist of one name.
    put(lib.music / "Flagged" / "1.mp3", "mp3", tags={"title": "Flag 1", "artist": "Pim", "album": "Mixtape",
                                                       "compilation": "1"})
    # Two albums of one name in two folders: two albums.
    put(lib.music / "Xan" / "Greatest" / "1.mp3", "mp3", tags={"title": "X best", "artist": "Xan",
                                                                "album": "Greatest Hits"})
    put(lib.music / "Yul" / "Greatest" / "1.mp3", "mp3", cover=red, tags={"title": "Y best", "artist": "Yul",
                                                                           "album": "Greatest Hits"})
    (lib.music / "Yul" / "Greatest" / "folder.png").write_bytes(b"not really a png")  # the embedded one wins
    # One album over two disc folders.
    put(lib.music / "Set" / "CD2" / "1.mp3", "mp3", tags={"title": "Disc two", "artist": "Ann", "album": "Set",
                                                           "disc": "2", "track": "1"})
    put(lib.music / "Set" / "CD1" / "1.mp3", "mp3", tags={"title": "Disc one", "artist": "Ann", "album": "Set",
                                                           "disc": "1", "track": "1"})
    # A single: no album tag, a folder image beside it.
    put(lib.music / "Loose" / "song.ogg", "ogg-vorbis", tags={"title": "Loose song", "artist": "Nobody"})
    (lib.music / "Loose" / "front.jpg").write_bytes(red)

    report = await lib.scan()
    assert (report.added, report.errors) == (9, 0), report

    albums = {(a["title"], a["album_artist"]): a for a in await lib.rows("SELECT * FROM albums")}
    assert sorted(albums) == [("Greatest Hits", "Xan"), ("Greatest Hits", "Yul"), ("Mixtape", "Various Artists"),
                              ("Set", "Ann"), ("Summer Hits", "Various Artists")]

    async def members(album: dict[str, Any]) -> list[str]:
        return [r["title"] for r in await lib.rows(
            "SELECT t.title FROM album_tracks x JOIN tracks t ON t.id = x.track_id WHERE x.album_id = ?"
            " ORDER BY x.position", (album["id"],))]

    assert await members(albums[("Summer Hits", "Various Artists")]) == ["Hit 1", "Hit 2", "Hit 3"]
    assert await members(albums[("Set", "Ann")]) == ["Disc one", "Disc two"]
    assert await members(albums[("Greatest Hits", "Yul")]) == ["Y best"]
    assert len({a["slug"] for a in albums.values()}) == 5  # two "greatest-hits" albums, two slugs

    # Covers: the image beside the files, the embedded picture, none where there is neither.
    assert albums[("Summer Hits", "Various Artists")]["image_sha"] == hashlib.sha256(blue).hexdigest()
    assert albums[("Greatest Hits", "Yul")]["image_sha"] == hashlib.sha256(red).hexdigest()
    assert albums[("Greatest Hits", "Xan")]["image_sha"] is None
    assert (await lib.track("Loose song"))["image_sha"] == hashlib.sha256(red).hexdigest()
    assert (await lib.track("Hit 2"))["image_sha"] == hashlib.sha256(blue).hexdigest()
    # The blue cover was made once for its three tracks (one original, one thumbnail, one display image).
    assert len(await lib.rows("SELECT sha256 FROM blobs WHERE external = 0")) == 3 * 2
    await lib.check_refcounts()


async def test_files_that_are_not_tracks_are_listed_with_why_and_never_stop_a_scan(lib: Lib) -> None:
    put(lib.music / "good.flac", "flac", tags={"title": "Good"})
    whole = put(lib.music / "cut.flac", "flac", seconds=3.0).read_bytes()
    (lib.music / "cut.flac").write_bytes(whole[:4000])  # a copy that stopped early
    (lib.music / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 200)
    (lib.music / "notes.txt").write_text("liner notes, not music\n")
    (lib.music / ".hidden.mp3").write_bytes(b"skipped: hidden")
    (lib.music / ".stash").mkdir()
    put(lib.music / ".stash" / "secret.mp3", "mp3", tags={"title": "Hidden"})

    report = await lib.scan()
    assert (report.seen, report.added, report.errors) == (4, 1, 3), report
    assert [t["title"] for t in await lib.rows("SELECT title FROM tracks")] == ["Good"]
    why = {e["path"]: e["why"] for e in await lib.library.errors()}
    assert set(why) == {"cut.flac", "broken.mp3", "notes.txt"}
    assert "text file" in why["notes.txt"]
    assert "MP3" in why["broken.mp3"] and "corrupt" in why["broken.mp3"]
    assert "truncated" in why["cut.flac"] or "corrupt" in why["cut.flac"]
    assert (await lib.library.errors())[0]["file"] == str(lib.music / "broken.mp3")
    status = await lib.library.status()
    assert status["counts"] == {"files": 4, "tracks": 1, "albums": 0, "errors": 3}
    assert status["last"]["state"] == "done" and status["last"]["errors"] == 3 and status["running"] is None

    # Fixed in place (a new mtime and size): read again, a track now.
    put(lib.music / "cut.flac", "flac", seconds=2.0, tags={"title": "Mended"})
    report = await lib.scan()
    assert (report.added, report.unchanged, report.errors) == (1, 3, 2), report
    assert (await lib.library.status())["counts"]["errors"] == 2


async def test_rescans_skip_unchanged_files_follow_moves_and_forget_deleted_files(lib: Lib, tmp_path: Path) -> None:
    put(lib.music / "A" / "one.mp3", "mp3", tags={"title": "One", "artist": "Ann", "album": "A", "track": "1"})
    put(lib.music / "A" / "two.mp3", "mp3", tags={"title": "Two", "artist": "Ann", "album": "A", "track": "2"})
    put(lib.music / "B" / "three.flac", "flac", tags={"title": "Three", "artist": "Bo"})
    (lib.music / "A" / "cover.jpg").write_bytes(jpeg_bytes())
    (lib.music / "B" / "readme.txt").write_text("not music")
    before = digest(lib.music)
    report = await lib.scan()
    assert (report.added, report.errors) == (3, 1)

    # Nothing changed: every file skipped by size and mtime, none opened (the kernel saw no open).
    opens = Opens(lib.music)
    try:
        report = await lib.scan()
        assert opens.files() == []
    finally:
        opens.close()
    assert (report.seen, report.unchanged, report.added, report.updated, report.errors) == (4, 4, 0, 0, 1)

    # A listener likes "One" and puts it on a playlist.
    await lib.db.execute("INSERT INTO users(did, handle) VALUES (?, 'listener.test')", (LISTENER,))
    one = await lib.track("One")
    audience = Audience(did=LISTENER, library=True)
    await likes.like(lib.db, did=LISTENER, track_id=one["id"], audience=audience)
    playlist = await playlists.create_playlist(lib.db, LISTENER, {"name": "mix"}, track_ids=[one["id"]],
                                               audience=audience)
    assert len(await lib.rows("SELECT * FROM playlist_items WHERE track_id = ?", (one["id"],))) == 1

    # Renamed into another directory: the same track (its like and playlist entry with it), its link follows.
    (lib.music / "C").mkdir()
    os.rename(lib.music / "A" / "one.mp3", lib.music / "C" / "uno.mp3")
    report = await lib.scan()
    assert (report.moved, report.added, report.removed) == (1, 0, 0), report
    moved = await lib.track("One")
    assert moved["id"] == one["id"] and moved["original_sha"] == one["original_sha"]
    assert await lib.rows("SELECT rel_path FROM library_files WHERE track_id = ?", (one["id"],)) == \
        [{"rel_path": "C/uno.mp3"}]
    assert os.readlink(lib.store.path_for(one["original_sha"])) == str(lib.music / "C" / "uno.mp3")
    assert len(await lib.rows("SELECT * FROM likes WHERE track_id = ?", (one["id"],))) == 1
    assert len(await lib.rows("SELECT * FROM playlist_items WHERE track_id = ?", (one["id"],))) == 1

    # Retagged in place (new bytes, new mtime): the same track, read again.
    two = await lib.track("Two")
    put(tmp_path / "two.mp3", "mp3", seconds=1.5, tags={"title": "Two (remastered)", "artist": "Ann",
                                                          "album": "A", "track": "2"})
    os.replace(tmp_path / "two.mp3", lib.music / "A" / "two.mp3")
    report = await lib.scan()
    assert (report.updated, report.added, report.unchanged) == (1, 0, 3), report
    retagged = await lib.one("SELECT * FROM tracks WHERE id = ?", (two["id"],))
    assert retagged["title"] == "Two (remastered)" and retagged["original_sha"] != two["original_sha"]
    assert not linked(lib.store.path_for(two["original_sha"]))  # the old fingerprint's link went

    # Deleted: the track goes with its like and its playlist entry, and its link in blobs/; the playlist stays.
    os.unlink(lib.music / "C" / "uno.mp3")
    report = await lib.scan()
    assert (report.removed, report.unchanged) == (1, 3), report
    assert await lib.rows("SELECT * FROM tracks WHERE id = ?", (one["id"],)) == []
    assert await lib.rows("SELECT * FROM likes") == []
    assert await lib.rows("SELECT * FROM playlist_items") == []
    assert len(await lib.rows("SELECT * FROM playlists WHERE id = ?", (playlist,))) == 1
    assert await lib.rows("SELECT * FROM blobs WHERE sha256 = ?", (one["original_sha"],)) == []
    assert not linked(lib.store.path_for(one["original_sha"]))
    await lib.check_refcounts()

    # Garbage collection with no grace and a backup look at links as links: no file of the folder is touched or
    # copied, every live track keeps its link.
    await lib.store.collect_garbage(grace=0)
    await lib.check_refcounts()
    from plyrd.backup import backup

    done = backup(lib.config, tmp_path / "backup")
    assert done.links == 2 and done.blobs_copied == 3  # the two tracks' files as links; the cover's three images
    three = await lib.track("Three")
    copy = tmp_path / "backup" / "blobs" / lib.store.path_for(three["original_sha"]).relative_to(lib.config.blobs_dir)
    assert copy.is_symlink() and os.readlink(copy) == str(lib.music / "B" / "three.flac")

    # The folder: exactly what the test itself did to it, byte for byte; the node wrote nothing there.
    after = digest(lib.music)
    expected = {k: v for k, v in before.items() if k not in ("A/one.mp3", "A/two.mp3")}
    expected["A/two.mp3"] = after["A/two.mp3"]
    assert after == expected


async def test_a_folder_that_vanished_is_kept_and_a_scan_can_be_limited(lib: Lib, tmp_path: Path) -> None:
    put(lib.music / "a.mp3", "mp3", tags={"title": "Kept"})
    put(lib.music / "sub" / "b.mp3", "mp3", tags={"title": "Also kept"})
    await lib.scan()
    # An unmounted disk looks like an empty or missing folder: its tracks stay until it is back.
    os.rename(lib.music, tmp_path / "elsewhere")
    report = await lib.scan()
    assert report.removed == 0 and "not available" in report.notes[0]
    lib.music.mkdir()
    report = await lib.scan()
    assert report.removed == 0 and "has no files now" in report.notes[0]
    lib.music.rmdir()
    os.rename(tmp_path / "elsewhere", lib.music)
    report = await lib.scan()
    assert (report.unchanged, report.removed) == (2, 0)

    # `only` (the watcher's): one new file scanned alone; one directory rescanned alone.
    put(lib.music / "sub" / "c.mp3", "mp3", tags={"title": "New"})
    put(lib.music / "d.mp3", "mp3", tags={"title": "Not yet"})
    report = await lib.scan(only=[lib.music / "sub" / "c.mp3"])
    assert (report.seen, report.added) == (1, 1)
    os.unlink(lib.music / "sub" / "b.mp3")
    report = await lib.scan(only=[lib.music / "sub"])
    assert (report.seen, report.removed, report.unchanged) == (1, 1, 1), report
    assert sorted(t["title"] for t in await lib.rows("SELECT title FROM tracks")) == ["Kept", "New"]


async def test_a_file_moved_to_another_library_folder_keeps_its_track(lib: Lib, tmp_path: Path) -> None:
    # "other" sorts after "music": the file is missed in the first folder before it is found in the second.
    other = tmp_path / "other"
    other.mkdir()
    await lib.library.add_folder(other)
    put(lib.music / "a.mp3", "mp3", tags={"title": "Traveller"})
    await lib.scan()
    before = await lib.track("Traveller")
    shutil.move(lib.music / "a.mp3", other / "a.mp3")
    report = await lib.scan()
    assert (report.moved, report.removed, report.added) == (1, 0, 0), report
    assert (await lib.track("Traveller"))["id"] == before["id"]
    assert os.readlink(lib.store.path_for(before["original_sha"])) == str(other / "a.mp3")


async def test_two_copies_of_one_file_share_a_blob_and_the_survivor_keeps_the_link(lib: Lib) -> None:
    put(lib.music / "first" / "song.mp3", "mp3", tags={"title": "Twice"})
    (lib.music / "second").mkdir()
    shutil.copy2(lib.music / "first" / "song.mp3", lib.music / "second" / "song.mp3")
    assert (await lib.scan()).added == 2
    sha = (await lib.one("SELECT DISTINCT original_sha FROM tracks"))["original_sha"]
    assert (await lib.one("SELECT refcount FROM blobs WHERE sha256 = ?", (sha,)))["refcount"] == 2
    target = Path(os.readlink(lib.store.path_for(sha)))
    survivor = ({lib.music / "first" / "song.mp3", lib.music / "second" / "song.mp3"} - {target}).pop()
    os.unlink(target)  # the copy the link names goes: the link now names the other one
    assert (await lib.scan()).removed == 1
    assert os.readlink(lib.store.path_for(sha)) == str(survivor)
    await lib.check_refcounts()


async def test_a_data_directory_inside_a_folder_is_never_scanned(tmp_path: Path) -> None:
    music = tmp_path / "music"
    put(music / "a.mp3", "mp3", tags={"title": "Music"})
    config = load_config(env={}, overrides={"storage.data_dir": str(music / "plyrd-data"),
                                            "library.folders": [str(music)]})
    for d in (config.data_dir, config.blobs_dir, config.tmp_dir):
        d.mkdir(mode=0o700, exist_ok=True)
    db = Database(config.db_path)
    await db.open()
    try:
        library = Library(db, BlobStore(config.blobs_dir, config.tmp_dir, db), config)
        await library.start()
        put(config.data_dir / "stray.mp3", "mp3", tags={"title": "Not music"})
        assert (await library.scan(trigger="cli")).seen == 1
        assert (await library.scan(trigger="cli")).seen == 1  # its own links and blobs are not files to scan
    finally:
        await db.close()


async def test_a_folder_no_longer_configured_leaves_the_library_its_files_stay(lib: Lib) -> None:
    put(lib.music / "A" / "a.flac", "flac", tags={"title": "Was here", "album": "Gone"})
    (lib.music / "A" / "cover.jpg").write_bytes(jpeg_bytes())
    await lib.scan()
    before = digest(lib.music)
    unconfigured = lib.config.replace(library__folders=[])
    # `plyrd library` runs with its own environment, which may not name the node's folders: it only adds.
    await Library(lib.db, lib.store, unconfigured).sync_config(forget=False)
    assert len(await lib.rows("SELECT * FROM tracks")) == 1
    # The node started with the folder gone from its config: the folder's tracks, albums and links go.
    await Library(lib.db, lib.store, unconfigured).start()
    for table in ("tracks", "albums", "library_files", "library_folders"):
        assert await lib.rows(f"SELECT * FROM {table}") == [], table
    assert await lib.rows("SELECT * FROM blobs WHERE external = 1 OR refcount > 0") == []
    assert not any(path.is_symlink() for path in lib.config.blobs_dir.rglob("*"))
    assert digest(lib.music) == before


async def test_one_scan_at_a_time_a_second_full_scan_joins_the_running_one(lib: Lib) -> None:
    for i in range(6):
        put(lib.music / f"{i}.mp3", "mp3", tags={"title": f"T{i}"})
    seen: list[int] = []
    first, second = await __import__("asyncio").gather(
        lib.library.scan(trigger="cli", progress=lambda p: seen.append(p.seen)), lib.library.scan(trigger="admin"))
    assert first is second and first.added == 6
    assert seen[-1] == 6 and len(await lib.rows("SELECT * FROM library_scans")) == 1


async def test_garbage_collection_unlinks_links_never_their_files(lib: Lib) -> None:
    put(lib.music / "kept.mp3", "mp3", tags={"title": "Kept"})
    put(lib.music / "gone.mp3", "mp3", tags={"title": "Gone before the scan"})
    stray = put(lib.music / "stray.mp3", "mp3", tags={"title": "Stray"})
    await lib.scan()
    kept, early = await lib.track("Kept"), await lib.track("Gone before the scan")
    # A link without a row (a crash between the link and its transaction), one that dangles, and a referenced
    # link whose file was deleted before any rescan.
    orphan = lib.config.blobs_dir / "aa" / "bb" / ("ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(stray, orphan)
    dangling = lib.config.blobs_dir / "cc" / "dd" / ("cd" * 32)
    dangling.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(lib.music / "never-there.mp3", dangling)
    os.unlink(lib.music / "gone.mp3")

    report = await lib.store.collect_garbage(grace=0)
    assert report.orphan_files == 2 and report.missing_files == []
    assert not linked(orphan) and not linked(dangling) and stray.is_file()
    # The referenced links stay, even the dangling one: its track is the next scan's to remove.
    assert lib.store.path_for(kept["original_sha"]).is_symlink()
    assert lib.store.path_for(early["original_sha"]).is_symlink()
    assert (await lib.scan()).removed == 1
    assert not linked(lib.store.path_for(early["original_sha"]))
    assert stray.is_file() and (lib.music / "kept.mp3").is_file()


async def test_a_scan_waits_while_another_process_scans(lib: Lib) -> None:
    import asyncio
    import fcntl

    put(lib.music / "a.mp3", "mp3", tags={"title": "Waited"})
    # Another process's scan holds the lock file (a lock of another open file, as `plyrd library scan` takes it).
    other = os.open(lib.config.data_dir / "library.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        waiting = asyncio.ensure_future(lib.scan())
        await asyncio.sleep(1.2)
        assert not waiting.done() and await lib.rows("SELECT * FROM library_scans") == []
    finally:
        os.close(other)
    assert (await asyncio.wait_for(waiting, 30)).added == 1


# --- the command line -----------------------------------------------------------------------------------------------


def _plyrd(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plyrd", "library", *args, "--data", str(data)],
                          env=clean_env(), capture_output=True, text=True, timeout=120)


def test_cli_adds_scans_and_reports_the_unreadable(tmp_path: Path) -> None:
    music, data = tmp_path / "My Music", tmp_path / "data"
    put(music / "x.flac", "flac", tags={"title": "From the CLI", "artist": "Cli"})
    (music / "junk.mp3").write_bytes(b"\x00" * 300)

    missing = _plyrd(data, "add", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    added = _plyrd(data, "add", str(music))
    assert added.returncode == 0 and str(music) in added.stdout
    assert _plyrd(data, "add", str(music / "sub")).returncode == 2  # inside a folder already there (or missing)

    scanned = _plyrd(data, "scan")  # not a terminal: one summary line, no progress bar
    assert scanned.returncode == 0, scanned.stderr
    assert "scanned 2 files" in scanned.stdout and "1 added" in scanned.stdout and "1 unreadable" in scanned.stdout
    assert scanned.stderr == ""

    status = _plyrd(data, "status")
    assert status.returncode == 0
    assert str(music) in status.stdout and "1 tracks" in status.stdout and "last scan: done (cli)" in status.stdout
    assert f"{music / 'junk.mp3'}: The file is not audio" in status.stdout

    # On a terminal: a progress bar on stderr with files, files/s and the ETA.
    put(music / "y.mp3", "mp3", tags={"title": "Second"})
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "plyrd", "library", "scan", "--data", str(data)],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=child, text=True)
    os.close(child)
    out, _ = proc.communicate(timeout=120)
    bar = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        bar += chunk
    os.close(main)
    assert proc.returncode == 0 and "1 added" in out
    assert b"3/3 files" in bar and b"files/s" in bar and b"ETA" in bar

    conn = sqlite3.connect(data / "plyrd.db")
    try:
        assert conn.execute("SELECT count(*) FROM tracks WHERE source = 'library'").fetchone()[0] == 2
    finally:
        conn.close()
    shutil.rmtree(music)  # the test's own files; the node never deletes them


async def test_a_move_the_watcher_sees_in_two_halves_keeps_its_track_and_like(lib: Lib, tmp_path: Path) -> None:
    """A slow move (out of the folder, in again later) reaches the scanner as two watch scans: the first finds the
    file gone and must not forget its track yet; the second finds it by fingerprint. A file that stays gone is
    forgotten by the follow-up scan after the grace."""
    put(lib.music / "A" / "one.mp3", "mp3", tags={"title": "One", "artist": "Ann"})
    put(lib.music / "A" / "two.mp3", "mp3", tags={"title": "Two", "artist": "Ann"}, frequency=660.0)
    await lib.scan()
    await lib.db.execute("INSERT INTO users(did, handle) VALUES (?, 'listener.test')", (LISTENER,))
    one = await lib.track("One")
    await likes.like(lib.db, did=LISTENER, track_id=one["id"], audience=Audience(did=LISTENER, library=True))
    lib.library.move_grace = 0.5

    outside = tmp_path / "outside.mp3"
    shutil.move(lib.music / "A" / "one.mp3", outside)
    (lib.music / "A" / "two.mp3").unlink()
    report = await lib.library.scan(trigger="watch", only=[lib.music / "A" / "one.mp3", lib.music / "A" / "two.mp3"])
    assert report.removed == 0
    assert (await lib.track("One"))["id"] == one["id"]  # kept while the move may still be under way

    (lib.music / "B").mkdir()
    shutil.move(outside, lib.music / "B" / "uno.mp3")
    report = await lib.library.scan(trigger="watch", only=[lib.music / "B" / "uno.mp3"])
    assert report.moved == 1, report
    assert (await lib.track("One"))["id"] == one["id"]
    assert await lib.rows("SELECT * FROM likes WHERE track_id = ?", (one["id"],))

    # "Two" stayed gone: the follow-up scan after the grace forgets it.
    for _ in range(100):
        if not await lib.rows("SELECT id FROM tracks WHERE title = 'Two'"):
            break
        await asyncio.sleep(0.1)
    assert not await lib.rows("SELECT id FROM tracks WHERE title = 'Two'")
    assert (await lib.track("One"))["id"] == one["id"]
    await lib.check_refcounts()
