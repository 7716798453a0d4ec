"""Albums and playlists through a real node process and the real PDS: every endpoint, bad input, who may do what,
and the fm.plyr.list records the outbox writes (private playlists never reach the PDS)."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from conftest import ServedNode, clean_env, node_env, node_fixture, start_node
from helpers import db_rows

from plyrd.atproto import cbor, lexicon, records, tids

LIST = "fm.plyr.list"


@dataclass
class User:
    http: httpx.Client
    csrf: str
    did: str
    handle: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)


def sign_in(url: str, account: Any) -> User:
    http = httpx.Client(base_url=url, timeout=30)
    r = http.post("/auth/app-password", json={"handle": account.handle, "app_password": account.password})
    assert r.status_code == 200, r.text
    me = r.json()
    return User(http, me["csrf_token"], me["did"], account.handle)


def db_write(node: ServedNode, sql: str, params: Any = (), *, many: bool = False) -> None:
    """A test reaching into the node's database (another process; SQLite's file locks keep the two apart)."""
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        (conn.executemany if many else conn.execute)(sql, params)
        conn.commit()
    finally:
        conn.close()


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pds_lists(pds: Any, did: str) -> dict[str, dict[str, Any]]:
    """The fm.plyr.list records on the user's PDS, by URI (read through the PDS's public listRecords)."""
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords",
                  params={"repo": did, "collection": LIST, "limit": 100}, timeout=10)
    assert r.status_code == 200, r.text
    found = {}
    for rec in r.json()["records"]:
        lexicon.validate(LIST, rec["value"])  # every list plyrd writes must match the lexicon
        found[rec["uri"]] = {**rec["value"], "_cid": rec["cid"]}
    return found


def pds_list(pds: Any, did: str, uri: str, check: Callable[[dict[str, Any]], bool] = lambda v: True,
             timeout: float = 30) -> dict[str, Any]:
    """Wait until the record at `uri` is on the PDS and passes `check` (the outbox writes in the background)."""
    return wait_for(lambda: (v := pds_lists(pds, did).get(uri)) is not None and check(v) and v, timeout,
                    f"{uri} on the PDS")


def wait_gone(pds: Any, did: str, uri: str) -> None:
    wait_for(lambda: uri not in pds_lists(pds, did), 30, f"{uri} deleted from the PDS")


def refs(value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["subject"]["uri"], i["subject"]["cid"]) for i in value["items"]]


# ---- fixtures -------------------------------------------------------------------------------------------------


node = node_fixture("lists")


@pytest.fixture(scope="module")
def alice(node, pds) -> User:
    return sign_in(node.url, pds.create_account("alice"))


@pytest.fixture(scope="module")
def bob(node, pds) -> User:
    return sign_in(node.url, pds.create_account("bob"))


@pytest.fixture(scope="module")
def carol(node, pds) -> User:
    return sign_in(node.url, pds.create_account("carol"))


def upload(node: ServedNode, who: User, tmp: Path, title: str, frequency: float) -> int:
    src = make_audio(tmp / f"{title}.mp3", "mp3", seconds=1, frequency=frequency)
    r = who.call("POST", "/tracks/", files={"file": (src.name, src.read_bytes(), "audio/mpeg")},
                 data={"title": title}, timeout=60)
    assert r.status_code == 200, r.text
    with who.http.stream("GET", f"/tracks/uploads/{r.json()['upload_id']}/progress", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and (event := json.loads(line[6:]))["status"] in ("completed", "failed"):
                assert event["status"] == "completed", event
                return int(event["track_id"])
    raise AssertionError("the upload's progress ended without an outcome")


def ensure_record(node: ServedNode, track_id: int) -> tuple[str, str]:
    """The track's record strongRef, once its publishing has queued it (at once for an MP3 upload)."""
    def published() -> tuple[str, str] | None:
        rows = db_rows(node, "SELECT record_uri, record_cid FROM tracks WHERE id = ?", (track_id,))
        return (rows[0][0], rows[0][1]) if rows and rows[0][0] and rows[0][1] else None

    return wait_for(published, 30, f"track {track_id}'s record")


def on_pds(pds: Any, uri: str) -> str | None:
    """The CID of the record at `uri` on the PDS, or None."""
    did, collection, rkey = uri[len("at://"):].split("/")
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                  params={"repo": did, "collection": collection, "rkey": rkey}, timeout=10)
    return r.json()["cid"] if r.status_code == 200 else None


@pytest.fixture(scope="module")
def tracks(node, alice, bob, tmp_path_factory) -> dict[str, list[int]]:
    """Four tracks by alice, two by bob, each published as a record lists can reference."""
    tmp = tmp_path_factory.mktemp("audio")
    made = {"alice": [upload(node, alice, tmp, f"alice {i}", 220 + 55 * i) for i in range(4)],
            "bob": [upload(node, bob, tmp, f"bob {i}", 700 + 40 * i) for i in range(2)]}
    for ids in made.values():
        for track_id in ids:
            ensure_record(node, track_id)
    return made


def strong_ref(node: ServedNode, track_id: int) -> dict[str, str]:
    (uri, cid), = db_rows(node, "SELECT record_uri, record_cid FROM tracks WHERE id = ?", (track_id,))
    return {"uri": uri, "cid": cid}


def gif_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "GIF")
    return buf.getvalue()


def webp_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 99, 199)).save(buf, "WEBP")
    return buf.getvalue()


def blob_count(node: ServedNode, *shas: str | None) -> int:
    wanted = [s for s in shas if s]
    marks = ",".join("?" * len(wanted))
    return db_rows(node, f"SELECT count(*) FROM blobs WHERE sha256 IN ({marks})", tuple(wanted))[0][0]


def sha_of(url: str | None) -> str | None:
    return url.rsplit("/", 1)[1] if url else None


# ---- albums ---------------------------------------------------------------------------------------------------


