"""Upload fields honoured, never dropped (issue 13), and the download policy, through a real node and the real PDS.

Fields: `album` (a title: the artist's album found or created, the track on it under /albums/ and in Subsonic),
`album_id` (only the uploader's own album), `features`, `visibility` (public/unlisted), the plyrfm SDK's
`publishing`, `download_policy`; an unknown field is a 400 naming it. The download policy (anyone, signed_in,
artist_only; per artist in /preferences/, per track on upload and PATCH) governs /audio/{id}/download, album zips
and Subsonic `download` for an anonymous visitor, another listener and the artist; streaming never changes.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_fixture
from helpers import Artist, sign_in, stored_files

node = node_fixture("upload-fields")

SDK_PUBLISHING = {"access": {"listening": "public", "downloads": "open", "visibility": "public"},
                  "attach_rights": False}  # what plyrfm's PublishingDefaults() dumps


@dataclass
class Person:
    """A signed-in person: the web API as an Artist, plus a developer token for Subsonic."""

    artist: Artist
    handle: str
    token: str
    rest: httpx.Client

    @property
    def did(self) -> str:
        return self.artist.did

    @property
    def http(self) -> httpx.Client:
        return self.artist.http

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers={"X-CSRF-Token": self.artist.csrf}, **kwargs)

    def patch_track(self, track_id: int, **fields: str) -> httpx.Response:
        return self.http.patch(f"/tracks/{track_id}", files={k: (None, v) for k, v in fields.items()},
                               headers={"X-CSRF-Token": self.artist.csrf})

    def track(self, path: Path, **fields: str) -> int:
        """Upload and wait: the new track's id."""
        r = self.artist.upload(path, **fields)
        assert r.status_code == 200, r.text
        events = self.artist.wait(r.json()["upload_id"])
        assert events[-1]["status"] == "completed", events
        return int(events[-1]["track_id"])

    def subsonic(self, name: str, **params: Any) -> httpx.Response:
        return self.rest.get(f"/rest/{name}", params={"apiKey": self.token, **params})

    def subsonic_json(self, name: str, **params: Any) -> dict[str, Any]:
        r = self.subsonic(name, f="json", **params)
        assert r.status_code == 200, r.text
        return r.json()["subsonic-response"]


def person(node: ServedNode, pds: Any, prefix: str) -> Person:
    account = pds.create_account(prefix)
    artist = sign_in(node.url, account)
    r = httpx.post(node.url + "/auth/app-password", json={"handle": account.handle, "app_password": account.password,
                                                          "token_name": "subsonic"}, timeout=30)
    assert r.status_code == 201, r.text
    return Person(artist, account.handle, r.json()["token"], httpx.Client(base_url=node.url, timeout=30))


def db_rows(node: ServedNode, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(node.data / "plyrd.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def song(tmp: Path, name: str, frequency: float, fmt: str = "mp3") -> Path:
    return make_audio(tmp / f"{name}.{fmt}", fmt, seconds=1, frequency=frequency)


def list_record(pds: Any, uri: str) -> dict[str, Any] | None:
    did, collection, rkey = uri[len("at://"):].split("/")
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                  params={"repo": did, "collection": collection, "rkey": rkey}, timeout=10)
    return r.json()["value"] if r.status_code == 200 else None


# ---- album by title, album_id --------------------------------------------------------------------------------------


def test_album_title_finds_or_creates_the_artists_album(node, pds, tmp_path: Path) -> None:
    artist = person(node, pds, "ufalbum")
    first = artist.track(song(tmp_path, "one", 300), title="One", album="Night Drives")
    # the same album by its slug, however the title is written; the second needs an MP3 rendition, so it is
    # published (and joins the album's record) only after transcoding
    second = artist.track(song(tmp_path, "two", 350, "aiff"), title="Two", album="night drives!")
    single = artist.track(song(tmp_path, "three", 400), title="Three")

    rows = db_rows(node, "SELECT id, slug, title FROM albums WHERE artist_did = ?", (artist.did,))
    assert [(slug, title) for _, slug, title in rows] == [("night-drives", "Night Drives")]
    album_id = rows[0][0]

    r = httpx.get(f"{node.url}/albums/{artist.handle}/night-drives")
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["tracks"]] == [first, second]
    assert r.json()["metadata"]["track_count"] == 2
    listed = httpx.get(f"{node.url}/albums/").json()
    assert any(a["id"] == album_id for a in (listed["albums"] if isinstance(listed, dict) else listed))
    # the records carry the album's title, and the album's list record names both tracks in order
    assert db_rows(node, "SELECT album FROM tracks WHERE id IN (?, ?)", (first, second)) == [("Night Drives",)] * 2
    deadline = time.monotonic() + 30
    refs = db_rows(node, "SELECT record_uri FROM tracks WHERE id IN (?, ?) ORDER BY id", (first, second))
    while True:
        (uri,), = db_rows(node, "SELECT record_uri FROM albums WHERE id = ?", (album_id,))
        record = list_record(pds, uri) if uri else None
        if record and [i["subject"]["uri"] for i in record["items"]] == [u for (u,) in refs]:
            break
        assert time.monotonic() < deadline, record
        time.sleep(0.3)
    assert record["name"] == "Night Drives" and record["listType"] == "album"

    # Subsonic shows the node's album, the single stays in "Singles"
    album = artist.subsonic_json("getAlbum", id=f"al-{album_id}")["album"]
    assert album["name"] == "Night Drives" and [s["id"] for s in album["song"]] == [f"tr-{first}", f"tr-{second}"]
    got = artist.subsonic_json("getSong", id=f"tr-{second}")["song"]
    assert got["albumId"] == f"al-{album_id}" and got["album"] == "Night Drives" and got["track"] == 2
    assert artist.subsonic_json("getSong", id=f"tr-{single}")["song"]["albumId"] == f"al-singles-{artist.did}"


