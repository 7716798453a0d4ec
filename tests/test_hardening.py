"""What a hostile visitor tries, against a real node process and the real PDS: hostile URLs stored for others to
render, forged sign-ins from sandboxed pages, malformed input that used to end in a 500, refused uploads that left
their files behind, and keep-alive connections dropped without a word. Each test failed before its fix."""

from __future__ import annotations

import base64
import io
import json
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from conftest import node_fixture
from helpers import Artist, sign_in

node = node_fixture("hardening")

HOSTILE_URLS = [
    'https://x"onerror="alert(document.domain)"a="',
    "https://x/a b",
    "https://x.example/a'b",
    "https://x.example/<script>",
    "https://x.example/\\evil",
    "https://x.example/\x01",
    "javascript:alert(1)",
    "http://plain.example/a.png",
    "https://user:pass@x.example/a.png",
    "https://" + "a" * 64 + ".example/a.png",
    "https:///nohost",
    "//x.example/a.png",
]


@pytest.fixture(scope="module")
def owner(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("hard"))


@pytest.fixture
def anon(node):
    with httpx.Client(base_url=node.url, timeout=30) as http:
        yield http


def blob_files(data: Path) -> set[str]:
    return {p.name for p in (data / "blobs").rglob("*") if p.is_file()}


def referenced_blobs(data: Path) -> set[str]:
    with sqlite3.connect(f"file:{data / 'plyrd.db'}?mode=ro", uri=True) as db:
        return {r[0] for r in db.execute("SELECT sha256 FROM blobs WHERE refcount > 0")}


def leftovers(data: Path) -> tuple[set[str], list[str]]:
    """Files in blobs/ that no row references, and whatever is in tmp/."""
    tmp = [p.name for p in (data / "tmp").iterdir()] if (data / "tmp").is_dir() else []
    return blob_files(data) - referenced_blobs(data), tmp


def wait_clean(data: Path, timeout: float = 5) -> tuple[set[str], list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        found = leftovers(data)
        if not any(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# ---- 1. stored URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_avatar_urls_are_refused(node, owner, url) -> None:
    r = owner.http.patch("/artists/me", json={"avatar_url": url}, headers={"X-CSRF-Token": owner.csrf})
    assert r.status_code == 400, (url, r.status_code, r.text)
    assert "avatar_url" in r.json()["detail"]
    assert owner.http.get("/artists/me").json()["avatar_url"] != url


def test_a_plain_https_avatar_is_kept(node, owner) -> None:
    url = "https://cdn.example.com/avatars/me.png?size=256&v=2#x"
    r = owner.http.patch("/artists/me", json={"avatar_url": url}, headers={"X-CSRF-Token": owner.csrf})
    assert r.status_code == 200, r.text
    assert r.json()["avatar_url"] == url


def test_a_hostile_avatar_in_the_pds_profile_is_not_adopted(node, pds, owner) -> None:
    """A profile record is the user's, written by any app: reconcile keeps its bio but not an unsafe avatar."""
    account = pds.create_account("pdsprof")
    hostile = 'https://x"onerror="alert(1)"a="'
    session = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                         json={"identifier": account.handle, "password": account.password}).json()
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.putRecord",
                   headers={"Authorization": f"Bearer {session['accessJwt']}"},
                   json={"repo": session["did"], "collection": "fm.plyr.actor.profile", "rkey": "self",
                         "validate": False,
                         "record": {"$type": "fm.plyr.actor.profile", "bio": "hello from elsewhere",
                                    "avatar": hostile, "createdAt": "2026-01-01T00:00:00Z"}})
    assert r.status_code == 200, r.text
    user = sign_in(node.url, account)
    r = user.http.post("/sync/reconcile", headers={"X-CSRF-Token": user.csrf})
    assert r.status_code == 200, r.text
    profile = user.http.get("/artists/me").json()
    assert profile["bio"] == "hello from elsewhere"
    assert profile["avatar_url"] is None


# ---- 3. login CSRF through Origin: null ------------------------------------------------------------------------


def test_origin_null_is_cross_site_for_sign_in_and_signed_in_changes(node, pds, owner, anon) -> None:
    account = pds.create_account("nullorigin")
    body = json.dumps({"handle": account.handle, "app_password": account.password})
    # A sandboxed iframe's form: Origin null, text/plain body that happens to be JSON.
    r = anon.post("/auth/app-password", content=body, headers={"Origin": "null", "Content-Type": "text/plain"})
    assert r.status_code == 403, r.text
    assert "session_id" not in r.cookies
    r = anon.post("/login", data={"handle": account.handle, "app_password": account.password},
                  headers={"Origin": "null"})
    assert r.status_code == 403 and "session_id" not in r.cookies
    # Signed in with a cookie, even with the right CSRF token: null is not this site.
    r = owner.http.post("/preferences/", json={"allow_comments": False},
                        headers={"X-CSRF-Token": owner.csrf, "Origin": "null"})
    assert r.status_code == 403, r.text


