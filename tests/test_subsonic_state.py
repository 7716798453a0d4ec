"""Subsonic methods that change a listener's state, through a real node, the real PDS and py-sonic (libsonic) as an
app would call them: playlists (the web player's own, with their fm.plyr.list records on the owner's PDS), the
play queue shared with the web player both ways, bookmarks, stars of albums and artists, and now playing from
scrobble(submission=false) and from the web player, limited to songs the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import libsonic
import pytest
import subsonic_support
from conftest import node_fixture
from helpers import Person, db_rows, publish, records, upload, wait_for
from libsonic import errors
from subsonic_support import rest_listener

node = node_fixture("subsonic_state")

LIST = "fm.plyr.list"
NO_SUCH_PLAYLIST = "pl-00000000-0000-4000-8000-000000000000"
NO_SUCH_ALBUM = "al-00000000-0000-4000-8000-000000000000"


class Sonic(libsonic.Connection):
    """py-sonic signing in with a developer token as OpenSubsonic's apiKey (it posts forms, as apps do)."""

    def __init__(self, url: str, api_key: str, app: str) -> None:
        parts = urlsplit(url)
        super().__init__(f"{parts.scheme}://{parts.hostname}", "unused", "unused", port=parts.port or 80,
                         appName=app)
        self._api_key = api_key

    def _getBaseQdict(self) -> dict[str, Any]:  # py-sonic adds u+t+s here; send the apiKey instead
        return {"f": "json", "v": self._apiVersion, "c": self._appName, "apiKey": self._api_key}


class Listener(subsonic_support.Listener):
    @property
    def person(self) -> Person:  # the web player's session (cookie + CSRF)
        return Person(self.artist, self.account)

    @property
    def http(self) -> httpx.Client:
        return self.artist.http

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.artist.csrf}

    def params(self, **extra: Any) -> dict[str, Any]:
        return super().params(**{"c": "test", **extra})  # the app's name, unless a call names its own

    def sonic(self, app: str = "py-sonic") -> Sonic:
        return Sonic(self.url, self.token, app)


@pytest.fixture(scope="module")
def alice(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("ststalice"), Listener)


@pytest.fixture(scope="module")
def bob(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("ststbob"), Listener)


@dataclass
class Library:
    ids: list[int]  # three of alice's tracks, each published
    uris: dict[int, str]
    album: str  # "al-<uuid>" of an album holding the first two


@pytest.fixture(scope="module")
def library(node, pds, alice: Listener, tmp_path_factory: pytest.TempPathFactory) -> Library:
    tmp = tmp_path_factory.mktemp("state-audio")
    ids = [upload(alice.person, tmp, f"state{i}", seconds=1.0, frequency=220.0 + 110 * i)["id"] for i in range(3)]
    uris = {i: publish(node, pds, i)[0] for i in ids}
    r = alice.http.post("/albums/", json={"title": "Harbour Lights"}, headers=alice.csrf)
    assert r.status_code == 200, r.text
    album = r.json()["id"]
    for track_id in ids[:2]:
        r = alice.http.post(f"/albums/{album}/tracks", json={"track_id": track_id}, headers=alice.csrf)
        assert r.status_code == 200, r.text
    return Library(ids, uris, f"al-{album}")


def _tr(track_id: int) -> str:
    return f"tr-{track_id}"


def _list_record(pds: Any, did: str, name: str) -> dict[str, Any] | None:
    return next((r for r in records(pds, did, LIST) if r["value"].get("name") == name), None)


def _record_items(pds: Any, did: str, name: str, uris: list[str]) -> dict[str, Any]:
    """The owner's list record named `name` once it holds exactly `uris`, in order."""
    return wait_for(lambda: (rec := _list_record(pds, did, name)) is not None
                    and [i["subject"]["uri"] for i in rec["value"]["items"]] == uris and rec)


# ---- playlists ----------------------------------------------------------------------------------------------


