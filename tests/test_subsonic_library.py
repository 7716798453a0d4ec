"""Subsonic apps browse the music folder the way Navidrome users expect, through a real node process, the real PDS
and a folder of real files made with PyAV, scanned by plyrd's scanner (plyrd.library):

    music/Alpha Band/First Light/01 - Opening.flac, 02 - Second Wind.mp3, cover.jpg
    music/Alpha Band/Live/Disc 1/01 - Encore.mp3       (a second album, a directory deeper)
    music/Compilations/Summer Mix/01 - Sun.flac, 02 - Sea.mp3     (two artists: a compilation)
    music/Beta/Deep/Deeper/Cave.ogg                     (Vorbis: players get an MP3 transcode)
    music/Wanderer.mp3                                   (a loose file at the top, no album)

Artists come from the tags (album artist, else artist; the compilation is "Various Artists", each song keeping its
own artist), never "library"; albums are the scanner's; getIndexes/getMusicDirectory walk the real tree; musicFolderId
narrows; a listener the node's auth.library_listeners leaves out sees none of it. Every JSON answer validates against
its OpenSubsonic schema and its XML form carries the same content."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import libopensonic
import libsonic
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_env, start_node
from helpers import db_rows, wait_for
from subsonic_support import CheckedListener, rest_listener

LIBRARY_DID = "did:plyrd:library"
REPO = Path(__file__).resolve().parents[1]


# ---- the folder, the node, the scan -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music-folder") / "music"
    album = root / "Alpha Band" / "First Light"
    album.mkdir(parents=True)
    make_audio(album / "01 - Opening.flac", "flac", seconds=1.0, tags={
        "title": "Opening", "artist": "Alpha Band", "album": "First Light", "track": "1", "date": "2011",
        "genre": "Rock"})
    make_audio(album / "02 - Second Wind.mp3", "mp3", seconds=1.0, frequency=330.0, tags={
        "title": "Second Wind", "artist": "Alpha Band", "album": "First Light", "track": "2", "date": "2011",
        "genre": "Rock"})
    (album / "cover.jpg").write_bytes(jpeg_bytes(40, 40, (20, 120, 220)))
    live = root / "Alpha Band" / "Live" / "Disc 1"
    live.mkdir(parents=True)
    make_audio(live / "01 - Encore.mp3", "mp3", seconds=1.0, frequency=350.0, tags={
        "title": "Encore", "artist": "Alpha Band", "album": "Live", "track": "1"})
    mix = root / "Compilations" / "Summer Mix"
    mix.mkdir(parents=True)
    make_audio(mix / "01 - Sun.flac", "flac", seconds=1.0, frequency=500.0, tags={
        "title": "Sun", "artist": "Sun Singer", "album": "Summer Mix", "track": "1", "genre": "Rock"})
    make_audio(mix / "02 - Sea.mp3", "mp3", seconds=1.0, frequency=520.0, tags={
        "title": "Sea", "artist": "Sea Crew", "album": "Summer Mix", "track": "2", "genre": "Pop"})
    deep = root / "Beta" / "Deep" / "Deeper"
    deep.mkdir(parents=True)
    make_audio(deep / "Cave.ogg", "ogg-vorbis", seconds=1.0, frequency=600.0, tags={
        "title": "Cave", "artist": "Beta"})
    make_audio(root / "Wanderer.mp3", "mp3", seconds=1.0, frequency=700.0, tags={
        "title": "Wanderer", "artist": "Loose Walker"})
    # A second library folder (music folder 3), with one file.
    more = root.parent / "more" / "Far Away"
    more.mkdir(parents=True)
    make_audio(more / "Far.mp3", "mp3", seconds=1.0, frequency=750.0, tags={
        "title": "Far", "artist": "Far Artist", "album": "Distance", "genre": "Rock"})
    return root


def folders_of(music: Path) -> list[Path]:
    return [music, music.parent / "more"]


@dataclass
class World:
    node: Any
    music: Path
    alice: CheckedListener  # in auth.library_listeners
    bob: CheckedListener  # signed in, but not in auth.library_listeners
    carol: CheckedListener  # an admin: admins always see the library
    upload_id: int  # alice's own upload (music folder 1)


_SCAN = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, sys.argv[3])
    from plyrd.config import load_config
    from plyrd.db import Database
    from plyrd.library.service import Library
    from plyrd.storage import BlobStore

    config = load_config(env={}, overrides={"storage.data_dir": sys.argv[1], "library.folders": sys.argv[2].split(","),
                                            "library.watch": False})

    async def main():
        db = Database(config.db_path)
        await db.open()
        try:
            library = Library(db, BlobStore(config.blobs_dir, config.tmp_dir, db), config)
            await library.start()
            report = await library.scan(trigger="cli")
            print(report)
        finally:
            await db.close()

    asyncio.run(main())
""")


