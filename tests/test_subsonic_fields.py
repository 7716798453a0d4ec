"""Subsonic song and album fields from what the node knows, through a real node and the real PDS: the file's tags
(artist, album artist, date, disc, MusicBrainz ids, ReplayGain, sort name) written with PyAV, the file's format
(bit depth, sample rate, channels), the node's loudness analysis, the time of a like; albums a track names only in
its tags; lyrics from the file's tags and the portal's edits, plain and LRC-timed (getLyrics, getLyricsBySongId)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
import subsonic_support
from audio_samples import jpeg_bytes, make_audio
from conftest import node_fixture
from helpers import db
from subsonic_support import rest_listener

from plyrd.media.lyrics import lrc_lines
from plyrd.media.probe import probe

NS = "{http://subsonic.org/restapi}"
MB_TRACK = "0f4c2a1e-1111-4a2b-9c3d-123456789abc"
MB_ALBUM = "a1b2c3d4-2222-4a2b-9c3d-123456789abc"
LRC = "[ar:Tag Artist]\n[00:01.00]first line\n[00:02.50]second line\n[00:04.25]third line"

node = node_fixture("subsonic_fields")


class Listener(subsonic_support.Listener):
    def edit(self, track_id: int, **fields: str) -> httpx.Response:
        return self.artist.http.patch(f"/tracks/{track_id}", data=fields, headers={"X-CSRF-Token": self.artist.csrf})


@pytest.fixture(scope="module")
def alice(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("sfalice"), Listener)


@pytest.fixture(scope="module")
def bob(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("sfbob"), Listener)


@pytest.fixture(scope="module")
def library(alice: Listener, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Alice's uploads: two tracks whose tags name the album "Blue Period" (no album field: the upload makes no
    album), the second on the tags' track 1; and an untagged WAV, a single."""
    tmp = tmp_path_factory.mktemp("fields-audio")
    one = make_audio(tmp / "one.flac", "flac24", seconds=2.0, tags={
        "title": "One", "artist": "Tag Artist", "album_artist": "Tag Album Artist", "album": "Blue Period",
        "track": "2/3", "disc": "1/2", "date": "1998-03-04", "genre": "Jazz;Blues", "lyrics": LRC,
        "MUSICBRAINZ_TRACKID": MB_TRACK, "MUSICBRAINZ_ALBUMID": MB_ALBUM, "titlesort": "One, The",
        "REPLAYGAIN_TRACK_GAIN": "-3.50 dB", "REPLAYGAIN_TRACK_PEAK": "0.912", "REPLAYGAIN_ALBUM_GAIN": "-4.25 dB",
        "REPLAYGAIN_ALBUM_PEAK": "0.95"})
    two = make_audio(tmp / "two.mp3", "mp3", seconds=2.0, channels=1, frequency=330.0, cover=jpeg_bytes(), tags={
        "title": "Two", "artist": "Tag Artist", "album": "blue period", "track": "1", "date": "1998",
        "lyrics": "plain words\nsecond plain line"})
    single = make_audio(tmp / "single.wav", "wav", seconds=2.0, frequency=550.0)
    return {"one": alice.upload(one), "two": alice.upload(two), "single": alice.upload(single, title="Loose")}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_song_fields_come_from_the_file_tags_and_format(node, alice: Listener, bob: Listener,
                                                        library: dict[str, int]) -> None:
    one = bob.call("getSong", id=f"tr-{library['one']}")["song"]
    assert (one["artist"], one["displayArtist"]) == ("Tag Artist", "Tag Artist")
    assert one["displayAlbumArtist"] == "Tag Album Artist"
    assert one["albumArtists"] == [{"id": f"ar-{alice.artist.did}", "name": "Tag Album Artist"}]
    assert one["artists"] == [{"id": f"ar-{alice.artist.did}", "name": "Tag Artist"}]
    assert one["artistId"] == f"ar-{alice.artist.did}"  # the node's artist is the uploader
    assert (one["year"], one["track"], one["discNumber"]) == (1998, 2, 1)
    assert one["musicBrainzId"] == MB_TRACK and one["sortName"] == "One, The"
    assert (one["bitDepth"], one["samplingRate"], one["channelCount"]) == (24, 44100, 2)
    assert one["replayGain"] == {"trackGain": -3.5, "trackPeak": 0.912, "albumGain": -4.25, "albumPeak": 0.95}
    assert one["album"] == "Blue Period"
    assert [g["name"] for g in one["genres"]] == ["jazz"]  # the track's tags: the upload took the first genre

    two = bob.call("getSong", id=f"tr-{library['two']}")["song"]
    assert (two["channelCount"], two["year"], two["track"]) == (1, 1998, 1)
    assert "bitDepth" not in two and "discNumber" not in two  # lossy; no disc tag

    # No tags: the uploader's name, the upload's year, and ReplayGain from the node's loudness analysis.
    single = bob.call("getSong", id=f"tr-{library['single']}")["song"]
    gain, peak, created = db(node, "SELECT track_gain_db, sample_peak, created_at FROM tracks WHERE id = ?",
                             (library["single"],))[0]
    assert gain is not None and peak is not None
    assert single["replayGain"] == {"trackGain": round(gain, 2), "trackPeak": round(peak, 6)}
    assert single["year"] == datetime.fromtimestamp(created, UTC).year
    assert single["artist"] == single["displayAlbumArtist"] != "Tag Artist"
    assert single["album"] == "Singles" and single["albumId"] == f"al-singles-{alice.artist.did}"
    assert two["displayAlbumArtist"] == single["artist"]  # no album artist tag: the uploader