def test_playlist_changes_reach_the_web_api_and_the_pds(node, pds, alice: Listener, bob: Listener,
                                                        library: Library) -> None:
    t0, t1, t2 = library.ids
    did = alice.artist.did
    phone = alice.sonic("DSub")
    created = phone.createPlaylist(name="Road trip", songIds=[_tr(t0), _tr(t2)])["playlist"]
    assert created["name"] == "Road trip" and created["public"] is True and created["songCount"] == 2
    assert [s["id"] for s in created["entry"]] == [_tr(t0), _tr(t2)]
    pl = created["id"]
    uuid = pl.removeprefix("pl-")

    # The web player sees the same playlist, and its record reaches the owner's PDS with both tracks in order.
    web = alice.http.get(f"/lists/playlists/{uuid}").json()
    assert [t["id"] for t in web["tracks"]] == [t0, t2] and web["is_private"] is False
    record = _record_items(pds, did, "Road trip", [library.uris[t0], library.uris[t2]])
    assert record["uri"] == web["atproto_record_uri"] and record["value"]["listType"] == "playlist"

    # Rename, comment, remove the first song and append another: one change, mirrored.
    phone.updatePlaylist(pl, name="Road trip II", comment="for the car", songIdsToAdd=[_tr(t1)],
                         songIndexesToRemove=[0])
    got = alice.call("getPlaylist", id=pl)["playlist"]
    assert got["name"] == "Road trip II" and got["comment"] == "for the car"
    assert [s["id"] for s in got["entry"]] == [_tr(t2), _tr(t1)]
    assert next(p for p in alice.call("getPlaylists")["playlists"]["playlist"] if p["id"] == pl)["comment"] == \
        "for the car"
    _record_items(pds, did, "Road trip II", [library.uris[t2], library.uris[t1]])
    assert [t["id"] for t in alice.http.get(f"/lists/playlists/{uuid}").json()["tracks"]] == [t2, t1]

    # createPlaylist with playlistId replaces the songs.
    replaced = phone.createPlaylist(playlistId=pl, songIds=[_tr(t1)])["playlist"]
    assert [s["id"] for s in replaced["entry"]] == [_tr(t1)]
    _record_items(pds, did, "Road trip II", [library.uris[t1]])

    # Someone else may read a public playlist but not change it (50); nothing changes.
    other = bob.sonic()
    with pytest.raises(errors.AuthError):
        other.updatePlaylist(pl, name="mine now")
    with pytest.raises(errors.AuthError):
        other.createPlaylist(playlistId=pl, songIds=[_tr(t0)])
    with pytest.raises(errors.AuthError):
        other.deletePlaylist(pl)
    assert alice.call("getPlaylist", id=pl)["playlist"]["name"] == "Road trip II"

    # Unknown playlists, songs and indexes are 70, and a refused call leaves nothing behind.
    before = db_rows(node, "SELECT count(*) FROM playlists")[0][0]
    assert alice.error("createPlaylist", name="Ghost", songId="tr-999999") == 70
    assert db_rows(node, "SELECT count(*) FROM playlists")[0][0] == before
    assert alice.error("updatePlaylist", playlistId=pl, songIndexToRemove="5") == 70
    assert alice.error("updatePlaylist", playlistId=NO_SUCH_PLAYLIST, name="x") == 70
    assert alice.error("deletePlaylist", id=NO_SUCH_PLAYLIST) == 70
    assert alice.error("createPlaylist") == 10

    # Made private: its record leaves the PDS and others no longer find it.
    alice.call("updatePlaylist", playlistId=pl, public="false")
    wait_for(lambda: _list_record(pds, did, "Road trip II") is None)
    assert bob.error("getPlaylist", id=pl) == 70
    assert alice.http.get(f"/lists/playlists/{uuid}").json()["is_private"] is True

    # Deleted: gone from the web API and the PDS.
    alice.call("updatePlaylist", playlistId=pl, public="true")
    _record_items(pds, did, "Road trip II", [library.uris[t1]])
    phone.deletePlaylist(pl)
    assert alice.http.get(f"/lists/playlists/{uuid}").status_code == 404
    wait_for(lambda: _list_record(pds, did, "Road trip II") is None)


