"""The Subsonic-compatible API (/rest) through a real node process and the real PDS: developer-token auth (plain,
enc:, apiKey; refused cookies and wrong tokens), the XML and JSON envelopes, browsing ids that round-trip, streaming
the exact bytes with ranges, cover art, album lists, playlists and their visibility, scrobbles and stars."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_fixture
from subsonic_support import Listener, rest_listener

NS = "{http://subsonic.org/restapi}"

node = node_fixture("subsonic")


@pytest.fixture(scope="module")
def alice(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("ssalice"))


@pytest.fixture(scope="module")
def bob(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("ssbob"))


@pytest.fixture(scope="module")
def library(node, alice: Listener, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Alice's catalog: an album of two tracks (the first with artwork), a single that needs an MP3 rendition, and
    a private playlist."""
    tmp = tmp_path_factory.mktemp("subsonic-audio")
    files = {
        "a1": make_audio(tmp / "a1.mp3", "mp3", seconds=2.0),
        "a2": make_audio(tmp / "a2.flac", "flac", seconds=2.0, frequency=330.0),
        "single": make_audio(tmp / "single.aiff", "aiff", seconds=2.0, frequency=550.0),
    }
    ids: dict[str, int] = {}
    for key, path in files.items():
        extra: dict[str, Any] = {"image": ("c.jpg", jpeg_bytes(), "image/jpeg")} if key == "a1" else {}
        ids[key] = alice.upload(path, title=f"Song {key}", tags='["rock"]' if key != "single" else '["ambient"]',
                                **extra)
    http, csrf = alice.artist.http, {"X-CSRF-Token": alice.artist.csrf}
    r = http.post("/albums/", json={"title": "Zebra Nights"}, headers=csrf)
    assert r.status_code == 200, r.text
    album = r.json()["id"]
    for key in ("a1", "a2"):
        r = http.post(f"/albums/{album}/tracks", json={"track_id": ids[key]}, headers=csrf)
        assert r.status_code == 200, r.text
    r = http.post("/lists/playlists", json={"name": "Secret", "is_private": True}, headers=csrf)
    assert r.status_code == 200, r.text
    playlist = r.json()["id"]
    deadline = time.monotonic() + 20
    while (r := http.post(f"/lists/playlists/{playlist}/tracks", json={"track_id": ids["a2"]},
                          headers=csrf)).status_code != 200:
        assert time.monotonic() < deadline, r.text  # the track's record may still be on its way
        time.sleep(0.2)
    return {"files": files, "ids": ids, "album": album, "playlist": playlist}


# ---- auth and envelope ------------------------------------------------------------------------------------------


def test_auth_with_developer_tokens(node, alice: Listener) -> None:
    rest = alice.rest

    def answer(**params: Any) -> dict[str, Any]:
        r = rest.get("/rest/ping", params={"f": "json", **params})
        assert r.status_code == 200
        return r.json()["subsonic-response"]

    assert answer(u="whoever", p=alice.token)["status"] == "ok"
    assert answer(u="whoever", p="enc:" + alice.token.encode().hex())["status"] == "ok"
    assert answer(apiKey=alice.token)["status"] == "ok"
    assert answer(u="x", p="wrong-token")["error"]["code"] == 40
    assert answer(u="x", p="enc:zz")["error"]["code"] == 40
    assert answer(apiKey="wrong-token")["error"]["code"] == 44
    assert answer(apiKey=alice.token, u="x")["error"]["code"] == 43
    # Token auth checks the Subsonic password of the user u names (tests/test_subsonic_auth.py); a developer token
    # cannot be used that way, since the node keeps it only hashed.
    assert answer(u="x", t="0" * 32, s="salt")["error"]["code"] == 40
    assert answer(u=alice.artist.did, t=hashlib.md5((alice.token + "salt").encode()).hexdigest(),
                  s="salt")["error"]["code"] == 40
    assert answer()["error"]["code"] == 10
    # The browser session's cookie is ignored here, and its value is no password either.
    r = alice.artist.http.get("/rest/ping", params={"f": "json"})
    assert r.json()["subsonic-response"]["error"]["code"] == 10
    cookie = alice.artist.http.cookies["session_id"]
    assert answer(u="x", p=cookie)["error"]["code"] == 40