def test_album_lifecycle_and_its_record(node, pds, alice, carol, tracks) -> None:
    a0, a1, a2, _ = tracks["alice"]
    r = alice.call("POST", "/albums/", json={"title": "Night Drive: Vol. 1", "description": "late"})
    assert r.status_code == 200, r.text
    album = r.json()
    assert album["slug"] == "night-drive-vol-1" and album["title"] == "Night Drive: Vol. 1"
    assert album["artist_did"] == alice.did and album["artist_handle"] == alice.handle
    assert album["track_count"] == 0 and album["list_uri"] is None and album["description"] == "late"
    uuid.UUID(album["id"])
    album_id = album["id"]

    # an empty album is a shell: no record yet, hidden from the public listings, shown to its artist
    assert all(a["id"] != album_id for a in carol.http.get("/albums/").json()["albums"])
    assert all(a["id"] != album_id for a in carol.http.get(f"/albums/{alice.handle}").json()["albums"])
    assert any(a["id"] == album_id for a in alice.http.get(f"/albums/{alice.handle}").json()["albums"])

    # tracks in: add at the end, add at a position, then the record names them in order
    r = alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a0})
    assert r.status_code == 200, r.text
    r = alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a1, "position": 0})
    assert r.status_code == 200 and r.json()["track_count"] == 2
    uri = r.json()["list_uri"]
    assert uri and uri.startswith(f"at://{alice.did}/{LIST}/")
    order = [strong_ref(node, a1), strong_ref(node, a0)]
    value = pds_list(pds, alice.did, uri, lambda v: len(v["items"]) == 2)
    assert value["listType"] == "album" and value["name"] == "Night Drive: Vol. 1"
    assert refs(value) == [(o["uri"], o["cid"]) for o in order]
    assert value["_cid"] == r.json()["atproto_record_cid"]  # the CID computed locally is the PDS's
    # the strongRefs name the tracks' own records, as the PDS holds them
    for ref in order:
        assert wait_for(lambda ref=ref: on_pds(pds, ref["uri"]), 30, "the track record") == ref["cid"]

    # explicit order replaces the list: a2 first, a0 next, a1 left out (orphaned, not deleted)
    r = alice.call("PUT", f"/albums/{album_id}/tracks", json={"track_ids": [a2, a0]})
    assert r.status_code == 200 and r.json()["track_count"] == 2
    detail = carol.http.get(f"/albums/{alice.handle}/night-drive-vol-1").json()
    assert [t["id"] for t in detail["tracks"]] == [a2, a0]
    assert detail["metadata"]["id"] == album_id and detail["metadata"]["track_count"] == 2
    assert carol.http.get(f"/tracks/{a1}").status_code == 200
    expected = [tuple(strong_ref(node, t).values()) for t in (a2, a0)]
    pds_list(pds, alice.did, uri, lambda v: refs(v) == expected)
    # the artist's page lists it now, and so does the node-wide listing
    assert any(a["id"] == album_id for a in carol.http.get(f"/albums/{alice.handle}").json()["albums"])
    assert any(a["id"] == album_id for a in carol.http.get("/albums/").json()["albums"])
    # artist pages accept a DID too
    assert carol.http.get(f"/albums/{alice.did}/night-drive-vol-1").status_code == 200

    # finalize (plyr.fm's multi-track upload): tracks not named keep their place in front, named ones follow
    r = alice.call("POST", f"/albums/{album_id}/finalize", json={"track_ids": [a1]})
    assert r.status_code == 200 and r.json()["track_count"] == 3
    detail = carol.http.get(f"/albums/{alice.handle}/night-drive-vol-1").json()
    assert [t["id"] for t in detail["tracks"]] == [a2, a0, a1]

    # remove one: it stays a track
    r = alice.call("DELETE", f"/albums/{album_id}/tracks/{a0}")
    assert r.status_code == 200 and r.json() == {"removed": True, "track_id": a0}
    expected = [tuple(strong_ref(node, t).values()) for t in (a2, a1)]
    pds_list(pds, alice.did, uri, lambda v: refs(v) == expected)

    # title and description change; the slug stays unless asked, and the record's name follows the title
    r = alice.call("PATCH", f"/albums/{album_id}", json={"title": "Night Drive", "description": ""})
    assert r.status_code == 200 and r.json()["slug"] == "night-drive-vol-1"
    assert r.json()["title"] == "Night Drive" and r.json()["description"] is None
    pds_list(pds, alice.did, uri, lambda v: v["name"] == "Night Drive" and refs(v) == expected)
    r = alice.call("PATCH", f"/albums/{album_id}?title=Night+Drive+II&slug=night-drive-2")  # plyr.fm's query form
    assert r.status_code == 200 and r.json()["slug"] == "night-drive-2" and r.json()["title"] == "Night Drive II"
    assert carol.http.get(f"/albums/{alice.handle}/night-drive-vol-1").status_code == 404
    assert carol.http.get(f"/albums/{alice.handle}/night-drive-2").status_code == 200
    assert r.json()["list_uri"] == uri  # same record, rewritten

    # delete without cascade: the tracks stay, the record goes
    r = alice.call("DELETE", f"/albums/{album_id}")
    assert r.status_code == 200 and r.json() == {"deleted": True, "cascade": False, "deleted_track_ids": []}
    assert carol.http.get(f"/albums/{alice.handle}/night-drive-2").status_code == 404
    assert all(carol.http.get(f"/tracks/{t}").status_code == 200 for t in (a0, a1, a2))
    wait_gone(pds, alice.did, uri)
    assert db_rows(node, "SELECT count(*) FROM album_tracks WHERE album_id = ?", (album_id,)) == [(0,)]


