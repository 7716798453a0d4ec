"""Who sees which track, asked of every API that lists or shows tracks, through a real node and the real PDS.

One artist ("owner") has a track of each kind that exists: ready and listed (public), carrying a hidden tag ("ai",
hidden by default), unlisted, unlisted inside an album, still processing and failed (both inside that album: the
states a track is in before it can play). Another artist ("other") has one listed track, likes every track, and
keeps a public playlist of all of them. The node's music folder holds one file, scanned into a library track
("library"): the node's own, seen by signed-in people (auth.library_listeners is unset here) and never by anonymous
visitors, embeds or link previews. A track in a third repo that the other artist liked and put in their playlist
("remote": another node's, known by reference) opens for everyone and is found by search, but is not in the node's
own feeds, lists or totals. A track of the owner that the node's admins took down ("taken_down") is seen only by
its owner (by id, on their own page and lists, never in discovery) and by admins: for everyone else it does not
exist. Each API is asked as nobody signed in, as the other artist and as the owner,
and must show exactly the tracks the visibility rule gives: discovery (feeds, top, tags, search, similar, Subsonic's
lists) only listed, playable tracks without a hidden tag (a tag's page keeps the hidden tag); an artist's page their
playable tracks, unlisted ones too; a track, album, playlist, liked list or queue asked for by id every track it
names; Subsonic only what can stream. A new kind of track is a new row here (tests/test_library_visibility.py
asks more of library tracks).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_env, start_node
from helpers import Artist, sign_in
from library_support import scan_library

KINDS = ("public", "hidden", "unlisted", "album_unlisted", "processing", "failed", "others", "library", "remote",
         "taken_down")
EVERY = set(KINDS)
PLAYABLE = EVERY - {"processing", "failed"}
DISCOVERY = {"public", "others", "library"}  # listed, playable, no hidden tag
TAG_PAGE = DISCOVERY | {"hidden"}  # a tag's page shows what carries it, whatever the viewer hides
OWNER_PAGE = {"public", "hidden", "unlisted", "album_unlisted", "taken_down"}  # playable tracks, unlisted too
ALBUM = {"album_unlisted", "processing", "failed"}
OWNER = EVERY - {"others", "library", "remote"}
SEARCHED = DISCOVERY | {"remote"}  # search finds another node's track once the node knows it
WORD = "zorblax"  # in every title, and in nothing else on this node


def seen(who: str, kinds: set[str]) -> set[str]:
    """What of `kinds` this viewer may see at all: a library track only when signed in, a taken-down track only
    as its owner."""
    hidden = {"library", "taken_down"} if who == "anonymous" else set() if who == "owner" else {"taken_down"}
    return kinds - hidden


@pytest.fixture(scope="module")
def node(pds, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The node, with a music folder holding one tagged file (scanned in the `world` fixture)."""
    music = tmp_path_factory.mktemp("visibility-music")
    make_audio(music / "library.flac", "flac", seconds=1.5, frequency=940.0,
               tags={"title": f"{WORD.title()} library", "artist": "Folder Artist", "genre": "vistag"})
    admin = pds.create_account("visadmin")
    served = start_node([], cwd=tmp_path_factory.mktemp("visibility"),
                        env=node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music), PLYRD_LIBRARY_WATCH="false",
                                     PLYRD_AUTH_ADMINS=admin.handle))
    served.admin = admin  # type: ignore[attr-defined]
    yield served
    served.stop()


@dataclass
class Person:
    artist: Artist
    token: str  # a developer token, for Subsonic

    def rest(self, method: str, **params: Any) -> dict[str, Any]:
        r = self.artist.http.get(f"/rest/{method}", params={"apiKey": self.token, "f": "json", **params})
        assert r.status_code == 200, r.text
        return r.json()["subsonic-response"]


@dataclass
class World:
    ids: dict[str, int]
    owner: Person
    other: Person
    handle: str
    album_id: str
    playlist_id: str

    def kinds(self, ids: Any) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id.get(int(i), f"unknown {i}") for i in ids}