def test_xml_by_default_json_on_request_and_unknown_methods(node, alice: Listener) -> None:
    r = alice.rest.get("/rest/ping.view", params={"u": "x", "p": alice.token})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    assert root.tag == NS + "subsonic-response"
    assert root.attrib["status"] == "ok" and root.attrib["version"] == "1.16.1"
    assert root.attrib["type"] == "plyrd" and root.attrib["openSubsonic"] == "true" and root.attrib["serverVersion"]

    r = alice.rest.get("/rest/getLicense", params={"apiKey": alice.token, "f": "json"})
    body = r.json()["subsonic-response"]
    assert body["status"] == "ok" and body["openSubsonic"] is True and body["license"]["valid"] is True

    # Form-encoded POST, as OpenSubsonic's formPost allows.
    r = alice.rest.post("/rest/getMusicFolders", data={"apiKey": alice.token, "f": "json"})
    assert r.json()["subsonic-response"]["musicFolders"]["musicFolder"][0]["id"] == 1
    ext = alice.call("getOpenSubsonicExtensions")["openSubsonicExtensions"]
    # Exactly the extensions the node implements, each exercised by a test of its own.
    assert sorted(e["name"] for e in ext) == ["apiKeyAuthentication", "formPost", "songLyrics",
                                              "topSongsByArtistId", "transcodeOffset"]
    assert all(e["versions"] == [1] for e in ext)

    r = alice.rest.get("/rest/noSuchMethod.view", params={"apiKey": alice.token})
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert root.attrib["status"] == "failed" and root.find(NS + "error").attrib["code"] == "70"
    assert alice.error("getSong") == 10
    assert alice.error("getSong", id="tr-999999") == 70
    assert alice.error("getAlbum", id="al-nope") == 70


# ---- browsing ---------------------------------------------------------------------------------------------------


def test_artists_albums_songs_round_trip(node, alice: Listener, library: dict[str, Any]) -> None:
    ids = library["ids"]
    index = alice.call("getArtists")["artists"]["index"]
    artists = [a for group in index for a in group["artist"]]
    mine = next(a for a in artists if a["id"] == f"ar-{alice.artist.did}")
    assert mine["albumCount"] == 2  # the album and the Singles pseudo-album

    artist = alice.call("getArtist", id=mine["id"])["artist"]
    names = [a["name"] for a in artist["album"]]
    assert names == ["Zebra Nights", "Singles"]
    album_id = f"al-{library['album']}"
    assert artist["album"][0]["id"] == album_id

    album = alice.call("getAlbum", id=album_id)["album"]
    assert album["songCount"] == 2 and album["artistId"] == mine["id"]
    assert [s["id"] for s in album["song"]] == [f"tr-{ids['a1']}", f"tr-{ids['a2']}"]
    assert [s["track"] for s in album["song"]] == [1, 2]
    singles = alice.call("getAlbum", id=f"al-singles-{alice.artist.did}")["album"]
    assert [s["id"] for s in singles["song"]] == [f"tr-{ids['single']}"]

    song = alice.call("getSong", id=f"tr-{ids['a1']}")["song"]
    assert song["albumId"] == album_id and song["artistId"] == mine["id"] and song["title"] == "Song a1"
    assert song["suffix"] == "mp3" and song["genre"] == "rock" and song["duration"] == 2
    assert song["size"] == library["files"]["a1"].stat().st_size
    single = alice.call("getSong", id=f"tr-{ids['single']}")["song"]
    assert single["suffix"] == "aiff" and single["transcodedSuffix"] == "mp3"

    # The same ids in XML, with genres as element text.
    r = alice.rest.get("/rest/getGenres", params={"apiKey": alice.token})
    genres = {g.text: g.attrib for g in ET.fromstring(r.content).iter(NS + "genre")}
    assert genres["rock"]["songCount"] == "2" and genres["rock"]["albumCount"] == "1"
    assert genres["ambient"]["songCount"] == "1"

    found = alice.call("search3", query="song a")["searchResult3"]
    assert {s["id"] for s in found["song"]} >= {f"tr-{ids['a1']}", f"tr-{ids['a2']}"}
    # Songs come from the search index: a typo still finds them, which substring matching never would.
    typo = alice.call("search3", query="snog", artistCount=0, albumCount=0)["searchResult3"]
    assert {s["id"] for s in typo["song"]} >= {f"tr-{ids['a1']}", f"tr-{ids['a2']}"}, typo
    # Past the index's first 50 answers (or a one-letter query) substring matching answers instead.
    deep = alice.call("search3", query="song", songCount=10, songOffset=45)["searchResult3"]
    assert deep["song"] == []
    assert any(a["id"] == album_id for a in alice.call("search3", query="zebra")["searchResult3"]["album"])
    songs = alice.call("getRandomSongs", size=50)["randomSongs"]["song"]
    assert {s["id"] for s in songs} >= {f"tr-{i}" for i in ids.values()}
    assert all(s["genre"] == "rock" for s in alice.call("getRandomSongs", genre="rock")["randomSongs"]["song"])