def test_album_id_links_only_the_uploaders_own_album(node, pds, tmp_path: Path) -> None:
    artist = person(node, pds, "ufalbid")
    other = person(node, pds, "ufother")
    r = artist.post("/albums/", json={"title": "Made First"})
    assert r.status_code == 200, r.text
    album = r.json()
    theirs = other.post("/albums/", json={"title": "Not Yours"}).json()["id"]

    track = artist.track(song(tmp_path, "linked", 500), title="Linked", album_id=album["id"])
    detail = httpx.get(f"{node.url}/albums/{artist.handle}/{album['slug']}").json()
    assert [t["id"] for t in detail["tracks"]] == [track]
    assert db_rows(node, "SELECT album FROM tracks WHERE id = ?", (track,)) == [("Made First",)]
    sub = artist.subsonic_json("getAlbum", id=f"al-{album['id']}")["album"]
    assert [s["id"] for s in sub["song"]] == [f"tr-{track}"]

    path = song(tmp_path, "refused", 550)
    before = stored_files(node)
    for fields, status, words in [
        ({"album_id": theirs}, 403, "someone else's album"),
        ({"album_id": str(uuid.uuid4())}, 404, "album not found"),
        ({"album_id": "nope"}, 400, "UUID"),
        ({"album_id": album["id"], "album": "Made First"}, 400, "mutually exclusive"),
    ]:
        r = artist.artist.upload(path, title="refused", **fields)
        assert r.status_code == status, (fields, r.text)
        assert words in r.json()["detail"]
    assert stored_files(node) == before  # a refused upload keeps nothing
    assert db_rows(node, "SELECT count(*) FROM tracks WHERE title = 'refused'") == [(0,)]


# ---- visibility, publishing, features, unknown fields -----------------------------------------------------------


def _in_feed(node: ServedNode, track_id: int) -> bool:
    """In the latest feed (an artist's own page lists their unlisted tracks too)."""
    r = httpx.get(f"{node.url}/tracks/", params={"limit": 50})
    assert r.status_code == 200, r.text
    return track_id in [t["id"] for t in r.json()["tracks"]]


def test_visibility_public_or_unlisted(node, pds, tmp_path: Path) -> None:
    artist = person(node, pds, "ufvis")
    hidden = artist.track(song(tmp_path, "hidden", 600), title="Hidden", visibility="unlisted")
    shown = artist.track(song(tmp_path, "shown", 650), title="Shown", visibility="public")
    assert httpx.get(f"{node.url}/tracks/{hidden}").json()["unlisted"] is True
    assert not _in_feed(node, hidden) and _in_feed(node, shown)
    assert httpx.get(f"{node.url}/tracks/{hidden}").status_code == 200  # its link still plays

    path = song(tmp_path, "bad", 700)
    for fields, words in [
        ({"visibility": "private"}, "public or unlisted"),
        ({"visibility": "supporters"}, "public or unlisted"),
        ({"visibility": "public", "unlisted": "true"}, "disagree"),
    ]:
        r = artist.artist.upload(path, title="bad", **fields)
        assert r.status_code == 400 and words in r.json()["detail"], (fields, r.text)