def test_album_bad_input(node, pds, alice, tracks) -> None:
    a3 = tracks["alice"][3]
    cases = [
        ({"title": "x" * 257}, 400, "256"),
        ({"title": "   "}, 400, "title"),
        ({}, 400, "title"),
        ({"title": "ok", "slug": "---"}, 400, "slug"),
        ({"title": "ok", "description": "d" * 5001}, 400, "5000"),
    ]
    for body, status, words in cases:
        r = alice.call("POST", "/albums/", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["detail"]
    r = alice.call("POST", "/albums/", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = alice.call("POST", "/albums/", json={"title": "!!!"})  # no letters: the slug comes from the id
    assert r.status_code == 200 and r.json()["slug"] == f"album-{r.json()['id'][:8]}"
    assert alice.call("DELETE", f"/albums/{r.json()['id']}").status_code == 200

    # a 256-character title is fine; its record name is cut to the lexicon's 64 characters
    long_title = "é" * 256
    r = alice.call("POST", "/albums/", json={"title": long_title})
    assert r.status_code == 200 and r.json()["title"] == long_title
    long_id = r.json()["id"]

    r = alice.call("POST", "/albums/", json={"title": "Same Name"})
    assert r.status_code == 200
    album_id = r.json()["id"]
    r = alice.call("POST", "/albums/", json={"title": "same name!"})  # same slug
    assert r.status_code == 409 and "same-name" in r.json()["detail"]
    r = alice.call("PATCH", f"/albums/{long_id}", json={"slug": "same-name"})
    assert r.status_code == 409
    r = alice.call("PATCH", f"/albums/{album_id}", json={"title": "y" * 257})
    assert r.status_code == 400
    r = alice.call("PATCH", f"/albums/{album_id}", json={"colour": "red"})
    assert r.status_code == 400

    # ids: malformed is 400, unknown is 404, for every album route
    unknown = str(uuid.uuid4())
    for method, path, kwargs in [
        ("PATCH", "/albums/{}", {"json": {"title": "t"}}),
        ("DELETE", "/albums/{}", {}),
        ("POST", "/albums/{}/tracks", {"json": {"track_id": a3}}),
        ("PUT", "/albums/{}/tracks", {"json": {"track_ids": [a3]}}),
        ("POST", "/albums/{}/finalize", {"json": {"track_ids": [a3]}}),
        ("DELETE", "/albums/{}/tracks/" + str(a3), {}),
        ("DELETE", "/albums/{}/cover", {}),
    ]:
        assert alice.call(method, path.format("not-a-uuid"), **kwargs).status_code == 400, path
        assert alice.call(method, path.format(unknown), **kwargs).status_code == 404, path
    assert alice.http.get(f"/albums/{alice.handle}/no-such-album").status_code == 404
    assert alice.http.get("/albums/nobody.example.com").status_code == 404

    # track lists: wrong types, repeats, unknown tracks, positions out of range
    for body in ({"track_ids": "1,2"}, {"track_ids": [a3, a3]}, {"track_ids": [True]}):
        assert alice.call("PUT", f"/albums/{album_id}/tracks", json=body).status_code == 400
    assert alice.call("PUT", f"/albums/{album_id}/tracks", json={"track_ids": [999999]}).status_code == 404
    assert alice.call("POST", f"/albums/{album_id}/finalize", json={"track_ids": []}).status_code == 400
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": "3"}).status_code == 400
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a3, "position": 5}).status_code == 400
    r = alice.call("DELETE", f"/albums/{album_id}/tracks/{a3}")
    assert r.status_code == 400 and "not on this album" in r.json()["detail"]

    # a track is on one album at most
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a3}).status_code == 200
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a3}).status_code == 409
    r = alice.call("POST", f"/albums/{long_id}/tracks", json={"track_id": a3})
    assert r.status_code == 409 and "Same Name" in r.json()["detail"]

    # a track without a record cannot be referenced yet (an MP3 is published at once, so the test clears the
    # record columns with a direct SQL update on the node's database, then puts them back)
    a2 = tracks["alice"][2]
    saved = db_rows(node, "SELECT record_uri FROM tracks WHERE id = ?", (a2,))[0][0]
    db_write(node, "UPDATE tracks SET record_uri = NULL WHERE id = ?", (a2,))
    try:
        r = alice.call("POST", f"/albums/{long_id}/tracks", json={"track_id": a2})
        assert r.status_code == 400 and "record" in r.json()["detail"]
    finally:
        db_write(node, "UPDATE tracks SET record_uri = ? WHERE id = ?", (saved, a2))

    # the long title's record name is cut to the lexicon's 64 characters
    r = alice.call("POST", f"/albums/{long_id}/tracks", json={"track_id": tracks["alice"][1]})
    assert r.status_code == 200
    pds_list(pds, alice.did, r.json()["list_uri"], lambda v: v["name"] == "é" * 64)
    for a in (album_id, long_id):
        assert alice.call("DELETE", f"/albums/{a}").status_code == 200