def test_a_private_playlist_never_reaches_the_pds(node, pds, alice: Listener, bob: Listener,
                                                  library: Library) -> None:
    t0, t1, _ = library.ids
    did = alice.artist.did
    secret = alice.call("createPlaylist", name="Hidden mix", public="false", songId=[_tr(t0), _tr(t1)])["playlist"]
    assert secret["public"] is False and [s["id"] for s in secret["entry"]] == [_tr(t0), _tr(t1)]
    alice.call("updatePlaylist", playlistId=secret["id"], songIdToAdd=_tr(library.ids[2]))
    # A public playlist made after it reaches the PDS; by then the private one would have too.
    public = alice.call("createPlaylist", name="Open mix", songId=_tr(t0))["playlist"]
    _record_items(pds, did, "Open mix", [library.uris[t0]])
    assert _list_record(pds, did, "Hidden mix") is None
    assert db_rows(node, "SELECT rkey, record_uri FROM playlists WHERE id = ?",
                   (secret["id"].removeprefix("pl-"),)) == [(None, None)]
    assert bob.error("getPlaylist", id=secret["id"]) == 70
    assert bob.error("updatePlaylist", playlistId=secret["id"], name="x") == 70  # not 50: it does not exist for bob
    alice.call("deletePlaylist", id=secret["id"])
    alice.call("deletePlaylist", id=public["id"])


# ---- play queue ---------------------------------------------------------------------------------------------


def test_play_queue_is_shared_with_the_web_player(node, alice: Listener, library: Library) -> None:
    t0, t1, t2 = library.ids
    phone = alice.sonic("Symfonium")
    phone.savePlayQueue([_tr(t2), _tr(t0), _tr(t1)], current=_tr(t0), position=12345)

    # The web player continues where the phone was.
    r = alice.http.get("/queue/")
    assert r.status_code == 200, r.text
    state = r.json()["state"]
    assert state["track_ids"] == [t2, t0, t1] and state["current_index"] == 1 and state["progress_ms"] == 12345
    assert state["current_track_id"] == t0
    assert {t["id"] for t in r.json()["tracks"]} == {t0, t1, t2}
    saved = phone.getPlayQueue()["playQueue"]
    assert [s["id"] for s in saved["entry"]] == [_tr(t2), _tr(t0), _tr(t1)]
    assert saved["current"] == _tr(t0) and saved["position"] == 12345
    assert saved["changedBy"] == "Symfonium" and saved["username"] == alice.handle and saved["changed"]

    # And the phone continues where the web player was: it saves file ids, as plyr.fm's player does.
    file_ids = {t["id"]: t["file_id"] for t in r.json()["tracks"]}
    r = alice.http.put("/queue/", json={"state": {"track_ids": [file_ids[t1], file_ids[t0]], "current_index": 1,
                                                  "current_track_id": file_ids[t0], "progress_ms": 5000,
                                                  "repeat_mode": "all"}},
                       headers={**alice.csrf, "If-Match": r.headers["ETag"]})
    assert r.status_code == 200, r.text
    saved = phone.getPlayQueue()["playQueue"]
    assert [s["id"] for s in saved["entry"]] == [_tr(t1), _tr(t0)]
    assert saved["current"] == _tr(t0) and saved["position"] == 5000 and saved["changedBy"] == "plyrd"

    # An unknown song is refused (70) and the queue stays; the web player's repeat setting survives a save.
    revision = alice.http.get("/queue/").json()["revision"]
    assert alice.error("savePlayQueue", id=[_tr(t0), "tr-999999"], current=_tr(t0)) == 70
    assert alice.error("savePlayQueue", id=_tr(t0), current=_tr(t1)) == 0  # current must be in the queue
    assert alice.http.get("/queue/").json()["revision"] == revision
    phone.savePlayQueue([_tr(t1)], current=_tr(t1), position=0)
    state = alice.http.get("/queue/").json()["state"]
    assert state["track_ids"] == [t1] and state["repeat_mode"] == "all"

    # No ids clears it.
    alice.call("savePlayQueue")
    assert alice.http.get("/queue/").json()["state"]["track_ids"] == []
    cleared = alice.call("getPlayQueue")["playQueue"]
    assert cleared.get("entry", []) == [] and "current" not in cleared