def test_starred_is_the_time_of_the_like(node, bob: Listener, library: dict[str, int]) -> None:
    track = library["two"]
    time.sleep(1.1)  # the like comes well after the upload, so the two times differ
    bob.call("star", id=f"tr-{track}")
    liked_at = db(node, "SELECT l.created_at FROM likes l JOIN users u ON u.did = l.did WHERE l.track_id = ?",
                  (track,))
    (at,), created = liked_at[0], db(node, "SELECT created_at FROM tracks WHERE id = ?", (track,))[0][0]
    assert at - created > 1
    assert bob.call("getSong", id=f"tr-{track}")["song"]["starred"] == _iso(at)
    album = bob.call("getSong", id=f"tr-{track}")["song"]["albumId"]
    songs = bob.call("getAlbum", id=album)["album"]["song"]
    assert {s["id"]: s.get("starred") for s in songs} == {f"tr-{library['two']}": _iso(at),
                                                          f"tr-{library['one']}": None}
    bob.call("unstar", id=f"tr-{track}")


def test_a_named_album_groups_its_tracks(node, alice: Listener, bob: Listener, library: dict[str, int]) -> None:
    one = bob.call("getSong", id=f"tr-{library['one']}")["song"]
    two = bob.call("getSong", id=f"tr-{library['two']}")["song"]
    assert one["albumId"] == two["albumId"] and one["albumId"].startswith(f"al-{alice.artist.did}~")
    assert one["parent"] == one["albumId"]
    album = bob.call("getAlbum", id=one["albumId"])["album"]
    assert [s["id"] for s in album["song"]] == [two["id"], one["id"]]  # the tags' track order
    assert (album["name"], album["songCount"], album["year"]) == ("Blue Period", 2, 1998)
    assert album["artist"] == "Tag Album Artist" and album["artistId"] == f"ar-{alice.artist.did}"
    assert album["musicBrainzId"] == MB_ALBUM and album["genre"] == "jazz"

    artist = bob.call("getArtist", id=f"ar-{alice.artist.did}")["artist"]
    names = {a["name"]: a["id"] for a in artist["album"]}
    assert names == {"Blue Period": one["albumId"], "Singles": f"al-singles-{alice.artist.did}"}
    singles = bob.call("getAlbum", id=f"al-singles-{alice.artist.did}")["album"]["song"]
    assert [s["id"] for s in singles] == [f"tr-{library['single']}"]

    listed = bob.call("getAlbumList2", type="alphabeticalByName", size="50")["albumList2"]["album"]
    assert one["albumId"] in [a["id"] for a in listed]
    by_year = bob.call("getAlbumList2", type="byYear", fromYear="1990", toYear="1999")["albumList2"]["album"]
    assert [a["id"] for a in by_year] == [one["albumId"]]
    found = bob.call("search3", query="Blue Period")["searchResult3"]
    assert [a["id"] for a in found["album"]] == [one["albumId"]]
    art = bob.rest.get("/rest/getCoverArt", params={"apiKey": bob.token, "id": one["albumId"]})
    assert art.status_code == 200 and art.headers["content-type"].startswith("image/")
    missing = bob.rest.get("/rest/getAlbum", params={"apiKey": bob.token, "f": "json",
                                                      "id": f"al-{alice.artist.did}~4E4F5045"})
    assert missing.json()["subsonic-response"]["error"]["code"] == 70

    # A named album and Singles can be starred like a node album, and unstarred.
    for album_id in (one["albumId"], f"al-singles-{alice.artist.did}"):
        bob.call("star", albumId=album_id)
        starred = bob.call("getStarred2")["starred2"]["album"]
        assert album_id in [a["id"] for a in starred] and bob.call("getAlbum", id=album_id)["album"]["starred"]
        bob.call("unstar", albumId=album_id)
        assert album_id not in [a["id"] for a in bob.call("getStarred2")["starred2"]["album"]]