def scan(node: Any, music: Path) -> None:
    """A scan of the node's music folder by plyrd's scanner, as `plyrd library scan` runs one beside the node."""
    done = subprocess.run([sys.executable, "-c", _SCAN, str(node.data), ",".join(map(str, folders_of(music))),
                           str(REPO)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def world(pds: Any, music: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    accounts = [pds.create_account(name) for name in ("sslalice", "sslbob", "sslcarol")]
    node = start_node([], cwd=tmp_path_factory.mktemp("subsonic_library"),
                      env=node_env(pds, PLYRD_LIBRARY_FOLDERS=",".join(map(str, folders_of(music))),
                                   PLYRD_LIBRARY_WATCH="false",
                                   PLYRD_LIBRARY_SCAN_INTERVAL_MINUTES="0",
                                   PLYRD_AUTH_LIBRARY_LISTENERS=accounts[0].handle,
                                   PLYRD_AUTH_ADMINS=accounts[2].handle))
    try:
        alice, bob, carol = (rest_listener(node.url, a, CheckedListener) for a in accounts)
        scan(node, music)
        assert db_rows(node, "SELECT count(*) FROM tracks WHERE source = 'library'") == [(8,)]
        assert db_rows(node, "SELECT id, path FROM library_folders ORDER BY id") == \
            [(1, str(music)), (2, str(music.parent / "more"))]
        tone = make_audio(tmp_path_factory.mktemp("upload") / "mine.mp3", "mp3", seconds=1.0, frequency=800.0)
        yield World(node, music, alice, bob, carol, alice.upload(tone, title="Alice Original", tags='["rock"]'))
    finally:
        node.stop()


def _lib_key(name: str) -> str:
    return "ar-lib~" + "".join(c.lower() if c.isascii() else c for c in name).encode().hex().upper()


def _names(index: list[dict[str, Any]]) -> list[str]:
    return [a["name"] for group in index for a in group.get("artist", [])]


def _album_id(listener: CheckedListener, name: str, **params: Any) -> str:
    albums = listener.call("getAlbumList2", type="alphabeticalByName", size=500, **params)["albumList2"]["album"]
    (found,) = [a["id"] for a in albums if a["name"] == name]
    return found


# ---- tests ------------------------------------------------------------------------------------------------------


def test_artists_come_from_tags_never_the_library(world: World) -> None:
    alice = world.alice
    artists = alice.call("getArtists")["artists"]["index"]
    names = _names(artists)
    # Album artists, as Navidrome lists them: the compilation's singers are not artists of an album of their own.
    for name in ("Alpha Band", "Various Artists", "Loose Walker", "Beta"):
        assert names.count(name) == 1, names
    assert "library" not in names and "Sun Singer" not in names
    ids = {a["name"]: a["id"] for g in artists for a in g["artist"]}
    assert ids["Alpha Band"] == _lib_key("Alpha Band") and ids["Various Artists"] == _lib_key("Various Artists")
    assert all(LIBRARY_DID not in a["id"] for g in artists for a in g["artist"])
    # Asked for by its own id, the library is no artist anywhere.
    for method in ("getArtist", "getArtistInfo2", "getCoverArt", "getSimilarSongs2"):
        assert alice.error(method, id=f"ar-{LIBRARY_DID}") == 70, method
    assert alice.error("getAlbum", id=f"al-singles-{LIBRARY_DID}") == 70
    assert not alice.call("getTopSongs", artist="library")["topSongs"].get("song")

    band = alice.call("getArtist", id=ids["Alpha Band"])["artist"]
    assert band["name"] == "Alpha Band" and band["albumCount"] == 2
    assert [a["name"] for a in band["album"]] == ["First Light", "Live"]
    assert all(a["artist"] == "Alpha Band" and a["artistId"] == ids["Alpha Band"] for a in band["album"])

    # An artist's image is their first album's cover (cover.jpg beside the files).
    r = alice.raw("getCoverArt", id=ids["Alpha Band"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), r.text

    # Starring a tag artist works like starring an account.
    alice.call("star", artistId=ids["Alpha Band"])
    starred = alice.call("getStarred2")["starred2"]
    assert [a["name"] for a in starred["artist"]] == ["Alpha Band"]
    assert next(a.get("starred") for g in alice.call("getArtists")["artists"]["index"] for a in g["artist"]
                if a["id"] == ids["Alpha Band"])
    alice.call("unstar", artistId=ids["Alpha Band"])

    # search3 finds a tag artist by name; "library" names nobody.
    assert [a["name"] for a in alice.call("search3", query="Alpha")["searchResult3"].get("artist", [])] == \
        ["Alpha Band"]
    found = alice.call("search3", query="library")["searchResult3"]
    assert not found.get("artist") and not found.get("song")
    # The search index finds them through their songs' artist tags, a typo forgiven, with their albums.
    found = alice.call("search3", query="Alpah band")["searchResult3"]
    assert [a["name"] for a in found.get("artist", [])] == ["Alpha Band"]
    assert {a["name"] for a in found.get("album", [])} == {"First Light", "Live"}
    walker = alice.call("search3", query="loose walker")["searchResult3"]
    assert [a["id"] for a in walker.get("artist", [])] == [ids["Loose Walker"]]
    assert [a["name"] for a in walker.get("album", [])] == ["Singles"]
    assert [s["title"] for s in walker.get("song", [])] == ["Wanderer"]


def test_library_albums_and_compilations(world: World) -> None:
    alice = world.alice
    album = alice.call("getAlbum", id=_album_id(alice, "First Light"))["album"]
    assert album["id"].startswith("al-") and album["artist"] == "Alpha Band"
    assert album["artistId"] == _lib_key("Alpha Band") and album["songCount"] == 2 and album["year"] == 2011
    assert [(s["track"], s["title"], s["artist"]) for s in album["song"]] == \
        [(1, "Opening", "Alpha Band"), (2, "Second Wind", "Alpha Band")]
    song = album["song"][0]
    assert song["artistId"] == _lib_key("Alpha Band") and song["albumId"] == album["id"]
    assert song["path"] == "Alpha Band/First Light/01 - Opening.flac" and song["suffix"] == "flac"
    assert song["albumArtists"] == [{"id": _lib_key("Alpha Band"), "name": "Alpha Band"}]
    assert alice.raw("getCoverArt", id=album["id"]).headers["content-type"].startswith("image/")

    mix = alice.call("getAlbum", id=_album_id(alice, "Summer Mix"))["album"]
    assert mix["artist"] == "Various Artists" and mix["artistId"] == _lib_key("Various Artists")
    assert mix["isCompilation"] is True and album["isCompilation"] is False
    assert [(s["title"], s["artist"], s["artistId"]) for s in mix["song"]] == [
        ("Sun", "Sun Singer", _lib_key("Sun Singer")), ("Sea", "Sea Crew", _lib_key("Sea Crew"))]
    assert all(s["displayAlbumArtist"] == "Various Artists" for s in mix["song"])
    various = alice.call("getArtist", id=_lib_key("Various Artists"))["artist"]
    assert [a["name"] for a in various["album"]] == ["Summer Mix"]
    # A song's own artist opens too, with no album of their own.
    singer = alice.call("getArtist", id=_lib_key("Sun Singer"))["artist"]
    assert singer["name"] == "Sun Singer" and singer["albumCount"] == 0

    # A loose file is its artist's Singles.
    walker = alice.call("getArtist", id=_lib_key("Loose Walker"))["artist"]
    assert [a["name"] for a in walker["album"]] == ["Singles"]
    singles = alice.call("getAlbum", id=walker["album"][0]["id"])["album"]
    assert [s["title"] for s in singles["song"]] == ["Wanderer"] and singles["artist"] == "Loose Walker"

    # No list names the library account.
    for kind in ("newest", "alphabeticalByArtist", "frequent"):
        for a in alice.call("getAlbumList2", type=kind, size=500)["albumList2"]["album"]:
            assert a["artist"] != "library" and LIBRARY_DID not in a["artistId"], a
    for s in alice.call("search3", query="", songCount=500)["searchResult3"]["song"]:
        assert s["artist"] != "library" and LIBRARY_DID not in s["artistId"], s


def test_music_folders_narrow_the_lists(world: World) -> None:
    alice = world.alice
    folders = alice.call("getMusicFolders")["musicFolders"]["musicFolder"]
    assert folders == [{"id": 1, "name": "plyrd"}, {"id": 2, "name": "music"}, {"id": 3, "name": "more"}]
    assert alice.call("getUser", username=alice.artist.did)["user"]["folder"] == [1, 2, 3]

    uploads = _names(alice.call("getArtists", musicFolderId=1)["artists"]["index"])
    library = _names(alice.call("getArtists", musicFolderId=2)["artists"]["index"])
    assert "Alpha Band" not in uploads and len(uploads) == 1
    assert "Alpha Band" in library and uploads[0] not in library

    in_library = {a["name"] for a in alice.call("getAlbumList2", type="newest", size=500, musicFolderId=2)
                  ["albumList2"]["album"]}
    assert in_library == {"First Light", "Live", "Summer Mix", "Singles"}
    in_uploads = alice.call("getAlbumList", type="newest", size=500, musicFolderId=1)["albumList"]["album"]
    assert [a["artistId"] for a in in_uploads] == [f"ar-{alice.artist.did}"]

    songs = alice.call("getRandomSongs", size=50, musicFolderId=1)["randomSongs"]["song"]
    assert [s["title"] for s in songs] == ["Alice Original"]
    songs = alice.call("getRandomSongs", size=50, musicFolderId=2)["randomSongs"]["song"]
    assert len(songs) == 7 and all(s["artistId"].startswith("ar-lib~") for s in songs)
    assert [s["title"] for s in alice.call("getRandomSongs", size=50, musicFolderId=3)["randomSongs"]["song"]] == \
        ["Far"]
    assert _names(alice.call("getArtists", musicFolderId=3)["artists"]["index"]) == ["Far Artist"]
    assert "Far Artist" not in library and "Far Artist" in _names(alice.call("getArtists")["artists"]["index"])
    assert [a["name"] for a in alice.call("getAlbumList2", type="newest", musicFolderId=3)["albumList2"]["album"]] \
        == ["Distance"]
    assert [s["title"] for s in alice.call("getSongsByGenre", genre="rock", musicFolderId=3)
            ["songsByGenre"]["song"]] == ["Far"]
    assert [s["title"] for s in alice.call("search3", query="Far", musicFolderId=3)["searchResult3"]["song"]] == \
        ["Far"]
    assert not alice.call("search3", query="Far", musicFolderId=2)["searchResult3"].get("song")
    assert {s["title"] for s in alice.call("getSongsByGenre", genre="rock", count=50, musicFolderId=2)
            ["songsByGenre"]["song"]} == {"Opening", "Second Wind", "Sun"}
    assert [s["title"] for s in alice.call("getSongsByGenre", genre="rock", musicFolderId=1)
            ["songsByGenre"]["song"]] == ["Alice Original"]
    found = alice.call("search3", query="", songCount=500, musicFolderId=1)["searchResult3"]
    assert [s["title"] for s in found["song"]] == ["Alice Original"]
    found = alice.call("search3", query="Sea", musicFolderId=2)["searchResult3"]
    assert [s["title"] for s in found["song"]] == ["Sea"]

    assert alice.error("getArtists", musicFolderId=4) == 70
    assert alice.error("getAlbumList2", type="newest", musicFolderId="x") == 70


def test_indexes_and_directories_follow_the_real_tree(world: World) -> None:
    alice = world.alice
    indexes = alice.call("getIndexes", musicFolderId=2)["indexes"]
    tops = {a["name"]: a["id"] for g in indexes["index"] for a in g["artist"]}
    assert set(tops) == {"Alpha Band", "Beta", "Compilations"}
    assert [c["title"] for c in indexes["child"]] == ["Wanderer"]
    assert indexes["child"][0]["parent"] == "dir-1" and indexes["child"][0]["path"] == "Wanderer.mp3"

    band = alice.call("getMusicDirectory", id=tops["Alpha Band"])["directory"]
    assert band["name"] == "Alpha Band" and band["parent"] == "dir-1"
    assert [(c["title"], c["isDir"]) for c in band["child"]] == [("First Light", True), ("Live", True)]
    first = alice.call("getMusicDirectory", id=band["child"][0]["id"])["directory"]
    assert first["parent"] == band["id"]
    assert [(c["title"], c["isDir"], c["parent"]) for c in first["child"]] == [
        ("Opening", False, first["id"]), ("Second Wind", False, first["id"])]
    live = alice.call("getMusicDirectory", id=band["child"][1]["id"])["directory"]
    assert [(c["title"], c["isDir"]) for c in live["child"]] == [("Disc 1", True)]
    disc = alice.call("getMusicDirectory", id=live["child"][0]["id"])["directory"]
    assert [c["title"] for c in disc["child"]] == ["Encore"] and disc["parent"] == live["id"]

    # Deeper still, and ids that stay the same on a rescan (they are the folder and the path).
    beta = alice.call("getMusicDirectory", id=tops["Beta"])["directory"]
    deep = alice.call("getMusicDirectory", id=beta["child"][0]["id"])["directory"]
    deeper = alice.call("getMusicDirectory", id=deep["child"][0]["id"])["directory"]
    assert deeper["name"] == "Deeper" and [c["title"] for c in deeper["child"]] == ["Cave"]
    scan(world.node, world.music)
    again = alice.call("getIndexes", musicFolderId=2)["indexes"]
    assert {a["name"]: a["id"] for g in again["index"] for a in g["artist"]} == tops

    # A directory's artwork is its first song's album cover; the folder's own top lists the same as getIndexes.
    assert alice.raw("getCoverArt", id=band["child"][0]["id"]).headers["content-type"].startswith("image/")
    root = alice.call("getMusicDirectory", id="dir-1")["directory"]
    assert [c["title"] for c in root["child"]] == ["Alpha Band", "Beta", "Compilations", "Wanderer"]

    # Without musicFolderId: the uploads' artists beside the library's top directories.
    everything = alice.call("getIndexes")["indexes"]
    names = _names(everything["index"])
    assert {"Alpha Band", "Beta", "Compilations"} <= set(names) and "library" not in names
    assert len(names) == 5 and "Far Away" in names  # the second folder's top directory too
    uploads = alice.call("getIndexes", musicFolderId=1)["indexes"]
    assert len(_names(uploads["index"])) == 1 and "child" not in uploads

    for bad in ("dir-1-zz", "dir-1-" + b"Nope".hex(), "dir-99", "dir-0"):
        assert alice.error("getMusicDirectory", id=bad) == 70


def test_streaming_and_download(world: World) -> None:
    alice = world.alice
    songs = alice.call("getRandomSongs", size=50, musicFolderId=2)["randomSongs"]["song"]
    (cave,) = [s for s in songs if s["title"] == "Cave"]
    # Vorbis in Ogg is not for every player as it is: a plain stream is an MP3 transcode, raw the file itself.
    assert cave["suffix"] == "ogg" and cave["transcodedSuffix"] == "mp3"
    assert cave["transcodedContentType"] == "audio/mpeg"
    ogg = (world.music / "Beta" / "Deep" / "Deeper" / "Cave.ogg").read_bytes()
    r = alice.raw("stream", id=cave["id"])
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg", r.text
    assert len(r.content) > 1000 and not r.content.startswith(b"OggS")
    assert alice.raw("stream", id=cave["id"], format="raw").content == ogg
    assert alice.raw("download", id=cave["id"]).content == ogg

    album = alice.call("getAlbum", id=_album_id(alice, "First Light"))["album"]
    opening = album["song"][0]
    assert "transcodedSuffix" not in opening
    original = (world.music / "Alpha Band" / "First Light" / "01 - Opening.flac").read_bytes()
    assert alice.raw("stream", id=opening["id"]).content == original
    r = alice.raw("download", id=opening["id"])
    assert r.status_code == 200 and r.content == original
    assert "01 - Opening.flac" in r.headers.get("content-disposition", "")


def test_a_listener_without_the_library_sees_none_of_it(world: World) -> None:
    alice, bob = world.alice, world.bob
    album = alice.call("getAlbum", id=_album_id(alice, "First Light"))["album"]
    song = album["song"][0]
    directory = alice.call("getIndexes", musicFolderId=2)["indexes"]["index"][0]["artist"][0]["id"]

    assert bob.call("getMusicFolders")["musicFolders"]["musicFolder"] == [{"id": 1, "name": "plyrd"}]
    names = _names(bob.call("getArtists")["artists"]["index"])
    assert names and not {"Alpha Band", "Various Artists", "Loose Walker", "Beta", "library"} & set(names)
    index = bob.call("getIndexes")["indexes"]
    assert "child" not in index and not {"Alpha Band", "Compilations"} & set(_names(index["index"]))
    assert all(a["artistId"] == f"ar-{alice.artist.did}"
               for a in bob.call("getAlbumList2", type="newest", size=500)["albumList2"]["album"])
    assert [s["title"] for s in bob.call("search3", query="", songCount=500)["searchResult3"]["song"]] == \
        ["Alice Original"]
    assert [s["title"] for s in bob.call("getRandomSongs", size=50)["randomSongs"]["song"]] == ["Alice Original"]
    assert not bob.call("getSongsByGenre", genre="pop")["songsByGenre"].get("song")
    for method, params in (("getAlbum", {"id": album["id"]}), ("getSong", {"id": song["id"]}),
                           ("getArtist", {"id": _lib_key("Alpha Band")}), ("getMusicDirectory", {"id": directory}),
                           ("getMusicDirectory", {"id": "dir-1"}), ("getIndexes", {"musicFolderId": 2}),
                           ("getArtists", {"musicFolderId": 2}), ("star", {"id": song["id"]})):
        assert bob.error(method, **params) == 70, (method, params)
    for method, params in (("stream", {"id": song["id"]}), ("download", {"id": song["id"]}),
                           ("getCoverArt", {"id": _lib_key("Alpha Band")}), ("getCoverArt", {"id": album["id"]}),
                           ("getCoverArt", {"id": directory})):
        body = bob.raw(method, f="json", **params).json()["subsonic-response"]
        assert body["error"]["code"] == 70, (method, body)


def test_python_clients_browse_the_folder(world: World) -> None:
    url = urlparse(world.node.url)
    # py-sonic for the folders: py-opensonic's get_music_folders reads `musicFolders` as the list itself, which no
    # server answers (the schema, Navidrome and Subsonic nest it: musicFolders.musicFolder).
    sonic = libsonic.Connection(f"{url.scheme}://{url.hostname}", world.alice.artist.did, world.alice.token,
                                port=url.port, legacyAuth=True)
    folders = sonic.getMusicFolders()["musicFolders"]["musicFolder"]
    assert [(f["id"], f["name"]) for f in folders] == [(1, "plyrd"), (2, "music"), (3, "more")]
    assert {a["name"] for i in sonic.getIndexes(musicFolderId=2)["indexes"]["index"] for a in i["artist"]} == \
        {"Alpha Band", "Beta", "Compilations"}
    conn = libopensonic.Connection(f"{url.scheme}://{url.hostname}", api_key=world.alice.token, port=url.port)
    artists = [a.name for i in conn.get_artists().index for a in i.artist]
    assert "Alpha Band" in artists and "library" not in artists
    indexes = conn.get_indexes(music_folder_id=2)
    tops = {a.name: a.id for i in indexes.index for a in i.artist}
    assert set(tops) == {"Alpha Band", "Beta", "Compilations"}
    band = conn.get_music_directory(tops["Alpha Band"])
    assert [c.title for c in band.child] == ["First Light", "Live"]
    album = conn.get_album(_album_id(world.alice, "Summer Mix"))
    assert album.artist == "Various Artists" and [s.artist for s in album.song] == ["Sun Singer", "Sea Crew"]


def test_scan_status_and_an_admin_starting_a_scan(world: World) -> None:
    alice, bob, carol = world.alice, world.bob, world.carol
    assert alice.call("getScanStatus")["scanStatus"]["count"] == 9  # 8 files of the folders and her upload
    assert bob.call("getScanStatus")["scanStatus"]["count"] == 1
    assert alice.error("startScan") == 50
    before = db_rows(world.node, "SELECT count(*) FROM library_scans")[0][0]
    assert carol.call("startScan")["scanStatus"]["scanning"] is True
    wait_for(lambda: db_rows(world.node, "SELECT count(*) FROM library_scans WHERE state = 'done'")[0][0] > before)
    assert _names(carol.call("getArtists", musicFolderId=2)["artists"]["index"]) == \
        _names(alice.call("getArtists", musicFolderId=2)["artists"]["index"])


def test_artist_info_and_top_songs_of_a_tag_artist(world: World) -> None:
    alice = world.alice
    info = alice.call("getArtistInfo2", id=_lib_key("Alpha Band"))["artistInfo2"]
    assert "biography" not in info or info["biography"] is None
    top = alice.call("getTopSongs", artist="Alpha Band", count=10)["topSongs"]["song"]
    assert {s["title"] for s in top} == {"Opening", "Second Wind", "Encore"}
    top = alice.call("getTopSongs", artist="Various Artists", count=10)["topSongs"]["song"]
    assert {s["title"] for s in top} == {"Sun", "Sea"}
    assert not world.bob.call("getTopSongs", artist="Alpha Band")["topSongs"].get("song")
    assert world.bob.error("getArtistInfo2", id=_lib_key("Alpha Band")) == 70
    # Similar songs leave the seed's artist first: a tag artist, not the library that holds every file.
    opening = next(s for s in alice.call("getRandomSongs", size=50, musicFolderId=2)["randomSongs"]["song"]
                   if s["title"] == "Opening")
    similar = alice.call("getSimilarSongs2", id=opening["id"])["similarSongs2"]["song"]
    assert {s["title"] for s in similar[:3]} == {"Sun", "Far", "Alice Original"}
    assert [s["title"] for s in similar[3:]] == ["Second Wind"]