def person(node: ServedNode, account: Any) -> Person:
    artist = sign_in(node.url, account)
    r = httpx.post(node.url + "/auth/app-password", json={"handle": account.handle, "app_password": account.password,
                                                          "token_name": "subsonic"}, timeout=30)
    assert r.status_code == 201, r.text
    return Person(artist, r.json()["token"])


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def until_ok(call: Any) -> Any:
    """A write that needs the track's record (a like, a playlist item): retried while that record is on its way."""
    deadline = time.monotonic() + 30
    while (r := call()).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    return r.json()


def set_status(node: ServedNode, track_id: int, status: str) -> None:
    """The states before a track can play, made directly: 'processing' lasts only while a rendition is made, and
    'failed' is allowed by the schema but no code path leaves a track in it today."""
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        conn.execute("UPDATE tracks SET status = ? WHERE id = ?", (status, track_id))
        conn.commit()
    finally:
        conn.close()


def library_track(node: ServedNode) -> int:
    """The node's scanner over its music folder; the id of the library track it made."""
    scan_library(node, tracks=1)
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        return conn.execute("SELECT id FROM tracks WHERE source = 'library'").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def world(node, pds, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("visibility-audio")
    owner, other = person(node, pds.create_account("visowner")), person(node, pds.create_account("visother"))
    ids: dict[str, int] = {"library": library_track(node)}
    far = pds.create_account("visfar")  # an artist of another node: their track is known here by reference
    ids["remote"] = remote_track(node, pds, far, other)
    for n, kind in enumerate(KINDS):
        if kind in ("library", "remote"):
            continue
        who = other if kind == "others" else owner
        src = make_audio(tmp / f"{kind}.mp3", "mp3", seconds=1.5, frequency=300.0 + 40 * n)
        fields = {"title": f"{WORD.title()} {kind}", "tags": json.dumps(["vistag", "ai"] if kind == "hidden"
                                                                         else ["vistag"])}
        if kind in ("unlisted", "album_unlisted"):
            fields["unlisted"] = "true"
        r = who.artist.upload(src, **fields)
        assert r.status_code == 200, r.text
        events = who.artist.wait(r.json()["upload_id"])
        assert events[-1]["status"] == "completed", events
        ids[kind] = events[-1]["track_id"]

    o, csrf = owner.artist, {"X-CSRF-Token": owner.artist.csrf}
    album = ok(o.http.post("/albums/", json={"title": f"{WORD} album"}, headers=csrf))
    for kind in ("album_unlisted", "processing", "failed"):
        ok(o.http.post(f"/albums/{album['id']}/tracks", json={"track_id": ids[kind]}, headers=csrf))
    f, csrf = other.artist, {"X-CSRF-Token": other.artist.csrf}
    playlist = ok(f.http.post("/lists/playlists", json={"name": "everything"}, headers=csrf))
    for kind in KINDS:
        until_ok(lambda k=kind: f.http.post(f"/tracks/{ids[k]}/like", headers=csrf))
        until_ok(lambda k=kind: f.http.post(f"/lists/playlists/{playlist['id']}/tracks",
                                            json={"track_id": ids[k]}, headers=csrf))
    set_status(node, ids["processing"], "processing")
    set_status(node, ids["failed"], "failed")
    admin = sign_in(node.url, node.admin)
    ok(admin.http.post(f"/admin/api/tracks/{ids['taken_down']}/takedown", json={"reason": "not theirs"},
                       headers={"X-CSRF-Token": admin.csrf}))
    handle = ok(o.http.get(f"/tracks/{ids['public']}"))["artist_handle"]
    return World(ids, owner, other, handle, album["id"], playlist["id"])


def remote_track(node: ServedNode, pds: Any, far: Any, other: Person) -> int:
    """A track record in another repo (with only an audioUrl, as plyr.fm's own storage), known to the node once the
    other artist asks for it by URI; its id."""
    session = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                         json={"identifier": far.did, "password": far.password}).json()
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.createRecord", headers={
        "Authorization": f"Bearer {session['accessJwt']}"}, json={"repo": far.did, "collection": "fm.plyr.track",
        "record": {"$type": "fm.plyr.track", "title": f"{WORD.title()} remote", "artist": "far away",
                   "fileType": "mp3", "createdAt": "2026-12-01T10:00:00.000Z",
                   "audioUrl": "https://cdn.example.com/remote.mp3"}})
    assert r.status_code == 200, r.text
    return ok(other.artist.http.get("/tracks/by-uri", params={"uri": r.json()["uri"]}))["id"]