def test_lyrics_from_tags_synced_and_plain(bob: Listener, library: dict[str, int]) -> None:
    synced = bob.call("getLyricsBySongId", id=f"tr-{library['one']}")["lyricsList"]["structuredLyrics"]
    assert len(synced) == 1 and synced[0]["synced"] is True and synced[0]["lang"] == "und"
    assert synced[0]["line"] == [{"start": 1000, "value": "first line"}, {"start": 2500, "value": "second line"},
                                 {"start": 4250, "value": "third line"}]
    assert synced[0]["displayArtist"] == "Tag Artist" and synced[0]["displayTitle"] == "One"
    plain = bob.call("getLyricsBySongId", id=f"tr-{library['two']}")["lyricsList"]["structuredLyrics"]
    assert plain == [{"lang": "und", "synced": False, "displayArtist": "Tag Artist", "displayTitle": "Two",
                      "line": [{"value": "plain words"}, {"value": "second plain line"}]}]
    none = bob.call("getLyricsBySongId", id=f"tr-{library['single']}")["lyricsList"]
    assert none.get("structuredLyrics", []) == []

    # getLyrics by artist and title: the timed lyrics as plain text.
    found = bob.call("getLyrics", artist="tag artist", title="ONE")["lyrics"]
    assert found == {"artist": "Tag Artist", "title": "One", "value": "first line\nsecond line\nthird line"}
    assert bob.call("getLyrics", artist="Someone Else", title="One")["lyrics"]["value"] == ""

    # The XML form carries the same lines.
    root = bob.xml("getLyricsBySongId", id=f"tr-{library['one']}")
    lines = root.findall(f"{NS}lyricsList/{NS}structuredLyrics/{NS}line")
    assert [(e.get("start"), e.text) for e in lines] == [("1000", "first line"), ("2500", "second line"),
                                                         ("4250", "third line")]