def test_album_authorization(node, alice, bob, carol, tracks) -> None:
    a0 = tracks["alice"][0]
    album_id = alice.call("POST", "/albums/", json={"title": "Mine"}).json()["id"]
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": a0}).status_code == 200
    cover = {"image": ("c.png", png_bytes(64, 64), "image/png")}
    mutations = [
        ("PATCH", f"/albums/{album_id}", {"json": {"title": "Theirs"}}),
        ("POST", f"/albums/{album_id}/tracks", {"json": {"track_id": tracks["bob"][0]}}),
        ("PUT", f"/albums/{album_id}/tracks", {"json": {"track_ids": []}}),
        ("POST", f"/albums/{album_id}/finalize", {"json": {"track_ids": [tracks["bob"][0]]}}),
        ("DELETE", f"/albums/{album_id}/tracks/{a0}", {}),
        ("POST", f"/albums/{album_id}/cover", {"files": cover}),
        ("DELETE", f"/albums/{album_id}/cover", {}),
        ("DELETE", f"/albums/{album_id}?cascade=true", {}),
    ]
    for method, path, kwargs in mutations:
        r = bob.call(method, path, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
        r = httpx.request(method, node.url + path, **kwargs)
        assert r.status_code == 401, (method, path, r.text)
        r = alice.http.request(method, path, **kwargs)  # a cookie without the CSRF header
        assert r.status_code == 403 and "CSRF" in r.json()["detail"], (method, path)
    assert httpx.post(node.url + "/albums/", json={"title": "anon"}).status_code == 401

    # only the artist's own tracks go on an album
    r = alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": tracks["bob"][0]})
    assert r.status_code == 403 and "not yours" in r.json()["detail"]
    r = alice.call("PUT", f"/albums/{album_id}/tracks", json={"track_ids": [a0, tracks["bob"][1]]})
    assert r.status_code == 403
    detail = carol.http.get(f"/albums/{alice.handle}/mine").json()
    assert [t["id"] for t in detail["tracks"]] == [a0] and detail["metadata"]["title"] == "Mine"
    assert alice.call("DELETE", f"/albums/{album_id}").status_code == 200


def test_album_cover(node, alice, carol) -> None:
    album = alice.call("POST", "/albums/", json={"title": "Covered"}).json()
    album_id = album["id"]
    assert album["image_url"] is None

    r = alice.call("POST", f"/albums/{album_id}/cover", files={"image": ("c.png", png_bytes(300, 200), "image/png")})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["image_id"] and first["image_url"] and first["thumbnail_url"]
    thumb = carol.http.get(first["thumbnail_url"].split(node.url)[1])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    original = first["image_id"]
    assert carol.http.get(f"/lists/covers/{original}").headers["content-type"] == "image/png"
    first_shas = (original, sha_of(first["image_url"]), sha_of(first["thumbnail_url"]))
    assert db_rows(node, "SELECT refcount FROM blobs WHERE sha256 = ?", (original,)) == [(1,)]

    # replacing the cover releases the old files
    r = alice.call("POST", f"/albums/{album_id}/cover", files={"image": ("c.webp", webp_bytes(), "image/webp")})
    assert r.status_code == 200
    assert blob_count(node, *first_shas) == 0
    assert carol.http.get(f"/lists/covers/{original}").status_code == 404
    r = alice.call("POST", f"/albums/{album_id}/cover", files={"image": ("c.jpg", jpeg_bytes(50, 50), "image/jpeg")})
    assert r.status_code == 200
    metadata = carol.http.get(f"/albums/{alice.handle}/covered").json()["metadata"]
    assert metadata["image_url"] == r.json()["image_url"]

    # refused: GIF (even named .png), not an image, no image part; nothing is left behind
    before = db_rows(node, "SELECT count(*) FROM blobs")[0][0]
    for files, status in [
        ({"image": ("c.gif", gif_bytes(), "image/gif")}, 415),
        ({"image": ("c.png", gif_bytes(), "image/png")}, 415),
        ({"image": ("c.png", b"not an image at all", "image/png")}, 415),
        ({"picture": ("c.png", png_bytes(), "image/png")}, 400),
    ]:
        r = alice.call("POST", f"/albums/{album_id}/cover", files=files)
        assert r.status_code == status, r.text
    assert "GIF" in alice.call("POST", f"/albums/{album_id}/cover",
                               files={"image": ("c.gif", gif_bytes(), "image/gif")}).json()["detail"]
    assert db_rows(node, "SELECT count(*) FROM blobs")[0][0] == before

    # removing the cover, then deleting the album, leaves no cover files
    current = r = alice.call("DELETE", f"/albums/{album_id}/cover")
    assert current.status_code == 200 and current.json()["image_url"] is None
    r = alice.call("POST", f"/albums/{album_id}/cover", files={"image": ("c.png", png_bytes(90, 90), "image/png")})
    shas = (r.json()["image_id"], sha_of(r.json()["image_url"]), sha_of(r.json()["thumbnail_url"]))
    assert blob_count(node, *shas) == 3
    assert alice.call("DELETE", f"/albums/{album_id}").status_code == 200
    assert blob_count(node, *shas) == 0


def test_album_cover_over_the_size_limit(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=clean_env(
        PLYRD_ATPROTO_PLC_URL=pds.plc_url, PLYRD_ATPROTO_HANDLE_RESOLVER_URL=pds.pds_url,
        PLYRD_ATPROTO_ALLOW_PRIVATE_ADDRESSES="true", PLYRD_MEDIA_MAX_IMAGE_MB="1"))
    try:
        who = sign_in(served.url, pds.create_account("bigcover"))
        album_id = who.call("POST", "/albums/", json={"title": "Big"}).json()["id"]
        big = png_bytes(16, 16) + b"\0" * (1024 * 1024 + 10)
        r = who.call("POST", f"/albums/{album_id}/cover", files={"image": ("c.png", big, "image/png")})
        assert r.status_code == 413
        assert not db_rows(served, "SELECT count(*) FROM blobs WHERE mime LIKE 'image/%'")[0][0]
    finally:
        served.stop()


def test_album_cascade_delete(node, pds, alice, carol, tmp_path: Path) -> None:
    ids = [upload(node, alice, tmp_path, f"doomed {i}", 1200 + 100 * i) for i in range(2)]
    for track_id in ids:
        ensure_record(node, track_id)
    keep = alice.call("POST", "/albums/", json={"title": "Doomed"}).json()["id"]
    r = alice.call("PUT", f"/albums/{keep}/tracks", json={"track_ids": ids})
    uri = r.json()["list_uri"]
    pds_list(pds, alice.did, uri, lambda v: len(v["items"]) == 2)
    r = alice.call("DELETE", f"/albums/{keep}?cascade=maybe")
    assert r.status_code == 400
    r = alice.call("DELETE", f"/albums/{keep}?cascade=true")
    assert r.status_code == 200 and r.json() == {"deleted": True, "cascade": True, "deleted_track_ids": ids}
    assert all(carol.http.get(f"/tracks/{t}").status_code == 404 for t in ids)
    wait_gone(pds, alice.did, uri)


def test_deleting_a_member_track_drops_it_from_the_album(node, alice, carol, tmp_path: Path) -> None:
    track_id = upload(node, alice, tmp_path, "short lived", 1900)
    ensure_record(node, track_id)
    album_id = alice.call("POST", "/albums/", json={"title": "Survivor"}).json()["id"]
    assert alice.call("POST", f"/albums/{album_id}/tracks", json={"track_id": track_id}).status_code == 200
    assert alice.call("DELETE", f"/tracks/{track_id}").status_code == 204
    detail = carol.http.get(f"/albums/{alice.handle}/survivor").json()
    assert detail["tracks"] == [] and detail["metadata"]["track_count"] == 0
    assert alice.call("DELETE", f"/albums/{album_id}").status_code == 200


# ---- playlists ------------------------------------------------------------------------------------------------


def make_playlist(who: User, name: str, *, private: bool = False) -> dict[str, Any]:
    r = who.call("POST", "/lists/playlists", json={"name": name, "is_private": private})
    assert r.status_code == 200, r.text
    return r.json()


def test_playlist_lifecycle_and_its_record(node, pds, alice, bob, carol, tracks) -> None:
    p = make_playlist(carol, "road trip")
    uuid.UUID(p["id"])
    assert p["owner_did"] == carol.did and p["owner_handle"] == carol.handle
    assert p["is_private"] is False and p["show_on_profile"] is False and p["track_count"] == 0
    uri = p["atproto_record_uri"]
    assert uri and uri.startswith(f"at://{carol.did}/{LIST}/")
    value = pds_list(pds, carol.did, uri)
    assert value["listType"] == "playlist" and value["name"] == "road trip" and value["items"] == []

    # anyone's tracks, by strongRef (plyr.fm's body) or by id
    a0, b0 = strong_ref(node, tracks["alice"][0]), strong_ref(node, tracks["bob"][0])
    r = carol.call("POST", f"/lists/playlists/{p['id']}/tracks", json={"track_uri": a0["uri"], "track_cid": a0["cid"]})
    assert r.status_code == 200 and r.json()["track_count"] == 1
    r = carol.call("POST", f"/lists/playlists/{p['id']}/tracks", json={"track_id": tracks["bob"][0]})
    assert r.status_code == 200 and r.json()["track_count"] == 2
    a1 = strong_ref(node, tracks["alice"][1])
    r = carol.call("POST", f"/lists/playlists/{p['id']}/tracks", json={"track_uri": a1["uri"]})  # cid: the current
    assert r.status_code == 200
    order = [a0, b0, a1]
    pds_list(pds, carol.did, uri, lambda v: refs(v) == [(o["uri"], o["cid"]) for o in order])

    detail = bob.http.get(f"/lists/playlists/{p['id']}").json()
    assert [t["id"] for t in detail["tracks"]] == [tracks["alice"][0], tracks["bob"][0], tracks["alice"][1]]
    assert detail["items"][0] == {**a0, "track_id": tracks["alice"][0]}
    assert httpx.get(f"{node.url}/lists/playlists/{p['id']}/meta").json()["name"] == "road trip"
    assert httpx.get(f"{node.url}/lists/playlists/by-uri", params={"uri": uri}).json()["id"] == p["id"]

    # reorder: exactly the current items, each once
    r = carol.call("PUT", f"/lists/playlists/{p['id']}/reorder", json={"items": [a1, a0, b0]})
    assert r.status_code == 200, r.text
    order = [a1, a0, b0]
    value = pds_list(pds, carol.did, uri, lambda v: refs(v) == [(o["uri"], o["cid"]) for o in order])
    assert value["_cid"] == carol.http.get(f"/lists/playlists/{p['id']}").json()["atproto_record_cid"]
    for wrong in ([a1, a0], [a1, a0, b0, a0], [a1, a0, strong_ref(node, tracks["alice"][2])], [a1, a1, a0], "x"):
        r = carol.call("PUT", f"/lists/playlists/{p['id']}/reorder", json={"items": wrong})
        assert r.status_code == 400, wrong
    detail = carol.http.get(f"/lists/playlists/{p['id']}").json()
    assert [i["uri"] for i in detail["items"]] == [o["uri"] for o in order]  # nothing changed

    # remove by URI (the path keeps at://'s double slash)
    r = carol.call("DELETE", f"/lists/playlists/{p['id']}/tracks/{a0['uri']}")
    assert r.status_code == 200 and r.json()["track_count"] == 2
    r = carol.call("DELETE", f"/lists/playlists/{p['id']}/tracks/{a0['uri']}")
    assert r.status_code == 404
    order = [a1, b0]
    pds_list(pds, carol.did, uri, lambda v: refs(v) == [(o["uri"], o["cid"]) for o in order])

    # rename (JSON or plyr.fm's form), show on profile
    r = carol.call("PATCH", f"/lists/playlists/{p['id']}", data={"name": "road trip 2", "show_on_profile": "true"})
    assert r.status_code == 200 and r.json()["name"] == "road trip 2" and r.json()["show_on_profile"] is True
    pds_list(pds, carol.did, uri, lambda v: v["name"] == "road trip 2" and len(v["items"]) == 2)
    public = httpx.get(f"{node.url}/lists/playlists/by-artist/{carol.did}").json()
    assert [x["id"] for x in public] == [p["id"]]

    # delete: row and record
    r = carol.call("DELETE", f"/lists/playlists/{p['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": True}
    assert carol.http.get(f"/lists/playlists/{p['id']}").status_code == 404
    wait_gone(pds, carol.did, uri)


def test_private_playlists_and_privacy_transitions(node, pds, alice, bob, carol, tracks) -> None:
    secret = make_playlist(carol, "secret mix", private=True)
    assert secret["is_private"] is True and secret["atproto_record_uri"] is None
    pid = secret["id"]
    for track_id in tracks["alice"][:3]:
        assert carol.call("POST", f"/lists/playlists/{pid}/tracks", json={"track_id": track_id}).status_code == 200
    items = carol.http.get(f"/lists/playlists/{pid}").json()["items"]
    r = carol.call("PUT", f"/lists/playlists/{pid}/reorder", json={"items": list(reversed(items))})
    assert r.status_code == 200
    assert carol.call("PATCH", f"/lists/playlists/{pid}", json={"name": "secret mix 2"}).status_code == 200

    # nobody but the owner sees it: 404 (not 403) signed out, for others, in listings
    for client in (httpx.Client(base_url=node.url), bob.http):
        assert client.get(f"/lists/playlists/{pid}").status_code == 404
        assert client.get(f"/lists/playlists/{pid}/meta").status_code == 404
    assert pid not in {x["id"] for x in httpx.get(f"{node.url}/lists/playlists/by-artist/{carol.did}").json()}
    own = {x["id"]: x for x in carol.http.get("/lists/playlists").json()}
    assert own[pid]["is_private"] is True and own[pid]["track_count"] == 3
    # ...and mutations by others answer 404 too, changing nothing
    for method, path, kwargs in playlist_mutations(pid, tracks):
        r = bob.call(method, path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
    assert carol.http.get(f"/lists/playlists/{pid}").json()["name"] == "secret mix 2"

    # never on the PDS, nor queued for it
    names = {v.get("name") for v in pds_lists(pds, carol.did).values()}
    assert not {"secret mix", "secret mix 2"} & names
    assert not db_rows(node, "SELECT seq FROM outbox WHERE did = ? AND record LIKE '%secret mix%'", (carol.did,))

    # private -> public publishes the current items in order; public -> private deletes the record
    r = carol.call("PATCH", f"/lists/playlists/{pid}", json={"is_private": False})
    assert r.status_code == 200 and r.json()["is_private"] is False
    uri = r.json()["atproto_record_uri"]
    expected = [(i["uri"], i["cid"]) for i in reversed(items)]
    value = pds_list(pds, carol.did, uri, lambda v: refs(v) == expected)
    assert value["name"] == "secret mix 2"
    assert bob.http.get(f"/lists/playlists/{pid}").status_code == 200

    r = carol.call("PATCH", f"/lists/playlists/{pid}", json={"is_private": True})
    assert r.status_code == 200 and r.json()["atproto_record_uri"] is None
    wait_gone(pds, carol.did, uri)
    assert bob.http.get(f"/lists/playlists/{pid}").status_code == 404
    assert httpx.get(f"{node.url}/lists/playlists/by-uri", params={"uri": uri}).status_code == 404

    # public again: a new record; then delete it as a private playlist (nothing to delete on the PDS)
    r = carol.call("PATCH", f"/lists/playlists/{pid}", json={"is_private": "true"})
    assert r.status_code == 200
    r = carol.call("PATCH", f"/lists/playlists/{pid}", json={"is_private": False})
    uri2 = r.json()["atproto_record_uri"]
    assert uri2 and uri2 != uri
    pds_list(pds, carol.did, uri2, lambda v: len(v["items"]) == 3)
    assert carol.call("PATCH", f"/lists/playlists/{pid}", json={"is_private": True}).status_code == 200
    wait_gone(pds, carol.did, uri2)
    assert carol.call("DELETE", f"/lists/playlists/{pid}").status_code == 200
    assert carol.http.get(f"/lists/playlists/{pid}").status_code == 404


def playlist_mutations(pid: str, tracks: dict[str, list[int]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("PATCH", f"/lists/playlists/{pid}", {"json": {"name": "mine now"}}),
        ("PATCH", f"/lists/playlists/{pid}", {"json": {"is_private": False}}),
        ("POST", f"/lists/playlists/{pid}/tracks", {"json": {"track_id": tracks["bob"][1]}}),
        ("DELETE", f"/lists/playlists/{pid}/tracks/at://did:plc:x/fm.plyr.track/3l2k", {}),
        ("PUT", f"/lists/playlists/{pid}/reorder", {"json": {"items": []}}),
        ("POST", f"/lists/playlists/{pid}/cover", {"files": {"image": ("c.png", png_bytes(), "image/png")}}),
        ("DELETE", f"/lists/playlists/{pid}/cover", {}),
        ("DELETE", f"/lists/playlists/{pid}", {}),
    ]


def test_playlist_authorization(node, alice, bob, carol, tracks) -> None:
    p = make_playlist(carol, "carol's")
    for method, path, kwargs in playlist_mutations(p["id"], tracks):
        r = bob.call(method, path, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
        r = httpx.request(method, node.url + path, **kwargs)
        assert r.status_code == 401, (method, path, r.text)
        r = carol.http.request(method, path, **kwargs)  # a cookie without the CSRF header
        assert r.status_code == 403 and "CSRF" in r.json()["detail"], (method, path)
    assert httpx.post(f"{node.url}/lists/playlists", json={"name": "anon"}).status_code == 401
    assert httpx.get(f"{node.url}/lists/playlists").status_code == 401
    detail = httpx.get(f"{node.url}/lists/playlists/{p['id']}").json()  # public: anyone may look
    assert detail["name"] == "carol's" and detail["tracks"] == []
    assert carol.call("DELETE", f"/lists/playlists/{p['id']}").status_code == 200


def test_playlist_bad_input(node, carol, tracks) -> None:
    for body, words in [({"name": "n" * 65}, "64"), ({"name": "é" * 65}, "64"), ({"name": " "}, "name"), ({}, "name"),
                        ({"name": "ok", "is_private": "perhaps"}, "is_private")]:
        r = carol.call("POST", "/lists/playlists", json=body)
        assert r.status_code == 400 and words in r.json()["detail"], body
    # 64 characters are fine even when they are many code points (a combining accent each)
    p = make_playlist(carol, "e\u0301" * 64, private=True)
    pid = p["id"]
    assert carol.call("PATCH", f"/lists/playlists/{pid}", json={"name": "x" * 65}).status_code == 400
    assert carol.call("PATCH", f"/lists/playlists/{pid}", json={"owner_did": "did:plc:me"}).status_code == 400
    assert carol.call("PATCH", f"/lists/playlists/{pid}", json={"show_on_profile": "sometimes"}).status_code == 400

    unknown = str(uuid.uuid4())
    reads = [("GET", "/lists/playlists/{}", {}), ("GET", "/lists/playlists/{}/meta", {})]
    for method, path, kwargs in [*playlist_mutations("{}", tracks), *reads]:
        for bad in ("not-a-uuid", "12345678-1234-1234-1234-1234567890zz"):
            r = carol.call(method, path.replace("{}", bad), **kwargs)
            assert r.status_code == 400 and "UUID" in r.json()["detail"], (method, path)
        assert carol.call(method, path.replace("{}", unknown), **kwargs).status_code == 404, (method, path)

    a0 = strong_ref(node, tracks["alice"][0])
    for body, status in [
        ({}, 400),
        ({"track_uri": "https://example.com/x"}, 400),
        ({"track_uri": a0["uri"], "track_cid": "not-a-cid"}, 400),
        ({"track_uri": f"at://{carol.did}/fm.plyr.track/3kzzzzzzzzzzz"}, 404),
        ({"track_id": 10**9}, 404),
        ({"track_id": "1"}, 400),
    ]:
        r = carol.call("POST", f"/lists/playlists/{pid}/tracks", json=body)
        assert r.status_code == status, (body, r.text)
    r = carol.call("POST", f"/lists/playlists/{pid}/tracks", json={"track_id": tracks["alice"][0]})
    assert r.status_code == 200
    r = carol.call("POST", f"/lists/playlists/{pid}/tracks", json={"track_uri": a0["uri"], "track_cid": a0["cid"]})
    assert r.status_code == 400 and "already" in r.json()["detail"]
    assert carol.http.get("/lists/playlists/by-uri").status_code == 400
    assert carol.call("DELETE", f"/lists/playlists/{pid}").status_code == 200


def test_playlist_holds_at_most_500_items(node, pds, carol, tracks) -> None:
    p = make_playlist(carol, "huge")
    pid = p["id"]
    # 498 items straight into the database (500 real uploads would take minutes); they name made-up records.
    filler = [(pid, i, None, records.at_uri(carol.did, "fm.plyr.track", tids.new_tid()),
               cbor.record_cid({"$type": "filler", "i": i})) for i in range(498)]
    db_write(node, "INSERT INTO playlist_items(playlist_id, position, track_id, track_uri, track_cid)"
             " VALUES (?, ?, ?, ?, ?)", filler, many=True)
    for track_id in tracks["alice"][:2]:  # the 499th and 500th through the API
        r = carol.call("POST", f"/lists/playlists/{pid}/tracks", json={"track_id": track_id})
        assert r.status_code == 200, r.text
    assert r.json()["track_count"] == 500
    r = carol.call("POST", f"/lists/playlists/{pid}/tracks", json={"track_id": tracks["alice"][2]})
    assert r.status_code == 400 and "500" in r.json()["detail"]
    assert carol.http.get(f"/lists/playlists/{pid}").json()["track_count"] == 500
    # the full record is valid (at the lexicon's limit) and on the PDS, the API's two last
    value = pds_list(pds, carol.did, p["atproto_record_uri"], lambda v: len(v["items"]) == 500)
    assert value["items"][-1]["subject"] == strong_ref(node, tracks["alice"][1])
    # deleted tracks' items stay in order; the track list shows only the tracks that exist
    detail = carol.http.get(f"/lists/playlists/{pid}").json()
    assert len(detail["items"]) == 500 and [t["id"] for t in detail["tracks"]] == tracks["alice"][:2]
    assert carol.call("DELETE", f"/lists/playlists/{pid}").status_code == 200
    assert db_rows(node, "SELECT count(*) FROM playlist_items WHERE playlist_id = ?", (pid,)) == [(0,)]


def test_playlist_cover(node, carol, bob) -> None:
    p = make_playlist(carol, "with art")
    pid = p["id"]
    cover = {"image": ("c.jpg", jpeg_bytes(200, 200), "image/jpeg")}
    r = carol.call("POST", f"/lists/playlists/{pid}/cover", files=cover)
    assert r.status_code == 200, r.text
    shas = (r.json()["image_id"], sha_of(r.json()["image_url"]), sha_of(r.json()["thumbnail_url"]))
    assert bob.http.get(r.json()["image_url"].split(node.url)[1]).status_code == 200
    assert bob.http.get(f"/lists/playlists/{pid}").json()["image_url"] == r.json()["image_url"]
    r = carol.call("POST", f"/lists/playlists/{pid}/cover", files={"image": ("c.gif", gif_bytes(), "image/gif")})
    assert r.status_code == 415
    r = carol.call("DELETE", f"/lists/playlists/{pid}/cover")
    assert r.status_code == 200 and r.json()["image_url"] is None and r.json()["thumbnail_url"] is None
    assert blob_count(node, *shas) == 0
    # a private playlist's cover is the owner's alone to change
    secret = make_playlist(carol, "hidden art", private=True)
    r = bob.call("POST", f"/lists/playlists/{secret['id']}/cover", files={"image": ("c.png", png_bytes(), "image/png")})
    assert r.status_code == 404
    for x in (pid, secret["id"]):
        assert carol.call("DELETE", f"/lists/playlists/{x}").status_code == 200


def test_a_deleted_track_leaves_its_item_in_the_playlist(node, pds, alice, carol, tmp_path: Path) -> None:
    track_id = upload(node, alice, tmp_path, "gone soon", 1500)
    ref = ensure_record(node, track_id)
    p = make_playlist(carol, "remembers")
    assert carol.call("POST", f"/lists/playlists/{p['id']}/tracks", json={"track_id": track_id}).status_code == 200
    assert alice.call("DELETE", f"/tracks/{track_id}").status_code == 204
    detail = carol.http.get(f"/lists/playlists/{p['id']}").json()
    assert detail["tracks"] == [] and detail["items"] == [{"uri": ref[0], "cid": ref[1], "track_id": None}]
    # the owner can still remove it, by its URI
    r = carol.call("DELETE", f"/lists/playlists/{p['id']}/tracks/{ref[0]}")
    assert r.status_code == 200 and r.json()["track_count"] == 0
    pds_list(pds, carol.did, p["atproto_record_uri"], lambda v: v["items"] == [])
    assert carol.call("DELETE", f"/lists/playlists/{p['id']}").status_code == 200


# ---- pure helpers and the hooks other code calls --------------------------------------------------------------


@pytest.mark.parametrize(("title", "slug"), [
    ("Night Drive: Vol. 1", "night-drive-vol-1"),
    ("Café Déjà Vu", "cafe-deja-vu"),
    ("  --Hello__World--  ", "hello-world"),
    ("東京の夜", "東京の夜"),  # no Latin transliteration: the title's own letters
    ("x" * 150, "x" * 100),
    ("!!!", ""),
])
def test_slugify(title: str, slug: str) -> None:
    from plyrd.catalog.albums import slugify

    assert slugify(title) == slug


def test_record_names_fit_the_lexicon() -> None:
    from plyrd.catalog.lists import record_name

    assert record_name("short") == "short"
    assert record_name("a" * 300) == "a" * 64
    assert record_name("e\u0301" * 70) == "e\u0301" * 64  # cut between characters, never inside one
    assert len(record_name("😀" * 80).encode()) <= 256  # 4 bytes each: the byte limit binds first
    for name in (record_name("e\u0301" * 70), record_name("😀" * 80), record_name("ü" * 200)):
        records.list_record("album", name, [], created_at="2026-01-01T00:00:00.000Z")  # validates


async def test_account_deletion_can_release_cover_references(tmp_path: Path) -> None:
    """release_owned_covers, for account deletion: the covers' references go, so their files can be removed."""
    from plyrd.catalog.albums import release_owned_covers
    from plyrd.db import Database
    from plyrd.storage import BlobStore

    db = Database(tmp_path / "plyrd.db")
    await db.open()
    try:
        store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
        shas = [(await store.put_bytes(bytes([i]) * 10, "image/webp")).sha256 for i in range(3)]
        async with db.write() as conn:
            await conn.execute("INSERT INTO users(did) VALUES ('did:plc:gone')")
            for sha in shas * 2:
                await store.incref(conn, sha)
            await conn.execute("INSERT INTO albums(id, artist_did, slug, title, image_sha, image_mime, thumb_sha,"
                               " display_sha) VALUES (?, 'did:plc:gone', 's', 'T', ?, 'image/png', ?, ?)",
                               (str(uuid.uuid4()), *shas))
            await conn.execute("INSERT INTO playlists(id, owner_did, name, is_private, image_sha, image_mime,"
                               " thumb_sha, display_sha) VALUES (?, 'did:plc:gone', 'p', 1, ?, 'image/png', ?, ?)",
                               (str(uuid.uuid4()), *shas))
            released = await release_owned_covers(conn, store, "did:plc:gone")
        assert sorted(released) == sorted(shas)
        assert await store.remove_unreferenced(released) == 3
    finally:
        await db.close()


def test_an_upload_that_fails_in_the_end_takes_its_track_off_its_album(pds, tmp_path: Path) -> None:
    """An upload whose job ends failed loses its track, and an album holding that track has its record rewritten
    without it, as when the artist deletes the track. The failure here is what a crash during the job's last
    attempt leaves behind, which the node settles at start-up."""
    env = node_env(pds)
    served = start_node([], cwd=tmp_path, env=env)
    account = pds.create_account("unlucky")
    try:
        me = sign_in(served.url, account)
        kept, doomed = upload(served, me, tmp_path, "kept", 440), upload(served, me, tmp_path, "doomed", 550)
        album = me.call("POST", "/albums/", json={"title": "Half Lost"}).json()
        r = me.call("POST", f"/albums/{album['id']}/finalize", json={"track_ids": [kept, doomed]})
        assert r.status_code == 200, r.text
        album_uri = db_rows(served, "SELECT record_uri FROM albums WHERE id = ?", (album["id"],))[0][0]
        kept_ref = ensure_record(served, kept)
        pds_list(pds, me.did, album_uri, lambda v: refs(v) == [kept_ref, ensure_record(served, doomed)])
    finally:
        served.stop()
    db_write(served, "UPDATE jobs SET state = 'failed', error = 'interrupted: the node stopped during attempt 3 of 3'"
                     " WHERE id = (SELECT job_id FROM uploads WHERE track_id = ?)", (doomed,))

    restarted = start_node([], cwd=tmp_path, env=env, log_path=tmp_path / "restarted.log")
    try:
        sign_in(restarted.url, account)  # a session for the outbox to write with
        wait_for(lambda: db_rows(restarted, "SELECT id FROM tracks") == [(kept,)], 30, "the failed upload's track gone")
        pds_list(pds, me.did, album_uri, lambda v: refs(v) == [kept_ref])
    finally:
        restarted.stop()


def test_album_download_is_a_zip_of_the_originals_in_order(node, alice, carol, tmp_path: Path) -> None:
    import zipfile

    first = upload(node, alice, tmp_path, "side a", 1234)
    r = alice.call("PATCH", f"/tracks/{first}", files={"title": (None, "Side A/B")})  # a slash must not make a folder
    assert r.status_code == 200, r.text
    second = upload(node, alice, tmp_path, "coda", 1357)
    album = alice.call("POST", "/albums/", json={"title": "Zip Me"}).json()
    slug = album["slug"]
    assert carol.http.get(f"/albums/{alice.handle}/{slug}/download").status_code == 404  # nothing in it yet
    assert alice.call("POST", f"/albums/{album['id']}/finalize", json={"track_ids": [second, first]}).status_code == 200
    assert alice.call("POST", f"/albums/{album['id']}/cover",
                      files={"image": ("c.png", png_bytes(64, 64), "image/png")}).status_code == 200

    r = carol.http.get(f"/albums/{alice.handle}/{slug}/download")  # anyone may download what anyone may play
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "Zip%20Me.zip" in r.headers["content-disposition"]
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    assert [n.split(" ", 1)[0] for n in names[:2]] == ["01", "02"] and names[2] == "cover.png", names
    assert names[0].endswith("- coda.mp3") and names[1].endswith("- Side A B.mp3"), names
    for name, track_id in zip(names[:2], (second, first), strict=True):
        original = carol.http.get(f"/tracks/{track_id}").json()["original_file_id"]
        assert z.read(name) == carol.http.get(f"/audio/{original}").content
    assert carol.http.get(f"/albums/{alice.handle}/no-such-album/download").status_code == 404
