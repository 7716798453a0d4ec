"""Subsonic passwords, through a real node process, the real PDS and the two outside Subsonic client libraries:
token login (u+t+s, what apps send by default), p and enc:, the handle or DID as username, regenerating and
revoking from settings and the CLI, the failure throttles, and that neither the password nor /rest ever stands in
for a browser session (nor a browser session's cookie for them)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx
import libopensonic
import libsonic
import pytest
from browsing import DESKTOP, Session
from conftest import clean_env, node_fixture
from helpers import Person, anonymous, db_rows, person, records, upload, wait_for

# Behind a (pretend) proxy, so the throttle tests can speak from addresses of their own with X-Forwarded-For.
node = node_fixture("subsonic-auth", PLYRD_SERVER_BEHIND_PROXY="true")

PASSWORD = re.compile(r"[a-km-np-z2-9]{5}(-[a-km-np-z2-9]{5}){3}")


def new_password(who: Person) -> str:
    r = who.post("/auth/subsonic-password")
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["username"] == who.handle and PASSWORD.fullmatch(body["password"]), body
    return body["password"]


def rest(node: Any, method: str, *, address: str | None = None, **params: str) -> dict[str, Any]:
    headers = {"X-Forwarded-For": address} if address else {}
    r = httpx.get(f"{node.url}/rest/{method}", params={"f": "json", "v": "1.16.1", "c": "test", **params},
                  headers=headers, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    return r.json()["subsonic-response"]


def token(password: str, salt: str) -> str:
    return hashlib.md5((password + salt).encode()).hexdigest()


def failed(body: dict[str, Any]) -> int:
    assert body["status"] == "failed", body
    return body["error"]["code"]


@pytest.fixture(scope="module")
def alice(node, pds) -> Person:
    return person(node, pds, "saalice")


@pytest.fixture(scope="module")
def bob(node, pds) -> Person:
    return person(node, pds, "sabob")


def test_settings_routes_show_the_password_once(node, alice: Person) -> None:
    r = alice.get("/auth/subsonic-password")
    assert r.status_code == 200, r.text
    assert r.json() == {"server": node.url, "username": alice.handle, "exists": False, "created_at": None,
                        "last_used_at": None}
    # Cookie requests need the CSRF header; nobody else may ask at all, nor a developer token.
    assert alice.me.http.post("/auth/subsonic-password").status_code == 403
    assert anonymous(node).post("/auth/subsonic-password").status_code == 401
    r = httpx.post(node.url + "/auth/app-password", json={"handle": alice.handle,
                                                          "app_password": alice.account.password,
                                                          "token_name": "t"}, timeout=30)
    bearer = {"Authorization": "Bearer " + r.json()["token"]}
    assert httpx.post(node.url + "/auth/subsonic-password", headers=bearer).status_code == 403
    assert httpx.delete(node.url + "/auth/subsonic-password", headers=bearer).status_code == 403
    assert alice.get("/auth/subsonic-password").json()["exists"] is False

    password = new_password(alice)
    status = alice.get("/auth/subsonic-password").json()
    assert status["exists"] is True and status["created_at"] and status["last_used_at"] is None
    assert password not in alice.get("/auth/subsonic-password").text  # shown once: never again
    assert rest(node, "ping", u=alice.handle, p=password)["status"] == "ok"
    assert alice.get("/auth/subsonic-password").json()["last_used_at"]

    assert alice.delete("/auth/subsonic-password").status_code == 204
    assert alice.get("/auth/subsonic-password").json()["exists"] is False
    assert failed(rest(node, "ping", u=alice.handle, p=password)) == 40


def test_libsonic_signs_in_with_a_token_and_salt(node, alice: Person) -> None:
    password = new_password(alice)
    parts = urlsplit(node.url)
    conn = libsonic.Connection(f"{parts.scheme}://{parts.hostname}", alice.handle, password, port=parts.port,
                               serverPath="/rest")
    # py-sonic's defaults are what the common apps send: form POSTs carrying u, t = md5(password + s) and s.
    assert conn.ping() is True
    user = conn.getUser(alice.handle)["user"]
    assert user["username"] == alice.handle
    assert user["streamRole"] and user["downloadRole"] and user["playlistRole"] and user["scrobblingEnabled"]
    assert not user["adminRole"] and not user["uploadRole"] and not user["settingsRole"]
    # The same with the handle typed otherwise, and with the DID.
    for name in ("@" + alice.handle.upper(), alice.did):
        assert libsonic.Connection(f"{parts.scheme}://{parts.hostname}", name, password, port=parts.port,
                                   serverPath="/rest").ping() is True
    with pytest.raises(libsonic.errors.CredentialError):
        libsonic.Connection(f"{parts.scheme}://{parts.hostname}", alice.handle, password + "x", port=parts.port,
                            serverPath="/rest").ping()


def test_libopensonic_signs_in_with_a_token_and_salt(node, alice: Person) -> None:
    password = new_password(alice)
    parts = urlsplit(node.url)
    conn = libopensonic.Connection(f"{parts.scheme}://{parts.hostname}", username=alice.handle, password=password,
                                   port=parts.port)
    try:
        assert conn.ping() is True
        user = conn.get_user(alice.handle)
        assert user.username == alice.handle and user.stream_role and user.playlist_role
    finally:
        conn.cleanup()


def test_plain_and_hex_passwords_and_who_they_open(node, alice: Person, bob: Person) -> None:
    password = new_password(alice)
    bobs = new_password(bob)
    salt = "abcdef123456"
    assert rest(node, "ping", u=alice.handle, p=password)["status"] == "ok"
    assert rest(node, "ping", u=alice.handle, p="enc:" + password.encode().hex())["status"] == "ok"
    assert rest(node, "ping", u=alice.did, t=token(password, salt).upper(), s=salt)["status"] == "ok"
    assert rest(node, "getUser", u=alice.handle, p=password)["user"]["username"] == alice.handle
    # Each password opens its own account only.
    assert failed(rest(node, "ping", u=bob.handle, p=password)) == 40
    assert failed(rest(node, "ping", u=bob.handle, t=token(password, salt), s=salt)) == 40
    assert rest(node, "getUser", u=bob.handle, p=bobs)["user"]["username"] == bob.handle
    assert failed(rest(node, "getUser", u=bob.handle, p=bobs, username=alice.handle)) == 50
    assert failed(rest(node, "ping", u="nobody.test", p=password)) == 40
    assert failed(rest(node, "ping", p=password)) == 40  # p without u: only a developer token would do
    assert failed(rest(node, "ping", u=alice.handle, t=token(password, salt), s=salt + "x")) == 40
    assert failed(rest(node, "ping", u=alice.handle, t=token(password, salt))) == 10
    assert failed(rest(node, "ping", u=alice.handle, t="é" * 32, s=salt)) == 40  # not hex, not ASCII: just wrong
    assert failed(rest(node, "ping", u=alice.handle, p="pässwörd")) == 40
    assert failed(rest(node, "ping", t=token(password, salt), s=salt)) == 10
    # apiKey is for developer tokens only.
    assert failed(rest(node, "ping", apiKey=password)) == 44


def test_regenerating_ends_the_old_password(node, alice: Person) -> None:
    old = new_password(alice)
    new = new_password(alice)
    assert old != new
    salt = "saltsalt"
    assert failed(rest(node, "ping", u=alice.handle, t=token(old, salt), s=salt)) == 40
    assert rest(node, "ping", u=alice.handle, t=token(new, salt), s=salt)["status"] == "ok"


def test_developer_tokens_still_work_and_the_cookie_never_does(node, alice: Person) -> None:
    r = httpx.post(node.url + "/auth/app-password", json={"handle": alice.handle,
                                                          "app_password": alice.account.password,
                                                          "token_name": "app"}, timeout=30)
    dev = r.json()["token"]
    assert rest(node, "ping", u="whoever", p=dev)["status"] == "ok"
    assert rest(node, "tokenInfo", apiKey=dev)["tokenInfo"] == {"username": alice.handle}
    cookie = alice.me.http.cookies["session_id"]
    assert failed(rest(node, "ping", u=alice.handle, p=cookie)) == 40
    assert failed(rest(node, "ping", apiKey=cookie)) == 44
    # A Subsonic password is no session anywhere outside /rest.
    password = new_password(alice)
    assert httpx.get(node.url + "/auth/me", headers={"Authorization": f"Bearer {password}"}).status_code == 401


def test_scrobbles_reach_teal_as_the_grant_allows(node, pds, tmp_path) -> None:
    erin = person(node, pds, "saerin")  # signed in with an app password: her grant covers teal.fm
    assert erin.post("/preferences/", json={"enable_teal_scrobbling": True}).json()["teal_needs_reauth"] is False
    track = upload(erin, tmp_path, "teal tone", seconds=2.0, frequency=440.0)
    password = new_password(erin)
    salt = "scrobble1"
    assert rest(node, "scrobble", u=erin.handle, t=token(password, salt), s=salt, id=f"tr-{track['id']}")["status"] \
        == "ok"
    plays = wait_for(lambda: records(pds, erin.did, "fm.teal.feed.play"))
    assert plays[0]["value"]["trackName"] == "teal tone"


def test_a_cross_site_form_post_is_answered_by_its_own_credentials_only(node, alice: Person, bob: Person) -> None:
    bobs = new_password(bob)
    evil = {"Origin": "https://evil.example"}
    # Alice's browser carries her cookie to /rest from another site: it counts for nothing.
    r = alice.me.http.post("/rest/getUser.view", data={"f": "json", "username": alice.handle}, headers=evil)
    assert r.status_code == 200 and failed(r.json()["subsonic-response"]) == 10
    r = alice.me.http.post("/rest/getUser.view", data={"f": "json", "u": bob.handle, "p": bobs}, headers=evil)
    assert r.status_code == 200 and r.json()["subsonic-response"]["user"]["username"] == bob.handle
    salt = "crosssite"
    r = alice.me.http.post("/rest/getUser.view", headers=evil, data={
        "f": "json", "u": bob.handle, "t": token(bobs, salt), "s": salt, "username": bob.handle})
    assert r.json()["subsonic-response"]["user"]["username"] == bob.handle


def test_the_settings_page_makes_shows_once_and_revokes(node, pds, browser) -> None:
    context = browser.new_context(viewport=DESKTOP)
    try:
        s = Session(node, context.new_page(), pds.create_account("sapage"))
        s.sign_in("/settings")
        page = s.page
        s.wait("() => document.querySelector('[data-subsonic-server]').textContent.length > 0")
        assert page.text_content("[data-subsonic-server]") == node.url
        assert page.text_content("[data-subsonic-username]") == s.account.handle
        buttons = "[data-subsonic-actions] button"
        assert page.text_content("[data-subsonic-actions] [data-subsonic-about]") == "no password yet"
        assert page.eval_on_selector_all(buttons, "bs => bs.map(b => b.textContent)") == ["make a password"]
        assert "false" not in page.text_content("[data-subsonic-actions]")
        page.click("[data-subsonic-actions] button:has-text('make a password')")
        s.wait("() => document.querySelector('[data-subsonic-new]')")
        password = page.text_content("[data-subsonic-new]")
        assert PASSWORD.fullmatch(password or "")
        assert page.is_visible("[data-subsonic-password] button:has-text('copy')")
        assert rest(node, "ping", u=s.account.handle, t=token(password, "pagesalt"), s="pagesalt")["status"] == "ok"
        page.reload()  # shown once: a reload says there is one, and when it was used, but not what it is
        s.wait("() => document.querySelector('[data-subsonic-about]')")
        assert "last used" in page.text_content("[data-subsonic-actions]")
        assert page.eval_on_selector_all(buttons, "bs => bs.map(b => b.textContent)") == ["make a new password",
                                                                                        "revoke"]
        assert page.query_selector("[data-subsonic-new]") is None and password not in page.content()
        page.click("[data-subsonic-actions] button:has-text('revoke')")
        s.wait("() => document.querySelector('[data-subsonic-actions]').textContent.includes('no password yet')")
        assert failed(rest(node, "ping", u=s.account.handle, p=password)) == 40
        assert s.errors == []
    finally:
        context.close()


def test_the_cli_makes_and_revokes_a_password(node, bob: Person) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plyrd", "subsonic-password", *args], cwd=node.data.parent,
                              env=clean_env(), capture_output=True, text=True, timeout=60)

    r = cli("@" + bob.handle)
    assert r.returncode == 0, r.stderr
    password = re.search(r"password  (\S+)", r.stdout).group(1)  # type: ignore[union-attr]
    assert PASSWORD.fullmatch(password) and bob.handle in r.stdout and "shown this once" in r.stdout
    assert rest(node, "ping", u=bob.handle, p=password)["status"] == "ok"
    assert bob.get("/auth/subsonic-password").json()["exists"] is True
    r = cli(bob.did, "--revoke")
    assert r.returncode == 0 and "revoked" in r.stdout, r.stderr
    assert failed(rest(node, "ping", u=bob.handle, p=password)) == 40
    r = cli("nobody-here.test")
    assert r.returncode == 2 and "no user" in r.stderr


def test_failures_for_one_account_are_throttled(node, pds) -> None:
    carol = person(node, pds, "sacarol")
    password = new_password(carol)
    # Ten wrong passwords for carol, whether named by handle or DID and from any address, use up her allowance...
    for i in range(10):
        name = carol.handle if i % 2 else carol.did
        assert failed(rest(node, "ping", address=f"198.51.100.{i}", u=name, p="wrong")) == 40
    # ...after which even her right password waits, answered in the envelope (never an HTTP 429 page).
    body = rest(node, "ping", address="198.51.100.99", u=carol.handle, p=password)
    assert failed(body) == 0 and "wait" in body["error"]["message"]
    body = rest(node, "ping", address="198.51.100.99", u=carol.did, t=token(password, "abcdef"), s="abcdef")
    assert failed(body) == 0
    # The same allowance as app-password sign-in: /rest is no way around it.
    r = httpx.post(node.url + "/auth/app-password", json={"handle": carol.handle, "app_password": "wrong"},
                   timeout=30)
    assert r.status_code == 429


def test_failures_from_one_address_are_throttled(node, pds) -> None:
    dave = person(node, pds, "sadave")
    password = new_password(dave)
    address = "203.0.113.7"
    for i in range(20):  # spraying: a different account each time, so no account limit is reached
        assert failed(rest(node, "ping", address=address, u=f"spray{i}.test", p="wrong")) == 40
    assert failed(rest(node, "ping", address=address, u=dave.handle, p=password)) == 0
    assert rest(node, "ping", address="203.0.113.8", u=dave.handle, p=password)["status"] == "ok"


def test_deleting_the_account_ends_its_subsonic_password_and_app_state(node, pds, tmp_path) -> None:
    erin = person(node, pds, "saerin")
    password = new_password(erin)
    assert rest(node, "ping", u=erin.handle, t=token(password, "erinsalt"), s="erinsalt")["status"] == "ok"
    song = upload(erin, tmp_path, "erin", seconds=1.0, frequency=440.0)["id"]
    auth = {"u": erin.handle, "t": token(password, "erinsalt2"), "s": "erinsalt2"}
    assert rest(node, "createBookmark", id=f"tr-{song}", position="1000", **auth)["status"] == "ok"
    r = erin.me.http.request("DELETE", "/account/", json={"confirmation": erin.handle},
                             headers={"X-CSRF-Token": erin.me.csrf})
    assert r.status_code == 200, r.text
    assert failed(rest(node, "ping", u=erin.handle, t=token(password, "erinsalt3"), s="erinsalt3")) == 40
    assert failed(rest(node, "ping", u=erin.did, p=password)) == 40
    for table in ("subsonic_passwords", "subsonic_bookmarks"):
        assert db_rows(node, f"SELECT count(*) FROM {table} WHERE did = ?", (erin.did,)) == [(0,)], table