def test_album_lists(node, alice: Listener, library: dict[str, Any]) -> None:
    album_id, singles = f"al-{library['album']}", f"al-singles-{alice.artist.did}"

    def listed(kind: str, **params: Any) -> list[str]:
        return [a["id"] for a in alice.call("getAlbumList2", type=kind, size=500, **params)["albumList2"]["album"]]

    assert {album_id, singles} <= set(listed("newest"))
    by_name = listed("alphabeticalByName")
    assert by_name.index(singles) < by_name.index(album_id)  # "Singles" < "Zebra Nights"
    assert {album_id, singles} <= set(listed("random"))
    assert listed("byGenre", genre="rock") == [album_id] or album_id in listed("byGenre", genre="rock")
    assert singles not in listed("byGenre", genre="rock")
    year = time.gmtime().tm_year
    assert album_id in listed("byYear", fromYear=year, toYear=year)
    assert alice.error("getAlbumList2") == 10
    assert alice.error("getAlbumList2", type="sideways") == 0
    folder = alice.call("getAlbumList", type="alphabeticalByName", size=500)["albumList"]["album"]
    assert any(a["id"] == album_id and a["isDir"] is True and a["title"] == "Zebra Nights" for a in folder)
    first = alice.call("getAlbumList2", type="alphabeticalByName", size=1, offset=0)["albumList2"]["album"]
    assert len(first) == 1


# ---- files ------------------------------------------------------------------------------------------------------