# ---- bookmarks ----------------------------------------------------------------------------------------------


def test_bookmarks(node, alice: Listener, bob: Listener, library: Library) -> None:
    t0, t1, _ = library.ids
    phone = bob.sonic()
    assert bob.call("getBookmarks")["bookmarks"].get("bookmark", []) == []
    phone.createBookmark(_tr(t1), 61000, comment="chapter 2")
    phone.createBookmark(_tr(t0), 1000)
    marks = bob.call("getBookmarks")["bookmarks"]["bookmark"]
    assert [(m["entry"]["id"], m["position"], m.get("comment")) for m in marks] == [
        (_tr(t0), 1000, None), (_tr(t1), 61000, "chapter 2")]
    assert marks[0]["username"] == bob.handle and marks[0]["created"] and marks[0]["changed"]

    phone.createBookmark(_tr(t1), 62000)  # overwrites
    marks = bob.call("getBookmarks")["bookmarks"]["bookmark"]
    assert [(m["entry"]["id"], m["position"], m.get("comment")) for m in marks] == [
        (_tr(t1), 62000, None), (_tr(t0), 1000, None)]
    assert alice.call("getBookmarks")["bookmarks"].get("bookmark", []) == []  # bookmarks are personal

    assert bob.error("createBookmark", id="tr-999999", position="5") == 70
    assert bob.error("createBookmark", id=_tr(t0)) == 10
    assert bob.error("createBookmark", id=_tr(t0), position="-3") == 0
    phone.deleteBookmark(_tr(t1))
    assert [m["entry"]["id"] for m in bob.call("getBookmarks")["bookmarks"]["bookmark"]] == [_tr(t0)]
    with pytest.raises(errors.DataNotFoundError):
        phone.deleteBookmark(_tr(t1))


# ---- stars --------------------------------------------------------------------------------------------------


