"""Subsonic's discovery methods through a real node process and the real PDS: search2 and the deprecated search,
getSongsByGenre, getTopSongs, getSimilarSongs(2), getArtistInfo(2), getAlbumInfo(2).

Four artists upload tagged tones: ann (an album with a description and a cover, a single with artwork), ben (one
unlisted track and one tagged "ai", which everyone hides by default, both with the most plays), cat, and dee (whose
only tracks are unlisted or "ai"). Every list is checked against what discovery may show, every JSON answer is
validated against its endpoint's OpenSubsonic schema, and the two Python client libraries call the same methods."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import libopensonic
import libsonic
import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from conftest import node_fixture
from helpers import db
from subsonic_support import CheckedListener, rest_listener

NS = "{http://subsonic.org/restapi}"

node = node_fixture("subsonic_discovery")


# ---- callers ------------------------------------------------------------------------------------------------------


class Listener(CheckedListener):
    def songs(self, name: str, key: str, **params: Any) -> list[str]:
        """The titles of a song list answer, in order."""
        return [s["title"] for s in self.call(name, **params)[key].get("song", [])]


# ---- the catalog --------------------------------------------------------------------------------------------------

# title: (owner, tags, plays, extra upload fields)
TRACKS: dict[str, tuple[str, list[str], int, dict[str, str]]] = {
    "Amber Road": ("ann", ["rock", "indie"], 0, {}),
    "Amber Lane": ("ann", ["rock"], 0, {}),
    "Ann Drift": ("ann", ["ambient"], 0, {}),
    "Basalt Indie": ("ben", ["rock", "indie"], 5, {}),
    "Basalt Rock": ("ben", ["rock"], 9, {}),
    "Basalt Jazz": ("ben", ["jazz"], 1, {}),
    "Basalt Secret": ("ben", ["rock", "indie"], 100, {"unlisted": "true"}),
    "Basalt Robot": ("ben", ["rock", "indie", "ai"], 100, {}),
    "Cobalt Indie": ("cat", ["indie"], 2, {}),
    "Cobalt Polka": ("cat", ["polka"], 0, {}),
    "Cobalt Tape": ("cat", [], 0, {}),  # its file's tags name an album: a named album, with the track's artwork
    "Dee Machine": ("dee", ["rock", "indie", "ai"], 50, {}),
    "Dee Hush": ("dee", ["indie", "polka"], 50, {"unlisted": "true"}),
}
HIDDEN = {"Basalt Secret", "Basalt Robot", "Dee Machine", "Dee Hush"}  # never in anyone's discovery lists


@dataclass
class World:
    people: dict[str, Listener]
    ids: dict[str, int]  # title -> track id
    album: str  # ann's album's uuid

    def did(self, who: str) -> str:
        return self.people[who].artist.did

    def ar(self, who: str) -> str:
        return f"ar-{self.did(who)}"

    def tr(self, title: str) -> str:
        return f"tr-{self.ids[title]}"


@pytest.fixture(scope="module")
def world(node, pds, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("discovery-audio")
    people = {who: rest_listener(node.url, pds.create_account(f"sd{who}"), Listener)
              for who in ("ann", "ben", "cat", "dee")}
    ann = people["ann"].artist
    r = ann.http.patch("/artists/me", json={"display_name": "Ann Amber", "bio": "Ann plays rock by the sea.",
                                            "avatar_url": "https://cdn.example.com/ann.jpg"},
                       headers={"X-CSRF-Token": ann.csrf})
    assert r.status_code == 200, r.text

    ids: dict[str, int] = {}
    for n, (title, (who, tags, _, extra)) in enumerate(TRACKS.items()):
        file_tags = {"album": "Cobalt Tapes"} if title == "Cobalt Tape" else None
        path = make_audio(tmp / f"t{n}.mp3", "mp3", seconds=1.0, frequency=220.0 + 20 * n, tags=file_tags)
        image = {"image": ("c.jpg", jpeg_bytes(), "image/jpeg")} if title in ("Ann Drift", "Cobalt Tape") else {}
        ids[title] = people[who].upload(path, title=title, tags=json.dumps(tags), **extra, **image)
    for title, (_, _, plays, _) in TRACKS.items():
        db(node, "UPDATE tracks SET play_count = ? WHERE id = ?", (plays, ids[title]))

    csrf = {"X-CSRF-Token": ann.csrf}
    r = ann.http.post("/albums/", json={"title": "Amber Album", "description": "Recorded at night."}, headers=csrf)
    assert r.status_code == 200, r.text
    album = r.json()["id"]
    for title in ("Amber Road", "Amber Lane"):
        r = ann.http.post(f"/albums/{album}/tracks", json={"track_id": ids[title]}, headers=csrf)
        assert r.status_code == 200, r.text
    r = ann.http.post(f"/albums/{album}/cover", files={"image": ("c.png", png_bytes(1200, 1200), "image/png")},
                      headers=csrf)
    assert r.status_code == 200, r.text
    return World(people, ids, album)


def _visible_titles(titles: list[str]) -> None:
    assert not HIDDEN & set(titles), titles


# ---- lists --------------------------------------------------------------------------------------------------------


def test_songs_by_genre(node, world: World) -> None:
    ann, ben = world.people["ann"], world.people["ben"]
    rock = ["Basalt Rock", "Basalt Indie", "Amber Lane", "Amber Road"]  # newest first; not the unlisted or "ai" ones
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", count=500) == rock
    assert ben.songs("getSongsByGenre", "songsByGenre", genre="Rock ") == rock  # as getGenres names it, any case
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", count=2, offset=1) == rock[1:3]
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", count=2, offset=10) == []
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", count=0) == []
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="indie", count=-5) == []
    # Out-of-range numbers are clamped (count to 500, offset to 10^9), not refused.
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", count=10**6) == rock
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", offset=10**15) == []
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="rock", offset=-3, count=1) == rock[:1]
    assert len(ann.songs("getSongsByGenre", "songsByGenre", genre="indie")) == 3  # the default count is 10
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="no-such-genre") == []
    # A hidden tag asked for by name is shown (as its tag page does); the unlisted track never is.
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="ai") == ["Dee Machine", "Basalt Robot"]
    assert ann.songs("getSongsByGenre", "songsByGenre", genre="polka") == ["Cobalt Polka"]
    song = ann.call("getSongsByGenre", genre="jazz")["songsByGenre"]["song"][0]
    assert song["id"] == world.tr("Basalt Jazz") and song["artistId"] == world.ar("ben") and song["genre"] == "jazz"

    assert ann.error("getSongsByGenre") == 10
    assert ann.error("getSongsByGenre", genre="rock", count="many") == 0
    root = ann.xml("getSongsByGenre", genre="rock")
    assert [s.attrib["title"] for s in root.iter(NS + "song")] == rock


def test_top_songs(node, world: World) -> None:
    ann, ben = world.people["ann"], world.people["ben"]
    by_plays = ["Basalt Rock", "Basalt Indie", "Basalt Jazz"]  # 9, 5, 1 plays; the 100-play hidden ones never
    assert ann.songs("getTopSongs", "topSongs", artist=ben.handle) == by_plays
    assert ann.songs("getTopSongs", "topSongs", artist="@" + ben.handle.upper()) == by_plays
    assert ben.songs("getTopSongs", "topSongs", artist=ben.handle, count=2) == by_plays[:2]
    assert ann.songs("getTopSongs", "topSongs", id=world.ar("ben"), artist="someone else") == by_plays
    # As clients name artists: the display name, any case; no plays yet, so newest first.
    assert ben.songs("getTopSongs", "topSongs", artist="ann amber") == ["Ann Drift", "Amber Lane", "Amber Road"]
    name = ben.call("getArtist", id=world.ar("ann"))["artist"]["name"]
    assert ben.songs("getTopSongs", "topSongs", artist=name, count=1) == ["Ann Drift"]
    assert ann.songs("getTopSongs", "topSongs", artist=world.people["dee"].handle) == []  # unlisted or hidden only
    assert ann.songs("getTopSongs", "topSongs", artist="nobody at all") == []
    assert ann.songs("getTopSongs", "topSongs", artist=ben.handle, count=0) == []

    assert ann.error("getTopSongs") == 10
    assert ann.error("getTopSongs", id="ar-nope") == 70


def test_similar_songs(node, world: World) -> None:
    ann, ben = world.people["ann"], world.people["ben"]

    def similar(caller: Listener, raw_id: str, method: str = "getSimilarSongs", **params: Any) -> list[str]:
        key = "similarSongs2" if method == "getSimilarSongs2" else "similarSongs"
        return caller.songs(method, key, id=raw_id, **params)

    # Other artists first, by shared tags (rock+indie before one of them) then plays; the seed's artist last.
    expected = ["Basalt Indie", "Basalt Rock", "Cobalt Indie", "Amber Lane"]
    assert similar(ann, world.tr("Amber Road")) == expected
    assert similar(ben, world.tr("Amber Road")) == expected  # the same for everyone, the artist too
    assert similar(ann, world.tr("Amber Road"), count=2) == expected[:2]
    assert similar(ann, world.tr("Amber Road"), count=0) == []
    assert similar(ann, world.tr("Amber Road"), count=10**6) == expected
    # An album or an artist seeds with all their songs, none of which comes back.
    assert similar(ann, f"al-{world.album}") == expected[:3]
    assert similar(ann, world.ar("ann"), "getSimilarSongs2") == expected[:3]
    assert similar(ann, world.ar("ben"), "getSimilarSongs2") == ["Amber Road", "Cobalt Indie", "Amber Lane"]
    assert similar(ben, world.tr("Cobalt Indie")) == ["Basalt Indie", "Amber Road"]  # one tag each: by plays
    # Nothing shares a tag: an empty list, not an error.
    assert similar(ann, world.tr("Cobalt Polka")) == []
    for seed in ("Amber Road", "Cobalt Indie", "Basalt Jazz", "Ann Drift"):
        _visible_titles(similar(ben, world.tr(seed), count=500))
    # The unlisted track seeds (its id opens it) but brings only listed songs.
    assert similar(ben, world.tr("Basalt Secret")) == ["Amber Road", "Cobalt Indie", "Amber Lane", "Basalt Indie",
                                                        "Basalt Rock"]
    # A song seed asks for its own tags, a hidden one too (as GET /tracks/{id}/similar); an artist seed does not.
    assert similar(ann, world.tr("Basalt Robot"))[:1] == ["Dee Machine"]
    assert "Dee Machine" not in similar(ann, world.ar("ben"), count=500)

    for method in ("getSimilarSongs", "getSimilarSongs2"):
        assert ann.error(method) == 10
        assert ann.error(method, id="tr-999999") == 70
        assert ann.error(method, id="al-00000000-0000-0000-0000-000000000000") == 70
        assert ann.error(method, id="ar-did:plc:nobodyhere") == 70
        assert ann.error(method, id="something") == 70
    root = ann.xml("getSimilarSongs2", id=world.tr("Amber Road"))
    assert [s.attrib["title"] for s in root.iter(NS + "song")] == expected


# ---- artist and album info ----------------------------------------------------------------------------------------


def test_artist_info(node, world: World) -> None:
    ann, ben, cat = world.people["ann"], world.people["ben"], world.people["cat"]
    info = ben.call("getArtistInfo2", id=world.ar("ann"))["artistInfo2"]
    assert info["biography"] == "Ann plays rock by the sea."
    avatar = "https://cdn.example.com/ann.jpg"
    assert (info["smallImageUrl"], info["mediumImageUrl"], info["largeImageUrl"]) == (avatar, avatar, avatar)
    assert "musicBrainzId" not in info and "lastFmUrl" not in info
    # ben shares rock and indie with ann, cat only indie; dee's songs are unlisted or "ai", so dee is like no one.
    assert [a["id"] for a in info["similarArtist"]] == [world.ar("ben"), world.ar("cat")]
    assert info["similarArtist"][0]["albumCount"] == 1 and info["similarArtist"][0]["name"] == ben.handle
    assert [a["id"] for a in ben.call("getArtistInfo2", id=world.ar("ann"), count=1)["artistInfo2"]["similarArtist"]] \
        == [world.ar("ben")]
    assert ben.call("getArtistInfo2", id=world.ar("ann"), count=0)["artistInfo2"]["similarArtist"] == []

    folder = ann.call("getArtistInfo", id=world.ar("ann"), includeNotPresent="true")["artistInfo"]
    assert folder["similarArtist"] == [{"id": world.ar("ben"), "name": ben.handle},
                                       {"id": world.ar("cat"), "name": cat.handle}]
    # An album or song id names its artist.
    assert ann.call("getArtistInfo2", id=f"al-{world.album}")["artistInfo2"] == info
    assert ann.call("getArtistInfo2", id=world.tr("Ann Drift"))["artistInfo2"] == info

    # No profile: no biography, no images; cat's indie and polka: ann and ben each share indie.
    plain = ann.call("getArtistInfo2", id=world.ar("cat"))["artistInfo2"]
    assert not {"biography", "smallImageUrl", "mediumImageUrl", "largeImageUrl"} & set(plain)
    assert {a["id"] for a in plain["similarArtist"]} == {world.ar("ann"), world.ar("ben")}
    assert ann.call("getArtistInfo2", id=world.ar("cat")) == ann.call("getArtistInfo2", id=world.ar("cat"))
    for who in ("ann", "ben", "cat"):
        for caller in (ann, ben):
            similar = caller.call("getArtistInfo2", id=world.ar(who))["artistInfo2"].get("similarArtist", [])
            assert world.ar("dee") not in {a["id"] for a in similar}
    # dee is an artist here (a listed single, hidden by its tag), but none of dee's songs that discovery shows
    # shares a tag with anyone.
    assert ann.call("getArtistInfo2", id=world.ar("dee"))["artistInfo2"]["similarArtist"] == []

    for method in ("getArtistInfo", "getArtistInfo2"):
        assert ann.error(method) == 10
        assert ann.error(method, id="ar-did:plc:nobodyhere") == 70
        assert ann.error(method, id="tr-999999") == 70


def test_album_info(node, world: World) -> None:
    ann, ben = world.people["ann"], world.people["ben"]
    info = ben.call("getAlbumInfo", id=f"al-{world.album}")["albumInfo"]
    assert info["notes"] == "Recorded at night."
    assert "musicBrainzId" not in info
    anonymous = httpx.Client(timeout=30)  # the URLs are public: no credentials, no cookies
    small, medium, large = (anonymous.get(info[k]) for k in ("smallImageUrl", "mediumImageUrl", "largeImageUrl"))
    assert all(info[k].startswith(node.url + "/lists/covers/") for k in ("smallImageUrl", "mediumImageUrl",
                                                                           "largeImageUrl"))
    assert small.status_code == medium.status_code == large.status_code == 200
    assert small.headers["content-type"] == medium.headers["content-type"] == "image/webp"
    assert large.headers["content-type"] == "image/png"
    assert len(small.content) < len(medium.content)
    assert ben.call("getAlbumInfo2", id=f"al-{world.album}")["albumInfo"] == info
    assert ann.call("getAlbumInfo2", id=world.tr("Amber Lane"))["albumInfo"] == info  # a song id: its album

    # Singles: no notes; the newest single's artwork, served where track artwork is.
    singles = ben.call("getAlbumInfo2", id=f"al-singles-{world.did('ann')}")["albumInfo"]
    assert "notes" not in singles and singles["mediumImageUrl"].startswith(node.url + "/images/")
    assert anonymous.get(singles["largeImageUrl"]).headers["content-type"] == "image/jpeg"
    assert ben.call("getAlbumInfo2", id=world.tr("Ann Drift"))["albumInfo"] == singles
    assert ann.call("getAlbumInfo", id=f"al-singles-{world.did('ben')}")["albumInfo"] == {}  # no artwork anywhere
    # An album named by the file's tags: no notes (no album row), the track's artwork.
    named = ann.call("getSong", id=world.tr("Cobalt Tape"))["song"]["albumId"]
    assert named.startswith(f"al-{world.did('cat')}~")
    tape = ann.call("getAlbumInfo2", id=named)["albumInfo"]
    assert "notes" not in tape and tape["smallImageUrl"].startswith(node.url + "/images/")
    assert anonymous.get(tape["smallImageUrl"]).status_code == 200
    assert ann.call("getAlbumInfo2", id=world.tr("Cobalt Tape"))["albumInfo"] == tape

    for method in ("getAlbumInfo", "getAlbumInfo2"):
        assert ann.error(method) == 10
        assert ann.error(method, id="al-00000000-0000-0000-0000-000000000000") == 70
        assert ann.error(method, id="al-singles-did:plc:nobodyhere") == 70
        assert ann.error(method, id="tr-999999") == 70


# ---- search -------------------------------------------------------------------------------------------------------


def test_search2(node, world: World) -> None:
    ann = world.people["ann"]
    found = ann.call("search2", query="basalt")["searchResult2"]
    assert {s["title"] for s in found["song"]} == {"Basalt Indie", "Basalt Rock", "Basalt Jazz"}
    amber = ann.call("search2", query="amber")["searchResult2"]
    album = next(a for a in amber["album"] if a["id"] == f"al-{world.album}")
    assert album["isDir"] is True and album["title"] == "Amber Album" and album["parent"] == world.ar("ann")
    assert [a for a in amber["artist"] if a["id"] == world.ar("ann")] == [{"id": world.ar("ann"), "name": "Ann Amber"}]
    # Songs come from the search index (a typo still finds them); paging as search3's.
    assert {s["title"] for s in ann.call("search2", query="basalr")["searchResult2"]["song"]} >= {"Basalt Rock"}
    page = ann.call("search2", query="basalt", songCount=1, songOffset=1, artistCount=0, albumCount=0)
    assert len(page["searchResult2"]["song"]) == 1 and not page["searchResult2"].get("artist")
    for q in ("secret", "robot", "dee"):
        _visible_titles([s["title"] for s in ann.call("search2", query=q)["searchResult2"].get("song", [])])
    everything = ann.call("search2", query="", songCount=500)["searchResult2"]["song"]
    assert {s["title"] for s in everything} == set(TRACKS) - HIDDEN


def test_search_deprecated(node, world: World) -> None:
    ann, ben = world.people["ann"], world.people["ben"]

    def search(**params: Any) -> tuple[int, int, list[str]]:
        result = ann.call("search", **params)["searchResult"]
        return result["offset"], result["totalHits"], [m["title"] for m in result.get("match", [])]

    assert search(title="basalt") == (0, 3, ["Basalt Jazz", "Basalt Rock", "Basalt Indie"])
    assert search(title="basalt", count=2, offset=1) == (1, 3, ["Basalt Rock", "Basalt Indie"])
    assert search(artist=ben.handle) == (0, 3, ["Basalt Jazz", "Basalt Rock", "Basalt Indie"])
    assert search(artist="amber", title="road") == (0, 1, ["Amber Road"])
    assert search(album="amber album") == (0, 2, ["Amber Lane", "Amber Road"])
    assert search(any="cobalt") == (0, 3, ["Cobalt Tape", "Cobalt Polka", "Cobalt Indie"])
    assert search(album="cobalt tapes") == (0, 1, ["Cobalt Tape"])
    assert search(any="ANN AMBER", count=1)[1] == 3
    assert search(title="100%") == (0, 0, [])  # LIKE's wildcards are plain characters
    assert search(title="basalt", count=-1, offset=-1) == (0, 3, [])
    assert search(title="basalt", offset=10**15) == (10**9, 3, [])
    _, total, titles = search(count=500)
    assert total == len(TRACKS) - len(HIDDEN) and set(titles) == set(TRACKS) - HIDDEN
    assert search(title="secret") == (0, 0, []) and search(title="dee") == (0, 0, [])
    assert search(newerThan=int((time.time() + 60) * 1000)) == (0, 0, [])
    assert search(newerThan=0, title="cobalt")[1] == 3
    assert ann.error("search", newerThan="yesterday") == 0
    root = ann.xml("search", title="basalt")
    result = root.find(NS + "searchResult")
    assert result is not None and result.attrib["totalHits"] == "3"
    assert [m.attrib["title"] for m in result.iter(NS + "match")] == ["Basalt Jazz", "Basalt Rock", "Basalt Indie"]


# ---- the client libraries -----------------------------------------------------------------------------------------


def test_client_libraries(node, world: World) -> None:
    ann = world.people["ann"]
    host, port = node.url.rsplit(":", 1)
    # py-sonic, the older library, with the token as a password (sent enc:-hexed).
    sonic = libsonic.Connection(host, ann.handle, ann.token, port=int(port), legacyAuth=True)
    assert [s["title"] for s in sonic.getSongsByGenre("rock", count=2)["songsByGenre"]["song"]] == \
        ["Basalt Rock", "Basalt Indie"]
    assert sonic.getTopSongs(world.people["ben"].handle, count=1)["topSongs"]["song"][0]["title"] == "Basalt Rock"
    assert sonic.getSimilarSongs2(world.ar("ann"))["similarSongs2"]["song"][0]["title"] == "Basalt Indie"
    assert sonic.getArtistInfo(world.ar("ann"))["artistInfo"]["biography"] == "Ann plays rock by the sea."
    assert sonic.getAlbumInfo2(f"al-{world.album}")["albumInfo"]["notes"] == "Recorded at night."
    assert sonic.search(title="cobalt")["searchResult"]["totalHits"] == 3
    assert {s["title"] for s in sonic.search2("cobalt polka")["searchResult2"]["song"]} >= {"Cobalt Polka"}

    # py-opensonic, with the token as an API key.
    opensonic = libopensonic.Connection(host, api_key=ann.token, port=int(port))
    try:
        assert [s.title for s in opensonic.get_songs_by_genre("indie", count=500)] == \
            ["Cobalt Indie", "Basalt Indie", "Amber Road"]
        assert [s.title for s in opensonic.get_similar_songs(world.tr("Amber Road"), count=3)] == \
            ["Basalt Indie", "Basalt Rock", "Cobalt Indie"]
        assert opensonic.get_similar_songs2(world.tr("Cobalt Polka")) == []
        assert [s.title for s in opensonic.get_top_songs(world.people["ben"].handle)][:1] == ["Basalt Rock"]
        info = opensonic.get_artist_info2(world.ar("ann"))
        assert info.biography == "Ann plays rock by the sea." and info.similar_artist[0].id == world.ar("ben")
        assert opensonic.get_artist_info(world.ar("cat")).biography is None
        album = opensonic.get_album_info(f"al-{world.album}")
        assert album.notes == "Recorded at night." and album.large_image_url.startswith(node.url)
        found = opensonic.search2("amber")
        assert any(a.id == f"al-{world.album}" for a in found.album)
    finally:
        opensonic.cleanup()