def test_sdk_publishing_is_honoured(node, pds, tmp_path: Path) -> None:
    artist = person(node, pds, "ufpub")
    publishing = {"access": {"listening": "public", "downloads": "off", "visibility": "unlisted"},
                  "attach_rights": True}
    track = artist.track(song(tmp_path, "pub", 750), title="Pub", publishing=json.dumps(publishing))
    assert db_rows(node, "SELECT unlisted, download_policy FROM tracks WHERE id = ?", (track,)) == [(1, "artist_only")]
    assert not _in_feed(node, track)
    # the SDK's defaults: public, downloads open (a complete override of the artist's template)
    track = artist.track(song(tmp_path, "pub2", 760), title="Pub 2", publishing=json.dumps(SDK_PUBLISHING))
    assert db_rows(node, "SELECT unlisted, download_policy FROM tracks WHERE id = ?", (track,)) == [(0, "anyone")]

    path = song(tmp_path, "pubbad", 770)
    for publishing, words in [
        ({"access": {"listening": "signed_in"}}, "listening must be public"),
        ({"access": {"downloads": "supporters"}}, "no supporters"),
        ({"access": {"visibility": "private"}}, "public or unlisted"),
        ({"access": {}, "extra": 1}, "extra"),
        ("[]", "JSON object"),
    ]:
        raw = publishing if isinstance(publishing, str) else json.dumps(publishing)
        r = artist.artist.upload(path, title="bad", publishing=raw)
        assert r.status_code == 400 and words in r.json()["detail"], (publishing, r.text)
    r = artist.artist.upload(path, title="bad", visibility="public",
                             publishing=json.dumps({"access": {"visibility": "unlisted"}}))
    assert r.status_code == 400 and "disagree" in r.json()["detail"]


def test_features_and_unknown_fields(node, pds, tmp_path: Path) -> None:
    artist = person(node, pds, "uffeat")
    guest = person(node, pds, "ufguest")
    track = artist.track(song(tmp_path, "feat", 800), title="Feat", features=json.dumps([guest.handle]))
    (features,), = db_rows(node, "SELECT features FROM tracks WHERE id = ?", (track,))
    assert [f["did"] for f in json.loads(features)] == [guest.did]

    path = song(tmp_path, "unknown", 850)
    before = stored_files(node)
    r = artist.artist.upload(path, title="x", features=json.dumps(["nobody-here.test"]))
    assert r.status_code == 400 and "nobody-here.test" in r.json()["detail"], r.text
    r = artist.artist.upload(path, title="x", copyright="{}", auto_tag="true")
    assert r.status_code == 400, r.text
    assert "auto_tag" in r.json()["detail"] and "copyright" in r.json()["detail"]
    assert stored_files(node) == before


# ---- download policy ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_setup(node, pds, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An artist with an album of one track, another listener, and anonymous."""
    tmp = tmp_path_factory.mktemp("policy")
    artist = person(node, pds, "ufdl")
    listener = person(node, pds, "uflisten")
    track = artist.track(song(tmp, "dl", 900), title="Downloadable", album="Policy Album")
    detail = httpx.get(f"{node.url}/tracks/{track}").json()
    return {"artist": artist, "listener": listener, "track": track, "file_id": detail["file_id"],
            "original": detail["original_file_id"], "bytes": (tmp / "dl.mp3").read_bytes(), "tmp": tmp}


def _set_artist_policy(artist: Person, value: str, expect: str) -> None:
    r = artist.post("/preferences/", json={"download_policy": value})
    assert r.status_code == 200 and r.json()["download_policy"] == expect, r.text
    assert artist.http.get("/preferences/").json()["download_policy"] == expect