def test_star_albums_and_artists(node, alice: Listener, bob: Listener, library: Library) -> None:
    artist = f"ar-{alice.artist.did}"
    phone = bob.sonic()
    starred = bob.call("getStarred2")["starred2"]
    assert starred.get("album", []) == [] and starred.get("artist", []) == []

    phone.star(albumIds=[library.album], artistIds=[artist])
    phone.star(sids=[_tr(library.ids[2])], albumIds=[library.album])  # starring again is a no-op
    for method, key in (("getStarred2", "starred2"), ("getStarred", "starred")):
        got = bob.call(method)[key]
        assert [(a["id"], a["name"]) for a in got["album"]] == [(library.album, "Harbour Lights")]
        assert got["album"][0]["starred"] and got["album"][0]["songCount"] == 2
        assert [a["id"] for a in got["artist"]] == [artist] and got["artist"][0]["starred"]
        assert [s["id"] for s in got["song"]] == [_tr(library.ids[2])] and got["song"][0]["starred"]
    assert db_rows(node, "SELECT count(*) FROM subsonic_starred_albums WHERE did = ?", (bob.artist.did,)) == [(1,)]
    # Browsing marks them too.
    assert bob.call("getAlbum", id=library.album)["album"]["starred"]
    got = bob.call("getArtist", id=artist)["artist"]
    assert got["starred"] and next(a for a in got["album"] if a["id"] == library.album)["starred"]
    listed = bob.call("getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]
    assert [a["id"] for a in listed if "starred" in a] == [library.album]
    index = [a for group in bob.call("getArtists")["artists"]["index"] for a in group["artist"]]
    assert [a["id"] for a in index if "starred" in a] == [artist]
    assert "starred" not in alice.call("getAlbum", id=library.album)["album"]
    assert alice.call("getStarred2")["starred2"].get("album", []) == []  # stars are personal

    # Folder-style ids in `id` star albums and artists too; an unknown one is 70 and stars nothing of the call.
    assert bob.error("star", albumId=NO_SUCH_ALBUM) == 70
    assert bob.error("star", artistId="ar-did:plc:nobodyhere") == 70
    assert bob.error("star", albumId=f"al-singles-{alice.artist.did}", artistId="ar-nonsense") == 70
    assert len(bob.call("getStarred2")["starred2"]["album"]) == 1

    phone.unstar(albumIds=[library.album], artistIds=[artist], sids=[_tr(library.ids[2])])
    starred = bob.call("getStarred2")["starred2"]
    assert starred.get("album", []) == [] and starred.get("artist", []) == [] and starred.get("song", []) == []
    assert "starred" not in bob.call("getAlbum", id=library.album)["album"]
    assert "starred" not in bob.call("getArtist", id=artist)["artist"]
    bob.call("star", id=[library.album, artist])
    got = bob.call("getStarred2")["starred2"]
    assert [a["id"] for a in got["album"]] == [library.album] and [a["id"] for a in got["artist"]] == [artist]
    bob.call("unstar", id=[library.album, artist])
    assert bob.call("getStarred2")["starred2"].get("album", []) == []


# ---- now playing --------------------------------------------------------------------------------------------


def _now(listener: Listener) -> list[dict[str, Any]]:
    return listener.call("getNowPlaying")["nowPlaying"].get("entry", [])


def test_now_playing_from_apps_and_the_web_player(node, pds, alice: Listener, bob: Listener, library: Library,
                                                  tmp_path) -> None:
    t0, t1, _ = library.ids
    plays = alice.http.get(f"/tracks/{t0}").json()["play_count"]
    bob.sonic("DSub").scrobble(_tr(t0), submission=False)
    entry = next(e for e in _now(alice) if e["username"] == bob.handle)
    assert entry["id"] == _tr(t0) and entry["playerName"] == "DSub" and entry["minutesAgo"] == 0
    assert isinstance(entry["playerId"], int) and entry["title"] == "state0"
    assert alice.http.get(f"/tracks/{t0}").json()["play_count"] == plays  # now playing is no play
    assert bob.error("scrobble", id="tr-999999", submission="false") == 70
    # The node's public now-playing read (what teal.fm's Piper polls) shows the app's report too.
    r = httpx.get(f"{node.url}/now-playing/{bob.artist.did}", timeout=30)
    assert r.status_code == 200 and r.json()["track_id"] == t0

    # The web player's report is the same store.
    r = alice.http.post("/now-playing/", json={"track_id": t1, "progress_ms": 1000}, headers=alice.csrf)
    assert r.status_code == 200, r.text
    entry = next(e for e in _now(bob) if e["username"] == alice.handle)
    assert entry["id"] == _tr(t1) and entry["playerName"] == "plyrd"
    assert {e["username"] for e in _now(bob)} == {alice.handle, bob.handle}

    # Only songs the caller may see are listed: a track deleted since is not.
    extra = upload(alice.person, tmp_path, "fleeting", seconds=1.0, frequency=660.0)
    bob.call("scrobble", id=_tr(extra["id"]), submission="false", c="Tempo")
    assert next(e for e in _now(alice) if e["username"] == bob.handle)["id"] == _tr(extra["id"])
    r = alice.http.delete(f"/tracks/{extra['id']}", headers=alice.csrf)
    assert r.status_code == 204, r.text
    assert all(e["username"] != bob.handle for e in _now(alice))
    assert [e["username"] for e in _now(bob)] == [alice.handle]
    # A paused web player is not playing.
    r = alice.http.post("/now-playing/", json={"track_id": t1, "progress_ms": 2000, "is_playing": False},
                        headers=alice.csrf)
    assert r.status_code == 200, r.text
    assert _now(bob) == []
    r = alice.http.post("/now-playing/", json={"track_id": t1, "progress_ms": 2500}, headers=alice.csrf)
    assert r.status_code == 200 and [e["id"] for e in _now(bob)] == [_tr(t1)]
    assert alice.http.delete("/now-playing/", headers=alice.csrf).status_code == 200
    assert _now(bob) == []
