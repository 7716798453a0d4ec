"""Signing in against the real reference PDS: OAuth with DPoP, app passwords, sessions, developer tokens,
scope upgrade, logout, roles, and every bad input the issue names."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from conftest import free_port
from pds_harness import Account, authorize_headless

from plyrd.app import create_app
from plyrd.config import load_config
from plyrd.errors import Forbidden

JSON = {"Accept": "application/json"}


def node_config(tmp_path: Path, pds: Any, **overrides: Any):
    values = {
        "storage.data_dir": str(tmp_path / "data"),
        "server.port": free_port(),
        "atproto.plc_url": pds.plc_url,
        "atproto.handle_resolver_url": pds.pds_url,
        "atproto.allow_private_addresses": True,
        **overrides,
    }
    return load_config(env={}, overrides=values)


@pytest.fixture
async def node_app(tmp_path: Path, pds):
    app = create_app(node_config(tmp_path, pds))
    async with app.test_app():
        yield app


def nodeof(app) -> Any:
    return app.extensions["plyrd"]


async def oauth_sign_in(client, account: Account) -> dict[str, Any]:
    r = await client.get("/auth/start", query_string={"handle": account.handle})
    assert r.status_code == 307, await r.get_data(as_text=True)
    callback_url = await asyncio.to_thread(authorize_headless, r.headers["Location"], account.handle, account.password)
    query = urlsplit(callback_url).query
    r = await client.get(f"/auth/callback?{query}", headers=JSON)
    assert r.status_code == 200, await r.get_data(as_text=True)
    return await r.get_json()


async def authorize(client, auth_url: str, account: Account, headers: dict[str, str] | None = None):
    callback_url = await asyncio.to_thread(authorize_headless, auth_url, account.handle, account.password)
    return await client.get(f"/auth/callback?{urlsplit(callback_url).query}", headers={**JSON, **(headers or {})})


async def list_collection(pds, did: str, collection: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as h:
        r = await h.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords",
                        params={"repo": did, "collection": collection})
        return r.json()["records"]


def like_record(uri: str = "at://did:plc:x/fm.plyr.track/3k") -> dict[str, Any]:
    return {"$type": "fm.plyr.like", "subject": {"uri": uri, "cid": "bafyreib2rxk3rh6kzwq"},
            "createdAt": "2026-11-28T00:00:00.000Z"}


async def test_oauth_sign_in_and_a_dpop_bound_write(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    me = await oauth_sign_in(client, pds_account)
    assert me["did"] == pds_account.did and me["handle"] == pds_account.handle
    assert me["auth_type"] == "oauth" and me["session_kind"] == "browser"
    assert "repo:fm.plyr.track" in me["scopes"] and me["teal_scrobbling_granted"] is False
    assert me["csrf_token"]

    r = await client.get("/auth/me")
    assert (await r.get_json())["did"] == pds_account.did

    # The session's tokens are sealed at rest: nothing readable in the database.
    n = nodeof(node_app)
    row = await n.db.fetchone("SELECT * FROM auth_sessions WHERE did = ?", (pds_account.did,))
    assert b"access_token" not in row["credentials"] and b"dpop" not in row["credentials"].lower()

    # A write through the session object: DPoP-bound, the PDS's nonce challenge answered on the way.
    session = await n.auth.authenticate(_cookie(client))
    pds_session = await n.auth.pds_session(session)
    # Let the node's own work after sign-in (reconciliation, the profile write) finish first: it shares the nonces.
    for _ in range(200):
        pending = await n.db.fetchone("SELECT count(*) AS c FROM outbox")
        if not n._tasks and pending["c"] == 0:
            break
        await asyncio.sleep(0.05)
    # Give the client a stale nonce so the PDS must challenge: 401 use_dpop_nonce, then a retry that succeeds.
    n.auth.oauth.nonces.set(pds_account_pds(pds), "stale-nonce")
    seen: list[tuple[int, str]] = []

    async def record(response: httpx.Response) -> None:
        # only this write: the node's background work (reconciliation, the outbox) shares the client
        if response.request.url.path.endswith("/com.atproto.repo.createRecord"):
            seen.append((response.status_code, response.headers.get("WWW-Authenticate", "")))

    n.http.event_hooks["response"].append(record)
    created = await pds_session.create_record("fm.plyr.like", like_record())
    n.http.event_hooks["response"].remove(record)
    assert created["uri"].startswith(f"at://{pds_account.did}/fm.plyr.like/")
    assert seen[0][0] == 401 and "use_dpop_nonce" in seen[0][1]
    assert seen[-1][0] == 200
    assert [r["uri"] for r in await list_collection(pds, pds_account.did, "fm.plyr.like")] == [created["uri"]]


def pds_account_pds(pds) -> str:
    return pds.pds_url + "/xrpc/com.atproto.repo.createRecord"


def _cookie(client) -> str:
    for cookie in client.cookie_jar:
        if cookie.name == "session_id":
            return cookie.value
    raise AssertionError("no session cookie")


async def test_token_refresh_after_expiry_is_saved(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    await oauth_sign_in(client, pds_account)
    n = nodeof(node_app)
    session = await n.auth.authenticate(_cookie(client))
    row = await n.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (session.id_hash,))
    creds = n.auth.sealer.open(row["credentials"], bound_to=session.id_hash)
    old_access = creds["access_token"]
    creds["expires_at"] = time.time() - 10  # the access token has expired
    await n.auth._save_credentials(session.id_hash, creds)

    pds_session = await n.auth.pds_session(session)
    await pds_session.create_record("fm.plyr.like", like_record())
    row = await n.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (session.id_hash,))
    saved = n.auth.sealer.open(row["credentials"], bound_to=session.id_hash)
    assert saved["access_token"] != old_access and saved["expires_at"] > time.time()
    assert saved["refresh_token"] != creds["refresh_token"]


async def test_app_password_sign_in(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    r = await client.post("/auth/app-password", json={"handle": "@" + pds_account.handle.upper(),
                                                      "app_password": pds_account.password})
    assert r.status_code == 200, await r.get_data(as_text=True)
    me = await r.get_json()
    assert me["did"] == pds_account.did and me["auth_type"] == "password"
    n = nodeof(node_app)
    pds_session = await n.auth.pds_session(await n.auth.authenticate(_cookie(client)))
    created = await pds_session.create_record("fm.plyr.like", like_record())
    assert created["uri"].startswith(f"at://{pds_account.did}/")

    # signed in, the same request needs the CSRF token like every other state change
    r = await client.post("/auth/app-password", json={"handle": pds_account.handle, "app_password": "wrong-one"})
    assert r.status_code == 403
    r = await node_app.test_client().post("/auth/app-password",
                                          json={"handle": pds_account.handle, "app_password": "wrong-one"})
    assert r.status_code == 401
    assert "app password" in (await r.get_json())["detail"]


async def test_developer_tokens_each_with_their_own_grant(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    me = await oauth_sign_in(client, pds_account)
    csrf = {"X-CSRF-Token": me["csrf_token"]}

    # one token through its own OAuth grant...
    r = await client.post("/auth/developer-token/start", json={"name": "laptop", "expires_in_days": 30},
                          headers=csrf)
    assert r.status_code == 200, await r.get_data(as_text=True)
    r = await authorize(client, (await r.get_json())["auth_url"], pds_account)
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    first = await r.get_json()
    assert first["name"] == "laptop" and first["token"].startswith(first["prefix"])
    expires = datetime.fromisoformat(first["expires_at"]).timestamp()  # ISO 8601, as plyr.fm lists tokens
    assert expires == pytest.approx(time.time() + 30 * 86400, abs=60) and first["session_id"] == first["prefix"]

    # ...and one through an app password, for a script
    r = await client.post("/auth/app-password", headers=csrf, json={
        "handle": pds_account.handle, "app_password": pds_account.password, "token_name": "ci"})
    assert r.status_code == 201
    second = await r.get_json()

    anon = node_app.test_client()
    for token in (first["token"], second["token"]):
        r = await anon.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and (await r.get_json())["session_kind"] == "developer"

    listed = (await (await client.get("/auth/developer-tokens")).get_json())["tokens"]
    assert {t["name"] for t in listed} == {"laptop", "ci"}
    assert all("token" not in t for t in listed)
    n = nodeof(node_app)
    stored = await n.db.fetchall("SELECT id_hash FROM auth_sessions WHERE kind = 'developer'")
    assert first["token"] not in {r["id_hash"] for r in stored}  # stored hashed

    # revoking one leaves the other and the browser session untouched
    r = await client.delete(f"/auth/developer-tokens/{first['prefix']}", headers=csrf)
    assert r.status_code == 204
    r = await anon.get("/auth/me", headers={"Authorization": f"Bearer {first['token']}"})
    assert r.status_code == 401
    r = await anon.get("/auth/me", headers={"Authorization": f"Bearer {second['token']}"})
    assert r.status_code == 200
    assert (await client.get("/auth/me")).status_code == 200
    dev = await n.auth.authenticate(second["token"])
    await (await n.auth.pds_session(dev)).create_record("fm.plyr.like", like_record())

    r = await client.delete(f"/auth/developer-tokens/{first['prefix']}", headers=csrf)
    assert r.status_code == 404
    r = await client.post("/auth/developer-token/start", json={"name": "", "expires_in_days": 3}, headers=csrf)
    assert r.status_code == 400
    r = await client.post("/auth/developer-token/start", json={"name": "x", "expires_in_days": 1000}, headers=csrf)
    assert r.status_code == 400 and "365" in (await r.get_json())["detail"]
    # a developer token cannot mint more developer tokens
    r = await anon.post("/auth/developer-token/start", json={"name": "x"},
                        headers={"Authorization": f"Bearer {second['token']}"})
    assert r.status_code == 403


async def test_scope_upgrade_keeps_the_session(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    me = await oauth_sign_in(client, pds_account)
    cookie = _cookie(client)
    n = nodeof(node_app)
    play = {"$type": "fm.teal.feed.play", "trackName": "a song", "artists": [{"artistName": "someone"}],
            "playedTime": "2026-11-28T00:00:00.000Z"}
    before = await n.auth.pds_session(await n.auth.authenticate(cookie))
    with pytest.raises(Forbidden):  # the grant does not cover teal.fm yet
        await before.create_record("fm.teal.feed.play", play)

    r = await client.post("/auth/scope-upgrade/start", json={"include_teal": True},
                          headers={"X-CSRF-Token": me["csrf_token"]})
    assert r.status_code == 200
    r = await authorize(client, (await r.get_json())["auth_url"], pds_account)
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert (await r.get_json())["teal_scrobbling_granted"] is True

    assert _cookie(client) == cookie  # the same session, now with more scopes
    me2 = await (await client.get("/auth/me")).get_json()
    assert me2["teal_scrobbling_granted"] is True and "repo:fm.teal.feed.play" in me2["scopes"]
    after = await n.auth.pds_session(await n.auth.authenticate(cookie))
    created = await after.create_record("fm.teal.feed.play", play)
    assert "/fm.teal.feed.play/" in created["uri"]
    assert (await n.db.fetchone("SELECT count(*) AS c FROM auth_sessions"))["c"] == 1


async def test_logout_ends_the_session_and_the_grant(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    me = await oauth_sign_in(client, pds_account)
    n = nodeof(node_app)
    session = await n.auth.authenticate(_cookie(client))
    pds_session = await n.auth.pds_session(session)
    tokens = pds_session.tokens

    r = await client.post("/auth/logout")
    assert r.status_code == 403  # no CSRF token
    r = await client.post("/auth/logout", headers={"X-CSRF-Token": me["csrf_token"]})
    assert r.status_code == 200
    assert (await client.get("/auth/me")).status_code == 401
    assert await n.db.fetchone("SELECT * FROM auth_sessions") is None
    # the grant was revoked at the authorization server: its refresh token is dead
    with pytest.raises(Exception, match="session_expired"):
        await n.auth.oauth.refresh(tokens)


async def test_sessions_expire(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    r = await client.post("/auth/app-password", json={"handle": pds_account.handle,
                                                      "app_password": pds_account.password})
    assert r.status_code == 200
    n = nodeof(node_app)
    await n.db.execute("UPDATE auth_sessions SET expires_at = ?", (time.time() - 1,))
    r = await client.get("/auth/me")
    assert r.status_code == 401 and (await r.get_json()) == {"detail": "session_expired"}
    assert await n.db.fetchone("SELECT * FROM auth_sessions") is None


async def test_forged_cookie_and_bad_bearer(node_app) -> None:
    client = node_app.test_client()
    client.set_cookie("localhost", "session_id", "forged-" + "x" * 40)
    r = await client.get("/auth/me")
    assert r.status_code == 401 and (await r.get_json()) == {"detail": "invalid session"}
    # listening needs no sign-in: a bad cookie does not break public pages
    assert (await client.get("/health")).status_code == 200
    anon = node_app.test_client()
    r = await anon.get("/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and "Bearer" in (await r.get_json())["detail"]
    r = await anon.get("/auth/me")
    assert r.status_code == 401 and (await r.get_json()) == {"detail": "not signed in"}


async def test_cross_site_post_is_refused(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    me = await oauth_sign_in(client, pds_account)
    r = await client.post("/auth/logout", headers={"X-CSRF-Token": me["csrf_token"], "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in (await r.get_json())["detail"]
    r = await client.post("/auth/logout", headers={"X-CSRF-Token": "0" * 40})
    assert r.status_code == 403 and "CSRF" in (await r.get_json())["detail"]
    assert (await client.get("/auth/me")).status_code == 200


async def test_unknown_handle_and_unresolvable_did(node_app) -> None:
    client = node_app.test_client()
    r = await client.get("/auth/start", query_string={"handle": "nobody-here.test"}, headers=JSON)
    assert r.status_code == 404 and "nobody-here.test" in (await r.get_json())["detail"]
    r = await client.get("/auth/start", query_string={"handle": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}, headers=JSON)
    assert r.status_code == 404
    r = await client.get("/auth/start", query_string={"handle": "not a handle!"}, headers=JSON)
    assert r.status_code == 400
    r = await client.get("/auth/start", headers=JSON)
    assert r.status_code == 400
    # a browser gets a page that says what happened, not JSON
    r = await client.get("/auth/start", query_string={"handle": "nobody-here.test"}, headers={"Accept": "text/html"})
    assert r.status_code == 404 and "nobody-here.test" in await r.get_data(as_text=True)
    assert "<html" in await r.get_data(as_text=True)
    n = nodeof(node_app)
    assert await n.db.fetchone("SELECT * FROM oauth_pending") is None


async def test_pds_that_is_down(tmp_path: Path, pds) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(node_config(tmp_path, pds, **{"atproto.handle_resolver_url": dead}))
    async with app.test_app():
        r = await app.test_client().get("/auth/start", query_string={"handle": "someone.test"}, headers=JSON)
        assert r.status_code == 502
        assert "127.0.0.1" in (await r.get_json())["detail"]
        r = await app.test_client().post("/auth/app-password", json={"handle": "someone.test", "app_password": "x"})
        assert r.status_code == 502


async def test_callback_with_wrong_state_iss_or_replayed_code(node_app, pds, pds_account) -> None:
    client = node_app.test_client()
    n = nodeof(node_app)

    async def callback_query() -> dict[str, str]:
        r = await client.get("/auth/start", query_string={"handle": pds_account.handle})
        url = await asyncio.to_thread(authorize_headless, r.headers["Location"], pds_account.handle,
                                      pds_account.password)
        return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    q = await callback_query()
    r = await client.get("/auth/callback?" + urlencode({**q, "state": "not-the-state"}), headers=JSON)
    assert r.status_code == 401 and "unknown or was already used" in (await r.get_json())["detail"]

    r = await client.get("/auth/callback?" + urlencode({**q, "iss": "https://evil.example"}), headers=JSON)
    assert r.status_code == 401 and "came from https://evil.example" in (await r.get_json())["detail"]
    # the state was consumed by that failed attempt: the genuine callback cannot be replayed afterwards
    r = await client.get("/auth/callback?" + urlencode(q), headers=JSON)
    assert r.status_code == 401
    assert await n.db.fetchone("SELECT * FROM auth_sessions") is None

    q = await callback_query()
    r = await client.get("/auth/callback?" + urlencode(q), headers=JSON)
    assert r.status_code == 200
    r = await client.get("/auth/callback?" + urlencode(q), headers=JSON)  # replayed
    assert r.status_code == 401
    assert (await n.db.fetchone("SELECT count(*) AS c FROM auth_sessions"))["c"] == 1

    r = await client.get("/auth/callback?" + urlencode({"state": "x", "error": "access_denied"}), headers=JSON)
    assert r.status_code == 401
    r = await client.get("/auth/callback", headers=JSON)
    assert r.status_code == 400
    r = await client.get("/auth/callback?state=nope", headers={"Accept": "text/html"})
    assert r.status_code == 401 and "sign-in failed" in await r.get_data(as_text=True)


async def test_roles_from_config(tmp_path: Path, pds, pds_account) -> None:
    other = pds.create_account("other")
    cfg = node_config(tmp_path, pds, **{"auth.admins": [pds_account.handle], "auth.uploaders": [other.did]})
    app = create_app(cfg)
    async with app.test_app():
        for account, admin, upload in ((pds_account, True, True), (other, False, True)):
            client = app.test_client()
            r = await client.post("/auth/app-password", json={"handle": account.handle,
                                                              "app_password": account.password})
            me = await r.get_json()
            assert (me["is_admin"], me["can_upload"]) == (admin, upload)
        third = pds.create_account("third")
        client = app.test_client()
        me = await (await client.post("/auth/app-password", json={"handle": third.handle,
                                                                  "app_password": third.password})).get_json()
        assert (me["is_admin"], me["can_upload"]) == (False, False)


async def test_oauth_client_documents(tmp_path: Path, pds, node_app) -> None:
    # a node on http://127.0.0.1 is a loopback client: nothing to publish
    client = node_app.test_client()
    assert (await client.get("/oauth-client-metadata.json")).status_code == 404
    assert (await client.get("/.well-known/jwks.json")).status_code == 404

    app = create_app(node_config(tmp_path / "c", pds, **{"server.public_url": "https://music.example.com"}))
    async with app.test_app():
        c = app.test_client()
        meta = await (await c.get("/oauth-client-metadata.json")).get_json()
        assert meta["client_id"] == "https://music.example.com/oauth-client-metadata.json"
        assert meta["token_endpoint_auth_method"] == "private_key_jwt"
        assert meta["jwks_uri"] == "https://music.example.com/.well-known/jwks.json"
        assert meta["redirect_uris"] == ["https://music.example.com/auth/callback"]
        assert meta["dpop_bound_access_tokens"] is True
        assert "repo:fm.teal.feed.play" in meta["scope"]
        keys = (await (await c.get("/.well-known/jwks.json")).get_json())["keys"]
        assert len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["crv"] == "P-256" and "d" not in keys[0]