def test_json_routes_take_only_json(node, pds, anon) -> None:
    account = pds.create_account("plainbody")
    body = json.dumps({"handle": account.handle, "app_password": account.password})
    r = anon.post("/auth/app-password", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    r = anon.post("/auth/app-password", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_embeds_still_count_plays_from_a_sandboxed_iframe_as_anonymous(node, owner, anon, tmp_path) -> None:
    src = make_audio(tmp_path / "beacon.mp3", "mp3", seconds=3, frequency=523.0)
    r = owner.upload(src, title="beacon")
    done = owner.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    track_id = done["track_id"]
    # The owner's cookie rides along on the cross-site beacon: it counts, but never as the owner.
    r = owner.http.post(f"/tracks/{track_id}/play", content=json.dumps({"listened_ms": 60_000}),
                        headers={"Origin": "null", "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    with sqlite3.connect(f"file:{node.data / 'plyrd.db'}?mode=ro", uri=True) as db:
        listeners = [r[0] for r in db.execute("SELECT listener FROM play_events WHERE track_id = ?", (track_id,))]
    assert len(listeners) == 1 and listeners[0].startswith("anon:"), listeners


# ---- 5. malformed input answers 4xx {"detail"} -------------------------------------------------------------------


def assert_4xx(r: httpx.Response, *words: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert "Traceback" not in r.text
    for word in words:
        assert word in detail, detail


def test_integers_beyond_64_bits(node, owner, anon) -> None:
    big = "99999999999999999999999"
    assert_4xx(anon.get(f"/tracks/{big}"))
    assert_4xx(anon.get(f"/track/{big}", headers={"Accept": "application/json"}))
    assert_4xx(owner.http.get("/tracks/me", params={"offset": big}), "offset")
    cursor = base64.urlsafe_b64encode(json.dumps([1.0, int(big)]).encode()).decode().rstrip("=")
    assert_4xx(anon.get("/tracks/", params={"cursor": cursor}), "cursor")
    assert_4xx(owner.http.get("/portal", params={"offset": big}, headers={"Accept": "application/json"}), "offset")
    r = owner.http.post("/lists/playlists", json={"name": "big"}, headers={"X-CSRF-Token": owner.csrf})
    assert r.status_code in (200, 201), r.text
    playlist = r.json()["id"]
    assert_4xx(owner.http.post(f"/lists/playlists/{playlist}/tracks", content=b'{"track_id": 99999999999999999999}',
                               headers={"X-CSRF-Token": owner.csrf, "Content-Type": "application/json"}), "64-bit")


def test_deeply_nested_json_on_any_json_route(node, owner, anon) -> None:
    deep = b"[" * 50_000
    assert_4xx(anon.post("/artists/batch", content=deep, headers={"Content-Type": "application/json"}), "nested")
    assert_4xx(anon.post("/auth/app-password", content=deep, headers={"Content-Type": "application/json"}),
               "nested")
    assert_4xx(owner.http.put("/queue/", content=b'{"state":' * 5000,
                              headers={"X-CSRF-Token": owner.csrf, "Content-Type": "application/json"}), "nested")


def test_bodies_that_are_not_utf8_or_are_compressed(node, owner, anon) -> None:
    assert_4xx(anon.post("/artists/batch", content=b'{"dids": ["\xff"]}',
                         headers={"Content-Type": "application/json"}), "UTF-8")
    r = owner.http.patch("/artists/me", content=b"\x1f\x8b\x08\x00garbage",
                         headers={"X-CSRF-Token": owner.csrf, "Content-Type": "application/json",
                                  "Content-Encoding": "gzip"})
    assert_4xx(r, "Content-Encoding")
    assert r.status_code == 415


def test_lone_surrogates_never_reach_sqlite(node, owner) -> None:
    r = owner.http.patch("/artists/me", content=b'{"display_name": "a\\ud800b"}',
                         headers={"X-CSRF-Token": owner.csrf, "Content-Type": "application/json"})
    assert_4xx(r, "surrogate")
    r = owner.http.post("/lists/playlists", content=b'{"name": "\\udfff"}',
                        headers={"X-CSRF-Token": owner.csrf, "Content-Type": "application/json"})
    assert_4xx(r, "surrogate")


def test_truncated_images_as_artwork_and_covers(node, owner, tmp_path) -> None:
    src = make_audio(tmp_path / "art.mp3", "mp3", seconds=2, frequency=587.0)
    for name, data in (("cut.png", png_bytes(300, 200)[:43]), ("cut.jpg", jpeg_bytes(300, 200)[:200])):
        r = owner.upload(src, image=(name, data, "image/png"), title="truncated art")
        assert r.status_code in (415, 422), (name, r.status_code, r.text)
        r = owner.http.post("/albums/", json={"title": f"album {name}"}, headers={"X-CSRF-Token": owner.csrf})
        assert r.status_code in (200, 201), r.text
        r = owner.http.post(f"/albums/{r.json()['id']}/cover", files={"image": (name, data, "image/png")},
                            headers={"X-CSRF-Token": owner.csrf})
        assert r.status_code in (415, 422), (name, r.status_code, r.text)
    assert wait_clean(node.data) == (set(), [])


def raw_request(url: str, head: bytes, body: bytes = b"", *, close_after: bool = False) -> bytes:
    """Send bytes as they are (httpx would fix them up) and read the answer until the server closes or 2 s pass."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head + body)
        if close_after:
            return b""
        s.settimeout(2)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZ", *, close: bool = True) -> bytes:
    body = b""
    for headers, data in parts:
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def upload_head(node, owner: Artist, length: int, boundary: bytes = b"XyZ") -> bytes:
    cookie = "; ".join(f"{k}={v}" for k, v in owner.http.cookies.items())
    host = urlsplit(node.url).netloc
    return (f"POST /tracks/ HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nX-CSRF-Token: {owner.csrf}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\nContent-Length: {length}\r\n"
            f"Origin: {node.url}\r\n\r\n").encode()


FILE = b'Content-Disposition: form-data; name="file"; filename="a.mp3"\r\nContent-Type: audio/mpeg'


def test_multipart_part_without_a_name(node, owner) -> None:
    body = multipart([(b'Content-Disposition: form-data; filename="a.mp3"', b"x" * 100)])
    r = owner.http.post("/tracks/", content=body, headers={
        "X-CSRF-Token": owner.csrf, "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert_4xx(r, "name")


def test_a_host_header_with_a_label_over_63_characters(node) -> None:
    answer = raw_request(node.url, b"GET /health HTTP/1.1\r\nHost: " + b"a" * 64 + b".example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"detail"' in answer and b"Host" in answer


# ---- 6. refused uploads leave nothing ----------------------------------------------------------------------------


def test_refused_multipart_requests_release_the_files_they_stored(node, owner) -> None:
    audio = io.BytesIO(b"ID3" + bytes(range(256)) * 400).getvalue()
    field = b'Content-Disposition: form-data; name="%s"'
    cases = {
        "third file": multipart([(FILE, audio), (FILE.replace(b"file", b"image", 1), audio[:5000]),
                                 (FILE.replace(b"file", b"extra", 1), audio[:300])]),
        "duplicate file": multipart([(FILE, audio), (FILE, audio[:999])]),
        "oversized field": multipart([(FILE, audio), (field % b"title", b"t" * 70_000)]),
        "non-UTF-8 field": multipart([(FILE, audio), (field % b"title", b"\xff\xfe")]),
        "no closing boundary": multipart([(FILE, audio), (field % b"title", b"cut")], close=False),
    }
    for what, body in cases.items():
        r = owner.http.post("/tracks/", content=body, headers={
            "X-CSRF-Token": owner.csrf, "Content-Type": "multipart/form-data; boundary=XyZ"})
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
        assert wait_clean(node.data) == (set(), []), what


def test_a_client_that_disconnects_during_a_later_part_leaves_nothing(node, owner) -> None:
    audio = b"ID3" + bytes(range(256)) * 800
    later = b'--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nhal'
    body = multipart([(FILE, audio)], close=False) + later
    raw_request(node.url, upload_head(node, owner, len(body) + 10_000), body, close_after=True)
    time.sleep(0.5)
    assert wait_clean(node.data) == (set(), [])


# ---- 7. early refusals close keep-alive connections honestly ----------------------------------------------------


def test_an_early_refusal_with_an_unread_body_says_connection_close(node) -> None:
    host = urlsplit(node.url).netloc.encode()
    body = b"x" * (1024 * 1024 - 100)
    head = (b"PUT /queue/ HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    parts = urlsplit(node.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head + body[:65536])  # the server answers before the rest arrives
        s.settimeout(5)
        answer = s.recv(65536)
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 401"), answer[:300]
    headers = rest.split(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in headers, headers


# ---- 2. HSTS only when asked for, and only over https ------------------------------------------------------------


@pytest.mark.parametrize(("public_url", "hsts", "sent"), [
    ("https://music.example.com", True, True), ("https://music.example.com", False, False),
    ("", True, False),  # a node tried over plain http never tells a browser to refuse http
])
async def test_hsts_is_sent_only_when_configured_on_https(tmp_path, public_url, hsts, sent) -> None:
    from plyrd.app import create_app
    from plyrd.config import load_config

    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path / "data"), "server.hsts": hsts,
                                            "server.public_url": public_url})
    app = create_app(config)
    async with app.test_app():
        r = await app.test_client().get("/health")
    assert ("Strict-Transport-Security" in r.headers) is sent
    if sent:
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