AUDIENCES = ("anonymous", "other", "owner")


def client(world: World, node: ServedNode, who: str) -> httpx.Client:
    if who == "anonymous":
        return httpx.Client(base_url=node.url, timeout=30)
    return (world.owner if who == "owner" else world.other).artist.http


def track_rows(html: str) -> list[str]:
    """The track ids a page lists (track rows and list-embed rows)."""
    return re.findall(r'data-track-id="(\d+)"', html)


@pytest.mark.parametrize("who", AUDIENCES)
def test_json_feeds_and_lists(node, world: World, who: str) -> None:
    http = client(world, node, who)
    owner_did = world.owner.artist.did

    def shown(path: str, key: str | None = "tracks", **params: Any) -> set[str]:
        body = ok(http.get(path, params=params))
        return world.kinds(t["id"] for t in (body[key] if key else body))

    discovery = seen(who, DISCOVERY)
    assert shown("/tracks/", limit=100) == discovery, "the latest feed"
    assert shown("/tracks/", limit=100, filter_hidden_tags="false") == discovery | {"hidden"}, "feed, nothing hidden"
    assert shown("/tracks/top", None, limit=50) == discovery, "top tracks"  # plyr.fm's bare array
    assert shown("/tracks/tags/vistag", limit=100) == seen(who, TAG_PAGE), "a tag's tracks"
    assert shown("/tracks/", artist_did=owner_did, limit=100) == seen(who, OWNER_PAGE), "an artist's tracks"
    tags = {t["name"]: t["track_count"] for t in ok(http.get("/tracks/tags", params={"q": "vis"}))}
    assert tags == {"vistag": len(seen(who, TAG_PAGE))}, "tag counts count what discovery lists"
    assert ok(http.get(f"/artists/{owner_did}"))["track_count"] == len({"public", "hidden"}), "the public count"
    total = ok(http.get("/stats"))["total_tracks"]
    assert total == len(PLAYABLE - {"library", "remote", "taken_down"}), "the node's own totals, for anyone"

    album = ok(http.get(f"/albums/{world.handle}/{WORD}-album"))
    assert world.kinds(t["id"] for t in album["tracks"]) == ALBUM, "an album names all its tracks"
    playlist = ok(http.get(f"/lists/playlists/{world.playlist_id}"))
    assert world.kinds(t["id"] for t in playlist["tracks"]) == seen(who, EVERY), "a playlist names all its tracks"
    for kind, track_id in world.ids.items():
        if kind not in seen(who, EVERY):  # as if it did not exist
            assert http.get(f"/tracks/{track_id}").status_code == 404, kind
            assert http.get(f"/tracks/{track_id}/likes").status_code == 404, kind
            continue
        track = ok(http.get(f"/tracks/{track_id}"))
        assert track["id"] == track_id and track["playable"] == (kind in PLAYABLE), kind
        assert track["taken_down"] == ("not theirs" if kind == "taken_down" else None), kind
        assert ok(http.get(f"/tracks/{track_id}/likes"))["count"] == 1, kind

    if who == "anonymous":
        for path in ("/tracks/liked", "/tracks/me", "/queue/"):
            assert http.get(path).status_code == 401, path
        return
    mine = OWNER if who == "owner" else {"others"}  # the library's track is nobody's own
    assert shown("/tracks/me", limit=100) == mine, "your own tracks, in every state"
    assert shown("/tracks/liked") == (seen(who, EVERY) if who == "other" else set()), "your liked tracks"
    csrf = {"X-CSRF-Token": (world.owner if who == "owner" else world.other).artist.csrf}
    put = [world.ids[k] for k in seen(who, EVERY)]  # a track they may not see is refused, as if it did not exist
    assert http.put("/queue/", json={"state": {"track_ids": list(world.ids.values())}},
                    headers={**csrf, "If-Match": "*"}).status_code == (200 if who == "owner" else 400)
    queue = ok(http.put("/queue/", json={"state": {"track_ids": put}}, headers={**csrf, "If-Match": "*"}))
    assert world.kinds(t["id"] for t in queue["tracks"]) == seen(who, EVERY), "the queue names every track"
    assert world.kinds(t["id"] for t in ok(http.get("/queue/"))["tracks"]) == seen(who, EVERY), "read back"