def test_stream_download_and_cover_art(node, alice: Listener, library: dict[str, Any]) -> None:
    ids, files = library["ids"], library["files"]
    auth = {"apiKey": alice.token}
    original = files["a1"].read_bytes()
    r = alice.rest.get("/rest/stream", params={**auth, "id": f"tr-{ids['a1']}"})
    assert r.status_code == 200 and r.content == original and r.headers["content-type"] == "audio/mpeg"
    r = alice.rest.get("/rest/stream.view", params={**auth, "id": f"tr-{ids['a1']}"},
                       headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == original[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(original)}"
    # /rest names songs by id, whose file changes when the audio is replaced: revalidated, private, never immutable.
    assert r.headers["cache-control"] == "private, no-cache" and r.headers["etag"]

    # A file browsers do not all play streams as its MP3 rendition, the bytes /audio serves; download is the original.
    detail = alice.artist.http.get(f"/tracks/{ids['single']}").json()
    r = alice.rest.get("/rest/stream", params={**auth, "id": f"tr-{ids['single']}"})
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.content == alice.rest.get(f"/audio/{detail['file_id']}").content
    r = alice.rest.get("/rest/download", params={**auth, "id": f"tr-{ids['single']}"})
    assert r.status_code == 200 and r.content == files["single"].read_bytes()
    assert "attachment" in r.headers["content-disposition"]

    r = alice.rest.get("/rest/getCoverArt", params={**auth, "id": f"tr-{ids['a1']}"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp" and r.content[8:12] == b"WEBP"
    thumb = alice.rest.get("/rest/getCoverArt", params={**auth, "id": f"tr-{ids['a1']}", "size": 64})
    assert thumb.status_code == 200 and thumb.content != r.content
    big = alice.rest.get("/rest/getCoverArt", params={**auth, "id": f"tr-{ids['a1']}", "size": 3000})
    assert big.headers["content-type"] == "image/jpeg"
    # An album without its own cover shows its first track's artwork.
    r = alice.rest.get("/rest/getCoverArt", params={**auth, "id": f"al-{library['album']}"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    r = alice.rest.get("/rest/getCoverArt", params={**auth, "id": f"tr-{ids['single']}", "f": "json"})
    assert r.json()["subsonic-response"]["error"]["code"] == 70
    assert alice.error("stream", id="tr-424242") == 70


# ---- playlists, scrobbles, stars --------------------------------------------------------------------------------


def test_playlists_respect_privacy(node, alice: Listener, bob: Listener, library: dict[str, Any]) -> None:
    pl = f"pl-{library['playlist']}"
    mine = alice.call("getPlaylists")["playlists"]["playlist"]
    entry = next(p for p in mine if p["id"] == pl)
    assert entry["public"] is False and entry["songCount"] == 1 and entry["name"] == "Secret"
    playlist = alice.call("getPlaylist", id=pl)["playlist"]
    assert [s["id"] for s in playlist["entry"]] == [f"tr-{library['ids']['a2']}"]
    assert alice.error("getCoverArt", id=pl) == 70  # no cover, and its one track has no artwork

    assert all(p["id"] != pl for p in bob.call("getPlaylists").get("playlists", {}).get("playlist", []))
    assert bob.error("getPlaylist", id=pl) == 70

    # Made public, everyone sees it.
    r = alice.artist.http.patch(f"/lists/playlists/{library['playlist']}", json={"is_private": False},
                                headers={"X-CSRF-Token": alice.artist.csrf})
    assert r.status_code == 200, r.text
    assert any(p["id"] == pl for p in bob.call("getPlaylists")["playlists"]["playlist"])
    assert bob.call("getPlaylist", id=pl)["playlist"]["public"] is True


def test_scrobble_counts_plays_and_star_likes(node, alice: Listener, bob: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["a2"]

    def plays() -> int:
        return alice.artist.http.get(f"/tracks/{track}").json()["play_count"]

    before = plays()
    bob.call("scrobble", id=f"tr-{track}", submission="false")
    assert plays() == before
    bob.call("scrobble", id=f"tr-{track}")
    assert plays() == before + 1
    bob.call("scrobble", id=f"tr-{track}")  # the same listener within the dedup window: counted once
    assert plays() == before + 1
    assert bob.error("scrobble", id="tr-999999") == 70
    # One unknown id among several: refused before any play is counted.
    assert alice.error("scrobble", id=[f"tr-{track}", "tr-999999"]) == 70
    assert plays() == before + 1

    frequent = bob.call("getAlbumList2", type="frequent")["albumList2"]["album"]
    assert frequent[0]["id"] == f"al-{library['album']}"
    recent = bob.call("getAlbumList2", type="recent")["albumList2"]["album"]
    assert [a["id"] for a in recent] == [f"al-{library['album']}"]
    assert alice.call("getAlbumList2", type="recent").get("albumList2", {}).get("album", []) == []

    bob.call("star", id=f"tr-{track}")
    bob.call("star", id=f"tr-{track}")  # starring again is fine
    assert alice.artist.http.get(f"/tracks/{track}").json()["like_count"] == 1
    assert bob.call("getSong", id=f"tr-{track}")["song"]["starred"]
    assert [s["id"] for s in bob.call("getStarred2")["starred2"]["song"]] == [f"tr-{track}"]
    starred = bob.call("getAlbumList2", type="starred")["albumList2"]["album"]
    assert [a["id"] for a in starred] == [f"al-{library['album']}"]
    bob.call("unstar", id=f"tr-{track}")
    assert alice.artist.http.get(f"/tracks/{track}").json()["like_count"] == 0
    assert "starred" not in bob.call("getSong", id=f"tr-{track}")["song"]


def test_unlisted_tracks_leave_lists_but_still_play(node, alice: Listener, library: dict[str, Any]) -> None:
    single = library["ids"]["single"]
    singles = f"al-singles-{alice.artist.did}"
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        conn.execute("UPDATE tracks SET unlisted = 1 WHERE id = ?", (single,))
        conn.commit()
        assert f"tr-{single}" not in {s["id"] for s in alice.call("getRandomSongs", size=500)["randomSongs"]["song"]}
        assert singles not in [a["id"] for a in alice.call("getArtist", id=f"ar-{alice.artist.did}")["artist"]["album"]]
        assert alice.error("getAlbum", id=singles) == 70
        assert alice.call("getSong", id=f"tr-{single}")["song"]["id"] == f"tr-{single}"
        r = alice.rest.get("/rest/stream", params={"apiKey": alice.token, "id": f"tr-{single}"})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    finally:
        conn.execute("UPDATE tracks SET unlisted = 0 WHERE id = ?", (single,))
        conn.commit()
        conn.close()


def test_folder_browsing(node, alice: Listener, library: dict[str, Any]) -> None:
    index = alice.call("getIndexes")["indexes"]["index"]
    assert any(a["id"] == f"ar-{alice.artist.did}" for group in index for a in group["artist"])
    artist_dir = alice.call("getMusicDirectory", id=f"ar-{alice.artist.did}")["directory"]
    assert [c["id"] for c in artist_dir["child"]] == [f"al-{library['album']}", f"al-singles-{alice.artist.did}"]
    album_dir = alice.call("getMusicDirectory", id=f"al-{library['album']}")["directory"]
    assert [c["id"] for c in album_dir["child"]] == [f"tr-{library['ids']['a1']}", f"tr-{library['ids']['a2']}"]