def test_the_artist_edits_lyrics_and_a_new_file_keeps_them(node, alice: Listener, bob: Listener,
                                                           library: dict[str, int], tmp_path) -> None:
    track = library["two"]
    r = alice.edit(track, lyrics="edited words\r\n\r\nafter a gap  ")
    assert r.status_code == 200, r.text
    lines = bob.call("getLyricsBySongId", id=f"tr-{track}")["lyricsList"]["structuredLyrics"][0]["line"]
    assert lines == [{"value": "edited words"}, {"value": ""}, {"value": "after a gap"}]
    assert db(node, "SELECT lyrics FROM tracks WHERE id = ?", (track,)) == [("edited words\n\nafter a gap",)]
    # The portal's edit form shows them, escaped, in the track's lyrics field.
    page = alice.artist.http.get("/portal")
    assert page.status_code == 200
    assert (f'<textarea id="lyrics-{track}" name="lyrics" rows="4" maxlength="20000">edited words\n\nafter a gap'
            "</textarea>") in page.text

    # Someone else cannot; too long or NUL is refused with a clear message, and nothing changes.
    assert bob.edit(track, lyrics="mine now").status_code == 403
    r = alice.edit(track, lyrics="x" * 20_001)
    assert r.status_code == 400 and "lyrics" in r.text
    assert db(node, "SELECT lyrics FROM tracks WHERE id = ?", (track,)) == [("edited words\n\nafter a gap",)]

    # New audio for the track (a revision): its own lyrics do not overwrite the artist's.
    fresh = make_audio(tmp_path / "two-v2.mp3", "mp3", seconds=2.5, frequency=300.0,
                       tags={"title": "Two", "lyrics": "the file's new words"})
    r = alice.artist.http.put(f"/tracks/{track}/audio", files={"file": (fresh.name, fresh.read_bytes())},
                              headers={"X-CSRF-Token": alice.artist.csrf}, timeout=60)
    assert r.status_code == 200, r.text
    assert alice.artist.wait(r.json()["upload_id"])[-1]["status"] == "completed"
    assert db(node, "SELECT lyrics FROM tracks WHERE id = ?", (track,)) == [("edited words\n\nafter a gap",)]

    # Emptied, the song has none.
    assert alice.edit(track, lyrics="").status_code == 200
    assert bob.call("getLyricsBySongId", id=f"tr-{track}")["lyricsList"].get("structuredLyrics", []) == []
    assert db(node, "SELECT lyrics FROM tracks WHERE id = ?", (track,)) == [(None,)]


def test_every_answer_here_fits_the_schema(alice: Listener, bob: Listener, library: dict[str, int]) -> None:
    album = bob.call("getSong", id=f"tr-{library['one']}")["song"]["albumId"]
    for name, params in [("getSong", {"id": f"tr-{library['one']}"}), ("getSong", {"id": f"tr-{library['single']}"}),
                         ("getAlbum", {"id": album}), ("getArtist", {"id": f"ar-{alice.artist.did}"}),
                         ("getAlbumList2", {"type": "newest"}), ("search3", {"query": "blue"}),
                         ("getLyrics", {"artist": "Tag Artist", "title": "One"}), ("getLyrics", {"title": "nothing"}),
                         ("getLyricsBySongId", {"id": f"tr-{library['one']}"}),
                         ("getLyricsBySongId", {"id": f"tr-{library['single']}"})]:
        assert bob.checked(name, **params)["status"] == "ok", (name, params)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a-aac", "ogg-opus", "webm-opus", "aiff"])
def test_tags_read_from_every_container(tmp_path, fmt: str) -> None:
    """ID3 (USLT, TXXX), Vorbis comments, MP4 atoms and Matroska tags all give the same normalised tags."""
    path = make_audio(tmp_path / f"t.{fmt}", fmt, seconds=0.5, tags={
        "artist": "A", "album_artist": "AA", "album": "Alb", "track": "3/12", "disc": "2/3", "date": "2019-04-05",
        "genre": "Rock; Pop", "compilation": "1", "lyrics": "[00:01.00]hello\r\n[00:02.5]world  ",
        "MUSICBRAINZ_ALBUMID": MB_ALBUM, "REPLAYGAIN_TRACK_GAIN": "-6.5 dB"})
    tags = probe(path).tags
    assert (tags.artist, tags.album_artist, tags.album) == ("A", "AA", "Alb")
    assert (tags.track_number, tags.disc_number, tags.date, tags.year) == (3, 2, "2019-04-05", 2019)
    assert (tags.genre, tags.genres, tags.compilation) == ("Rock", ("Rock", "Pop"), True)
    assert tags.lyrics == "[00:01.00]hello\n[00:02.5]world" and tags.lyrics_synced
    if fmt != "m4a-aac":  # the ipod muxer writes no freeform atoms
        assert (tags.mb_album_id, tags.rg_track_gain) == (MB_ALBUM, -6.5)
    stored = tags.stored()
    assert "lyrics" not in stored and stored["genres"] == ["Rock", "Pop"] and stored["year"] == 2019


def test_lrc_lines() -> None:
    text = "[ti:x]\n[offset:+250]\n[00:10.00][01:20.5]chorus\n[00:12.345]<00:12.50>word by word\nnot timed"
    assert lrc_lines(text) == [(9750, "chorus"), (12095, "word by word"), (80250, "chorus")]