@pytest.mark.parametrize("who", AUDIENCES)
def test_search_and_similar(node, world: World, who: str) -> None:
    http = client(world, node, who)

    def found(q: str, kind: str = "tracks") -> list[dict[str, Any]]:
        return ok(http.get("/search/", params={"q": q, "type": kind, "limit": 50}))["groups"][kind]

    assert world.kinds(h["id"] for h in found(WORD)) == seen(who, SEARCHED), "search"
    assert world.kinds(h["id"] for h in found("ai")) == {"hidden"}, "a hidden tag asked for by name"
    for name, did, listed in (("visowner", world.owner.artist.did, {"public", "hidden"}),
                              ("visother", world.other.artist.did, {"others"})):
        artists = {h["did"]: h["track_count"] for h in found(name, "artists")}
        assert artists == {did: len(listed)}, "an artist, with the count of their listed tracks"
    assert found(WORD, "albums") == [], "an album with no listed track is not discovered"

    def similar(kind: str) -> set[str]:
        return world.kinds(t["id"] for t in ok(http.get(f"/tracks/{world.ids[kind]}/similar"))["tracks"])

    assert similar("public") == seen(who, {"others", "library", "remote"}), "more like a listed track"
    assert similar("hidden") == seen(who, SEARCHED), "more like a track carrying a hidden tag: it is not hidden"
    for kind in ("unlisted", "processing"):  # they open by id, but discovery never indexed them
        assert similar(kind) == set(), kind


def test_playlist_recommendations(node, world: World) -> None:
    """Discovery too: a playlist's recommendations (its owner's to ask for) are the listed tracks like its own,
    without a hidden tag unless one of its tracks carries it."""
    o, csrf = world.owner.artist, {"X-CSRF-Token": world.owner.artist.csrf}
    for seed, expected in (("public", {"others", "library", "remote"}), ("hidden", SEARCHED)):
        playlist = ok(o.http.post("/lists/playlists", json={"name": f"more like {seed}"}, headers=csrf))
        ok(o.http.post(f"/lists/playlists/{playlist['id']}/tracks", json={"track_id": world.ids[seed]}, headers=csrf))
        recs = ok(o.http.get(f"/lists/playlists/{playlist['id']}/recommendations", params={"limit": 10}))
        assert world.kinds(t["id"] for t in recs["tracks"]) == expected, seed


@pytest.mark.parametrize("who", AUDIENCES)
def test_pages_embeds_and_link_previews(node, world: World, who: str) -> None:
    http = client(world, node, who)

    def page(path: str) -> str:
        r = http.get(path)
        assert r.status_code == 200, (path, r.status_code)
        return r.text

    assert world.kinds(track_rows(page("/"))) == seen(who, DISCOVERY), "the home page (latest and top)"
    assert world.kinds(track_rows(page("/tag/vistag"))) == seen(who, TAG_PAGE), "a tag's page"
    assert world.kinds(track_rows(page(f"/u/{world.handle}"))) == seen(who, OWNER_PAGE), "an artist's page"
    assert world.kinds(track_rows(page(f"/u/{world.handle}/album/{WORD}-album"))) == ALBUM, "an album's page"
    assert world.kinds(track_rows(page(f"/playlist/{world.playlist_id}"))) == seen(who, EVERY), "a playlist's page"
    # Embeds are the same for everyone and list what can play (never a library track: they are for other sites).
    assert world.kinds(track_rows(page(f"/embed/album/{world.handle}/{WORD}-album"))) == ALBUM & PLAYABLE
    assert world.kinds(track_rows(page(f"/embed/playlist/{world.playlist_id}"))) == seen("anonymous", PLAYABLE)
    for kind, track_id in world.ids.items():
        title = f"{WORD.title()} {kind}"
        if kind == "library":  # its page for those who may see it, with no preview; never an embed
            assert http.get(f"/track/{track_id}").status_code == (404 if who == "anonymous" else 200)
            if who != "anonymous":
                assert "og:title" not in page(f"/track/{track_id}")
            assert http.get(f"/embed/track/{track_id}").status_code == 404
            assert http.get("/oembed", params={"url": f"{node.url}/track/{track_id}"}).status_code == 404
            continue
        if kind == "taken_down":  # its page for its owner, with the reason; nothing another site may show
            assert http.get(f"/track/{track_id}").status_code == (200 if who == "owner" else 404)
            if who == "owner":
                assert "not theirs" in page(f"/track/{track_id}")
            assert http.get(f"/embed/track/{track_id}").status_code == 404
            assert http.get("/oembed", params={"url": f"{node.url}/track/{track_id}"}).status_code == 404
            continue
        html = page(f"/track/{track_id}")
        assert f'<meta property="og:title" content="{title}">' in html, kind
        assert world.kinds(track_rows(page(f"/embed/track/{track_id}"))) == {kind}
        preview = ok(http.get("/oembed", params={"url": f"{node.url}/track/{track_id}"}))
        assert preview["title"] == title and f"/embed/track/{track_id}\"" in preview["html"], kind
    for path in (f"/u/{world.handle}/album/{WORD}-album", f"/playlist/{world.playlist_id}"):
        assert ok(http.get("/oembed", params={"url": node.url + path}))["type"] == "rich", path
    assert http.get(f"/oembed?url={quote(node.url + '/track/999999', safe='')}").status_code == 404