def _outcomes(node: ServedNode, s: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """For anonymous, the listener and the artist: the track download's status, the album zip's status, and (for
    the signed-in two) whether Subsonic's download sent the file (200) or its error code."""
    anon = httpx.Client(base_url=node.url, timeout=30)
    who = {"anonymous": anon, "listener": s["listener"].http, "artist": s["artist"].http}
    out: dict[str, tuple[int, ...]] = {}
    for name, http in who.items():
        r = http.get(f"/audio/{s['original']}/download")
        if r.status_code == 200:
            assert r.content == s["bytes"]
        z = http.get(f"/albums/{s['artist'].handle}/policy-album/download")
        if z.status_code == 200:
            assert zipfile.ZipFile(io.BytesIO(z.content)).namelist()
        # streaming is never affected
        stream = http.get(f"/audio/{s['file_id']}")
        assert stream.status_code == 200 and stream.content == s["bytes"]
        result: tuple[int, ...] = (r.status_code, z.status_code)
        if name != "anonymous":
            p: Person = s[name]
            d = p.subsonic("download", id=f"tr-{s['track']}")
            if d.headers["content-type"].startswith("audio/"):
                assert d.content == s["bytes"]
                result += (200,)
            else:
                body = p.subsonic_json("download", id=f"tr-{s['track']}")
                assert body["status"] == "failed"
                result += (body["error"]["code"],)
            assert p.subsonic("stream", id=f"tr-{s['track']}").content == s["bytes"]
        out[name] = result
    return out


EXPECTED = {
    "anyone": {"anonymous": (200, 200), "listener": (200, 200, 200), "artist": (200, 200, 200)},
    "signed_in": {"anonymous": (401, 401), "listener": (200, 200, 200), "artist": (200, 200, 200)},
    "artist_only": {"anonymous": (403, 403), "listener": (403, 403, 50), "artist": (200, 200, 200)},
}


@pytest.mark.parametrize(("value", "tier"), [
    ("anyone", "anyone"), ("signed_in", "signed_in"), ("artist_only", "artist_only"),
    ("open", "anyone"), ("off", "artist_only"),  # plyr.fm's names
])
def test_artist_download_policy_matrix(node, policy_setup: dict[str, Any], value: str, tier: str) -> None:
    _set_artist_policy(policy_setup["artist"], value, tier)
    assert _outcomes(node, policy_setup) == EXPECTED[tier]


def test_track_overrides_the_artists_policy(node, policy_setup: dict[str, Any]) -> None:
    s = policy_setup
    artist, track = s["artist"], s["track"]
    _set_artist_policy(artist, "artist_only", "artist_only")
    for value, tier in [("anyone", "anyone"), ("signed_in", "signed_in"), ("open", "anyone")]:
        r = artist.patch_track(track, download_policy=value)
        assert r.status_code == 200, r.text
        assert db_rows(node, "SELECT download_policy FROM tracks WHERE id = ?", (track,)) == [(tier,)]
        assert _outcomes(node, s) == EXPECTED[tier]
    _set_artist_policy(artist, "anyone", "anyone")
    assert artist.patch_track(track, download_policy="off").status_code == 200
    assert _outcomes(node, s) == EXPECTED["artist_only"]
    # cleared: the track follows its artist again
    assert artist.patch_track(track, download_policy="").status_code == 200
    assert db_rows(node, "SELECT download_policy FROM tracks WHERE id = ?", (track,)) == [(None,)]
    assert _outcomes(node, s) == EXPECTED["anyone"]
    r = artist.patch_track(track, download_policy="supporters")
    assert r.status_code == 400 and "supporters" in r.json()["detail"]
    r = artist.post("/preferences/", json={"download_policy": "everyone"})
    assert r.status_code == 400 and "anyone" in r.json()["detail"]
    assert s["listener"].patch_track(track, download_policy="anyone").status_code == 403


def test_upload_field_and_a_partly_downloadable_album_zip(node, policy_setup: dict[str, Any]) -> None:
    s = policy_setup
    artist = s["artist"]
    _set_artist_policy(artist, "anyone", "anyone")
    guarded = artist.track(song(s["tmp"], "guarded", 950), title="Guarded", album="Policy Album",
                           download_policy="signed_in")
    assert db_rows(node, "SELECT download_policy FROM tracks WHERE id = ?", (guarded,)) == [("signed_in",)]
    original = httpx.get(f"{node.url}/tracks/{guarded}").json()["original_file_id"]
    assert httpx.get(f"{node.url}/audio/{original}/download").status_code == 401
    assert s["listener"].http.get(f"/audio/{original}/download").status_code == 200

    def names(http: httpx.Client) -> list[str]:
        r = http.get(f"/albums/{artist.handle}/policy-album/download")
        assert r.status_code == 200, r.text
        return sorted(n.split(" - ")[-1] for n in zipfile.ZipFile(io.BytesIO(r.content)).namelist())

    # anonymous gets the track anyone may have, a signed-in listener both
    assert names(httpx.Client(base_url=node.url, timeout=30)) == ["Downloadable.mp3"]
    assert names(s["listener"].http) == ["Downloadable.mp3", "Guarded.mp3"]
    r = artist.artist.upload(song(s["tmp"], "badpolicy", 975), title="x", download_policy="supporters")
    assert r.status_code == 400 and "supporters" in r.json()["detail"]
