"""Library tracks (the node's music folder) are private by nature and playable everywhere on the node, through the
one visibility rule (plyrd.catalog.tracks), asked of every API through a real node, the real PDS and a real scan.

A folder of real files made with PyAV (an album of two tagged MP3s with an embedded cover, and a FLAC single) is
scanned by the node's scanner. Four people look: nobody signed in, a signed-in listener named in
auth.library_listeners (who also uploads and publishes a track of their own), a signed-in outsider not named there,
and an admin (not named either: admins always may). Anonymous visitors and the outsider never see a library track
anywhere (404, as if it did not exist); the listener and the admin find them in feeds, track pages, search, the
queue, Subsonic, and may play their files. Nothing shared outside the node (embeds, oEmbed, OG tags) shows them,
the library is nobody's artist, and nothing of them is ever published: no track record, no like record, a mixed
playlist's record names only its published item.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import ServedNode, node_env, start_node
from helpers import Artist, records, sign_in
from library_support import scan_library

LIBRARY_DID = "did:plyrd:library"
WORD = "qwixl"  # in every title here, and in nothing else on this node
WHO = ("anonymous", "listener", "outsider", "admin")
SEES_LIBRARY = {"anonymous": False, "listener": True, "outsider": False, "admin": True}


@dataclass
class Person:
    artist: Artist
    token: str  # a developer token, for Subsonic

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.artist.csrf}

    def rest(self, method: str, **params: Any) -> dict[str, Any]:
        r = self.artist.http.get(f"/rest/{method}", params={"apiKey": self.token, "f": "json", **params})
        assert r.status_code == 200, r.text
        return r.json()["subsonic-response"]


@dataclass
class World:
    node: ServedNode
    music: Path
    people: dict[str, Person]
    accounts: dict[str, Any]
    library: dict[str, int]  # library tracks by title
    upload: int  # the listener's published track

    def http(self, who: str) -> httpx.Client:
        if who == "anonymous":
            return httpx.Client(base_url=self.node.url, timeout=30)
        return self.people[who].artist.http

    def db(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.node.data / "plyrd.db", timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, (r.request.url, r.status_code, r.text)
    return r.json()


def make_music(folder: Path) -> Path:
    """Real files with tags as a ripped collection has them: an album of two MP3s with an embedded cover, and a
    FLAC single by another artist."""
    album = folder / "Tagged Band" / "Qwixl Album"
    album.mkdir(parents=True)
    cover = jpeg_bytes(64, 64, (20, 120, 200))
    for n, title in enumerate(("Qwixl Opening", "Qwixl Closing"), start=1):
        make_audio(album / f"0{n} {title}.mp3", "mp3", seconds=1.5, frequency=330.0 + 60 * n, cover=cover,
                   tags={"title": title, "artist": "Tagged Band", "album_artist": "Tagged Band",
                         "album": "Qwixl Album", "track": str(n), "date": "2019", "genre": "Libgenre"})
    make_audio(folder / "Qwixl Single.flac", "flac", seconds=1.5, frequency=520.0,
               tags={"title": "Qwixl Single", "artist": "Solo Person", "album": "Qwixl Single", "genre": "Libgenre"})
    return folder


def developer_token(node: ServedNode, account: Any) -> str:
    r = httpx.post(node.url + "/auth/app-password", json={"handle": account.handle, "app_password": account.password,
                                                          "token_name": "subsonic"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def world(pds, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    accounts = {who: pds.create_account(who) for who in ("listener", "outsider", "admin")}
    music = make_music(tmp_path_factory.mktemp("music"))
    cwd = tmp_path_factory.mktemp("library-visibility")
    node = start_node([], cwd=cwd, env=node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music),
                                                   PLYRD_AUTH_ADMINS=accounts["admin"].handle,
                                                   PLYRD_AUTH_LIBRARY_LISTENERS=accounts["listener"].handle,
                                                   PLYRD_LIBRARY_WATCH="false"))
    try:
        scan_library(node, tracks=3)
        people = {who: Person(sign_in(node.url, a), developer_token(node, a)) for who, a in accounts.items()}
        listener = people["listener"].artist
        src = make_audio(tmp_path_factory.mktemp("upload") / "up.mp3", "mp3", seconds=1.5, frequency=700.0)
        r = listener.upload(src, title="Qwixl Upload")
        assert r.status_code == 200, r.text
        events = listener.wait(r.json()["upload_id"])
        assert events[-1]["status"] == "completed", events
        conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
        library = dict(conn.execute("SELECT title, id FROM tracks WHERE source = 'library'").fetchall())
        conn.close()
        assert set(library) == {"Qwixl Opening", "Qwixl Closing", "Qwixl Single"}
        yield World(node, music, people, accounts, library, events[-1]["track_id"])
    finally:
        node.stop()


def test_nothing_of_the_library_is_published(world: World, pds) -> None:
    """Library tracks and albums never get a record, and nothing waits in the outbox for them."""
    rows = world.db("SELECT rkey, record_uri, artist_did FROM tracks WHERE source = 'library'")
    assert rows and all(r == (None, None, LIBRARY_DID) for r in rows)
    albums = world.db("SELECT rkey, record_uri, album_artist FROM albums WHERE library_key IS NOT NULL")
    assert (None, None, "Tagged Band") in albums and all(a[:2] == (None, None) for a in albums)
    assert world.db("SELECT count(*) FROM outbox WHERE did = ?", (LIBRARY_DID,)) == [(0,)]


@pytest.mark.parametrize("who", WHO)
def test_feeds_track_pages_and_files(world: World, who: str) -> None:
    http, sees = world.http(who), SEES_LIBRARY[who]
    library = set(world.library.values())

    feed = {t["id"] for t in ok(http.get("/tracks/", params={"limit": 100}))["tracks"]}
    assert world.upload in feed
    assert (library <= feed) if sees else not (library & feed), "the latest feed"
    tag = http.get("/tracks/tags/libgenre", params={"limit": 100})  # the files' genre, carried by nothing else
    if sees:
        assert {t["id"] for t in ok(tag)["tracks"]} == library, "a tag's tracks"
    else:
        assert tag.status_code == 404, "a tag only library tracks carry does not exist for them"
    home = set(map(int, re.findall(r'data-track-id="(\d+)"', http.get("/").text)))
    assert (library <= home) if sees else not (library & home), "the home page"

    opening = world.library["Qwixl Opening"]
    for track_id in library:
        r = http.get(f"/tracks/{track_id}")
        page = http.get(f"/track/{track_id}")
        if not sees:
            assert r.status_code == 404 and page.status_code == 404, (track_id, r.text)
            continue
        track = ok(r)
        assert track["source"] == "library" and track["atproto_record_uri"] is None
        assert isinstance(track["artist_handle"], str) and track["playable"]
        assert page.status_code == 200
    if sees:
        track = ok(http.get(f"/tracks/{opening}"))
        assert track["artist"] == "Tagged Band" and track["album"]["title"] == "Qwixl Album", track
        art = http.get(track["thumbnail_url"].removeprefix(world.node.url))  # the embedded picture, as artwork
        assert art.status_code == 200 and art.headers["content-type"] == "image/webp"
        html = http.get(f"/track/{opening}").text
        assert "Tagged Band" in html and 'href="/u/did:plyrd:library"' not in html
        assert "og:title" not in html and "/embed/track/" not in html and "/oembed?" not in html, "no previews"

    # its file, and its artwork: the track's own, or its album's cover (the embedded picture, made once an album's)
    original, thumb, cover = world.db(
        "SELECT t.original_sha, t.thumb_sha, a.thumb_sha FROM tracks t JOIN album_tracks x ON x.track_id = t.id"
        " JOIN albums a ON a.id = x.album_id WHERE t.id = ?", (opening,))[0]
    assert thumb or cover, "the embedded picture became artwork"
    audio = http.get(f"/audio/{original}")
    image = http.get(f"/images/{thumb}" if thumb else f"/lists/covers/{cover}")
    if sees:
        assert audio.status_code == 200 and audio.content == (world.music / "Tagged Band" / "Qwixl Album"
                                                               / "01 Qwixl Opening.mp3").read_bytes()
        assert audio.headers["cache-control"].startswith("private"), "no shared cache keeps a library file"
        assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
        assert image.headers["cache-control"].startswith("private"), "nor its artwork"
    else:
        assert audio.status_code == 404 and image.status_code == 404
        assert http.get(f"/audio/{original}/download").status_code == 404
    for path in (f"/tracks/{opening}/likes", f"/tracks/{opening}/comments"):
        assert http.get(path).status_code == (200 if sees else 404), path
    play = http.post(f"/tracks/{opening}/play", json={}, headers={"Origin": world.node.url,
                                                                   **({} if who == "anonymous" else
                                                                      world.people[who].csrf)})
    assert play.status_code == (200 if sees else 404), play.text


@pytest.mark.parametrize("who", WHO)
def test_album_pages(world: World, who: str) -> None:
    http, sees = world.http(who), SEES_LIBRARY[who]
    slug = world.db("SELECT slug FROM albums WHERE library_key IS NOT NULL AND title = 'Qwixl Album'")[0][0]
    path = f"/u/{LIBRARY_DID}/album/{slug}"
    page = http.get(path)
    detail = http.get(f"/albums/{LIBRARY_DID}/{slug}")
    listed = {a["title"] for a in ok(http.get("/albums/"))["albums"]}
    if not sees:
        assert page.status_code == 404 and detail.status_code == 404
        assert "Qwixl Album" not in listed
        return
    assert page.status_code == 200 and "og:title" not in page.text and "/embed/album/" not in page.text
    body = ok(detail)
    assert body["metadata"]["artist"] == "Tagged Band" and body["metadata"]["atproto_record_uri"] is None
    assert [t["title"] for t in body["tracks"]] == ["Qwixl Opening", "Qwixl Closing"], "disc and track order"
    assert "Qwixl Album" in listed


@pytest.mark.parametrize("who", WHO)
def test_never_shared_outside(world: World, who: str) -> None:
    """Embeds, oEmbed and link previews are for other sites: never a library track, even for its listeners."""
    http = world.http(who)
    slug = world.db("SELECT slug FROM albums WHERE library_key IS NOT NULL AND title = 'Qwixl Album'")[0][0]
    base = world.node.url
    for track_id in world.library.values():
        assert http.get(f"/embed/track/{track_id}").status_code == 404
        assert http.get("/oembed", params={"url": f"{base}/track/{track_id}"}).status_code == 404
    assert http.get(f"/embed/album/{LIBRARY_DID}/{slug}").status_code == 404
    assert http.get("/oembed", params={"url": f"{base}/u/{LIBRARY_DID}/album/{slug}"}).status_code == 404
    assert http.get(f"/embed/track/{world.upload}").status_code == 200, "a published track still embeds"


@pytest.mark.parametrize("who", WHO)
def test_the_library_is_no_artist(world: World, who: str) -> None:
    http = world.http(who)
    assert http.get(f"/artists/{LIBRARY_DID}").status_code == 404
    assert http.get(f"/u/{LIBRARY_DID}").status_code == 404
    assert http.get(f"/albums/{LIBRARY_DID}").status_code == 404
    headers = {} if who == "anonymous" else world.people[who].csrf
    assert ok(http.post("/artists/batch", json=[LIBRARY_DID], headers=headers)) == {}
    assert ok(http.get("/tracks/", params={"artist_did": LIBRARY_DID}))["tracks"] == []
    for q in ("library", "Tagged Band"):
        artists = ok(http.get("/search/", params={"q": q, "type": "artists"}))["groups"]["artists"]
        assert LIBRARY_DID not in {a["did"] for a in artists}, q


@pytest.mark.parametrize("who", WHO)
def test_search(world: World, who: str) -> None:
    http, sees = world.http(who), SEES_LIBRARY[who]

    def found(q: str, kind: str = "tracks") -> list[dict[str, Any]]:
        return ok(http.get("/search/", params={"q": q, "type": kind, "limit": 50}))["groups"][kind]

    expected = {world.upload} | (set(world.library.values()) if sees else set())
    assert {h["id"] for h in found(WORD)} == expected
    by_artist = {h["id"] for h in found("Tagged Band")}  # a library track is found by its tagged artist
    assert by_artist == ({world.library["Qwixl Opening"], world.library["Qwixl Closing"]} if sees else set())
    albums = {h["title"] for h in found("Qwixl Album", "albums")}
    assert ("Qwixl Album" in albums) == sees
    if sees:
        hit = next(h for h in found("Qwixl Opening") if h["id"] == world.library["Qwixl Opening"])
        assert hit["artist"] == "Tagged Band"


@pytest.mark.parametrize("who", ("listener", "outsider", "admin"))
def test_subsonic_and_the_queue(world: World, who: str) -> None:
    me, sees = world.people[who], SEES_LIBRARY[who]
    library = {f"tr-{i}" for i in world.library.values()}

    def songs(entries: list[dict[str, Any]]) -> set[str]:
        return {s["id"] for s in entries}

    random_songs = songs(me.rest("getRandomSongs", size=500)["randomSongs"].get("song", []))
    assert (library <= random_songs) if sees else not (library & random_songs), "random songs"
    found = songs(me.rest("search3", query=WORD, songCount=50)["searchResult3"].get("song", []))
    assert found == {f"tr-{world.upload}"} | (library if sees else set()), "search3"
    one = f"tr-{world.library['Qwixl Single']}"
    body = me.rest("getSong", id=one)
    assert (body["status"] == "ok") if sees else (body["error"]["code"] == 70), body
    stream = me.artist.http.get("/rest/stream", params={"apiKey": me.token, "id": one})
    assert (stream.status_code == 200 and stream.content[:4] == b"fLaC") if sees else \
        stream.headers["content-type"].startswith(("application/json", "text/xml", "application/xml"))

    ids = [world.upload, *world.library.values()]
    r = me.artist.http.put("/queue/", json={"state": {"track_ids": ids}}, headers={**me.csrf, "If-Match": "*"})
    if sees:
        assert {t["id"] for t in ok(r)["tracks"]} == set(ids), "the queue names library tracks"
        assert {t["id"] for t in ok(me.artist.http.get("/queue/"))["tracks"]} == set(ids)
    else:
        assert r.status_code == 400 and "no such track" in r.text, r.text


def test_now_playing(world: World) -> None:
    """The public now-playing read shows a library track only to those who may see it."""
    me = world.people["listener"]
    opening = world.library["Qwixl Opening"]
    r = me.artist.http.post("/now-playing/", json={"track_id": opening, "progress_ms": 500}, headers=me.csrf)
    assert r.status_code == 200, r.text
    outsider = world.people["outsider"]
    assert outsider.artist.http.post("/now-playing/", json={"track_id": opening, "progress_ms": 0},
                                     headers=outsider.csrf).status_code == 404
    for who in WHO:
        shown = world.http(who).get(f"/now-playing/by-did/{me.artist.did}")
        if SEES_LIBRARY[who]:
            assert ok(shown)["track_name"] == "Qwixl Opening" and ok(shown)["artist_name"] == "Tagged Band"
        else:
            assert shown.status_code == 204, (who, shown.text)
    ok(me.artist.http.delete("/now-playing/", headers=me.csrf))


def _published(pds, did: str, collection: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := records(pds, did, collection)) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def _outbox_empty(world: World, did: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while world.db("SELECT count(*) FROM outbox WHERE did = ?", (did,)) != [(0,)]:
        assert time.monotonic() < deadline, "the outbox did not drain"
        time.sleep(0.2)


def test_likes_and_playlists_stay_on_the_node(world: World, pds) -> None:
    """A like of a library track is a likes row and no record; the liked list's record and a mixed playlist's
    record name only the published track; reconciling with the PDS keeps what only the node holds."""
    me, did = world.people["listener"], world.people["listener"].artist.did
    http, opening, single = me.artist.http, world.library["Qwixl Opening"], world.library["Qwixl Single"]
    _published(pds, did, "fm.plyr.track", 1)
    upload_uri = records(pds, did, "fm.plyr.track")[0]["uri"]
    assert ok(http.post(f"/tracks/{opening}/like", headers=me.csrf))["liked"] is True
    assert ok(http.post(f"/tracks/{world.upload}/like", headers=me.csrf))["liked"] is True
    liked = {t["id"] for t in ok(http.get("/tracks/liked"))["tracks"]}
    assert liked == {opening, world.upload}
    assert world.people["outsider"].artist.http.post(f"/tracks/{opening}/like",
                                                     headers=world.people["outsider"].csrf).status_code == 404

    playlist = ok(http.post("/lists/playlists", json={"name": "mixed"}, headers=me.csrf))
    for track_id in (opening, world.upload, single):
        ok(http.post(f"/lists/playlists/{playlist['id']}/tracks", json={"track_id": track_id}, headers=me.csrf))
    _outbox_empty(world, did)

    likes = records(pds, did, "fm.plyr.like")
    assert [r["value"]["subject"]["uri"] for r in likes] == [upload_uri], "one like record: the published track's"
    lists = {r["value"]["name"]: r["value"] for r in records(pds, did, "fm.plyr.list")}
    assert [i["subject"]["uri"] for i in lists["Liked Tracks"]["items"]] == [upload_uri]
    assert [i["subject"]["uri"] for i in lists["mixed"]["items"]] == [upload_uri], "only the published item"
    # plyr.fm reorders a liked list by its record's strongRefs: the library track, in none, keeps its place
    order = [t["id"] for t in ok(http.get("/tracks/liked"))["tracks"]]
    liked_rkey = next(r["uri"] for r in records(pds, did, "fm.plyr.list")
                      if r["value"]["name"] == "Liked Tracks").rsplit("/", 1)[1]
    upload_cid = records(pds, did, "fm.plyr.track")[0]["cid"]
    ok(http.put(f"/lists/{liked_rkey}/reorder", json={"items": [{"uri": upload_uri, "cid": upload_cid}]},
                headers=me.csrf))
    assert [t["id"] for t in ok(http.get("/tracks/liked"))["tracks"]] == order

    detail = ok(http.get(f"/lists/playlists/{playlist['id']}"))
    assert [t["id"] for t in detail["tracks"]] == [opening, world.upload, single]
    anonymous = ok(world.http("anonymous").get(f"/lists/playlists/{playlist['id']}"))
    assert [t["id"] for t in anonymous["tracks"]] == [world.upload]
    assert [i["uri"] for i in anonymous["items"]] == [upload_uri], "no trace of the library's items"

    ok(http.post("/sync/reconcile", headers=me.csrf))
    assert world.db("SELECT count(*) FROM likes WHERE did = ? AND track_id = ?", (did, opening)) == [(1,)]
    after = ok(http.get(f"/lists/playlists/{playlist['id']}"))
    assert [t["id"] for t in after["tracks"]] == [opening, world.upload, single], "reconcile keeps library items"

    # Another client renames the playlist on the PDS: its record replaces the published items, the library's stay.
    account = world.accounts["listener"]
    session = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                         json={"identifier": account.handle, "password": account.password}).json()
    mixed = next(r for r in records(pds, did, "fm.plyr.list") if r["value"]["name"] == "mixed")
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.putRecord",
                   headers={"Authorization": f"Bearer {session['accessJwt']}"},
                   json={"repo": did, "collection": "fm.plyr.list", "rkey": mixed["uri"].rsplit("/", 1)[1],
                         "record": {**mixed["value"], "name": "mixed elsewhere"}})
    assert r.status_code == 200, r.text
    ok(http.post("/sync/reconcile", headers=me.csrf))
    edited = ok(http.get(f"/lists/playlists/{playlist['id']}"))
    assert edited["name"] == "mixed elsewhere"
    assert [t["id"] for t in edited["tracks"]] == [opening, world.upload, single], "library items keep their places"

    assert ok(http.delete(f"/tracks/{opening}/like", headers=me.csrf))["liked"] is False
    _outbox_empty(world, did)
    assert [r["value"]["subject"]["uri"] for r in records(pds, did, "fm.plyr.like")] == [upload_uri]


def test_library_listeners_and_admins() -> None:
    """The one place an Audience is made from a session: admins always see the library, signed-in people when
    auth.library_listeners is empty or names them (by DID or handle), nobody signed out."""
    from plyrd.auth.service import AuthService
    from plyrd.catalog.tracks import ANONYMOUS
    from plyrd.config import load_config

    def audience(listeners: list[str], did: str | None, handle: str | None = None) -> Any:
        config = load_config(overrides={"auth.admins": ["boss.test"], "auth.library_listeners": listeners})
        service = AuthService.__new__(AuthService)
        service.config = config
        return service.audience(did, handle)

    assert audience([], None) == ANONYMOUS and not ANONYMOUS.library
    assert audience([], "did:plc:someone", "someone.test").library
    assert not audience(["did:plc:friend"], "did:plc:someone", "someone.test").library
    assert audience(["did:plc:friend"], "did:plc:friend", "friend.test").library
    assert audience(["@Friend.test"], "did:plc:friend", "friend.test").library
    boss = audience(["did:plc:friend"], "did:plc:boss", "boss.test")
    assert boss.library and boss.is_admin