@pytest.mark.parametrize("who", ("other", "owner"))
def test_subsonic(node, world: World, who: str) -> None:
    me = world.owner if who == "owner" else world.other
    owner_did, other_did = world.owner.artist.did, world.other.artist.did

    def songs(entries: list[dict[str, Any]]) -> set[str]:
        return world.kinds(s["id"].removeprefix("tr-") for s in entries)

    def album_songs(album_id: str) -> set[str]:
        return songs(me.rest("getAlbum", id=album_id)["album"].get("song", []))

    albums = {a["id"] for a in me.rest("getAlbumList2", type="newest", size=500)["albumList2"]["album"]}
    library_albums = {a for a in albums if songs(me.rest("getAlbum", id=a)["album"].get("song", [])) == {"library"}}
    assert len(library_albums) == 1, albums  # the library track's album, which Subsonic shows signed-in people
    assert albums - library_albums == {f"al-{world.album_id}", f"al-singles-{owner_did}", f"al-singles-{other_did}"}
    assert album_songs(f"al-{world.album_id}") == ALBUM & PLAYABLE, "an album: what streams, unlisted too"
    assert album_songs(f"al-singles-{owner_did}") == {"public", "hidden"}, "Singles: listed tracks"
    assert album_songs(f"al-singles-{other_did}") == {"others"}
    artist = {a["id"] for a in me.rest("getArtist", id=f"ar-{owner_did}")["artist"]["album"]}
    assert artist == {f"al-{world.album_id}", f"al-singles-{owner_did}"}
    folder = me.rest("getMusicDirectory", id=f"al-{world.album_id}")["directory"]["child"]
    assert songs(folder) == ALBUM & PLAYABLE, "folder browsing"
    assert songs(me.rest("getRandomSongs", size=500)["randomSongs"]["song"]) == DISCOVERY, "random songs"
    starred = songs(me.rest("getStarred2")["starred2"].get("song", []))
    assert starred == (seen(who, PLAYABLE) if who == "other" else set()), "starred: liked tracks that stream"
    for query in (WORD, ""):  # the search index, and substring matching (an empty query lists everything)
        result = me.rest("search3", query=query, songCount=50)["searchResult3"]
        assert songs(result.get("song", [])) == DISCOVERY, f"search3 {query!r}"
    for kind, track_id in world.ids.items():
        body = me.rest("getSong", id=f"tr-{track_id}")
        if kind in seen(who, PLAYABLE):
            assert body["song"]["id"] == f"tr-{track_id}", kind
        else:
            assert body["status"] == "failed" and body["error"]["code"] == 70, (kind, body)
    playlist = me.rest("getPlaylist", id=f"pl-{world.playlist_id}")["playlist"]
    shown = seen(who, PLAYABLE)
    assert songs(playlist["entry"]) == shown and playlist["songCount"] == len(shown), "a playlist"
    assert me.rest("getScanStatus")["scanStatus"]["count"] == len(shown - {"remote"}), "the node's own songs"
