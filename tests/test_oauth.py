"""plyrd's ATProto OAuth client against the real reference PDS (tests/pds_harness.py): no mocks.

The loopback public client signs in headlessly through the PDS's own sign-in and consent endpoints
(`authorize_headless`); nothing listens on the redirect_uri, the code/state/iss come from the URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from oauth_support import REDIRECT, Recorder, authorize, make_oauth, redirect_params, sign_in
from pds_harness import PDSHarness, authorize_headless, free_port

from plyrd.atproto import jwt
from plyrd.atproto.dpop import NonceStore, htu_of, make_proof
from plyrd.atproto.net import make_http_client
from plyrd.atproto.oauth import (
    BASE_SCOPE,
    TEAL_SCOPES,
    ClientConfig,
    OAuthClient,
    OAuthServerError,
    SessionExpired,
    TokenSet,
    client_metadata,
    confidential_client,
    covers,
    loopback_client,
    parse_scopes,
    public_jwks,
)
from plyrd.atproto.xrpc import OAuthSession
from plyrd.errors import Forbidden, InvalidInput, NotFound, Unauthenticated, UpstreamError

TRACK = {"$type": "fm.plyr.track", "title": "oauth test", "createdAt": "2026-01-01T00:00:00.000Z"}


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = make_http_client(allow_private=True, timeout=30, user_agent="plyrd-tests")
    async with client:
        yield client


# --------------------------------------------------------------------------- pure logic


def test_scope_parsing_and_coverage() -> None:
    assert parse_scopes(BASE_SCOPE) == {
        "atproto",
        "blob:*/*",
        "repo:fm.plyr.track",
        "repo:fm.plyr.like",
        "repo:fm.plyr.comment",
        "repo:fm.plyr.list",
        "repo:fm.plyr.actor.profile",
    }
    # A permission set comes back expanded into query form: same grant, different string.
    expanded = (
        "atproto blob?accept=audio/*&accept=image/* "
        "repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment"
        "&collection=fm.plyr.list&collection=fm.plyr.actor.profile"
    )
    assert "repo:fm.plyr.like" in parse_scopes(expanded)
    assert "blob:image/*" in parse_scopes(expanded)
    assert covers(expanded, "atproto repo:fm.plyr.track repo:fm.plyr.list blob:audio/mpeg")
    assert not covers(expanded, BASE_SCOPE)  # blob:*/* is wider than audio/* + image/*
    assert not covers(expanded, TEAL_SCOPES)
    assert covers(BASE_SCOPE + " " + TEAL_SCOPES, TEAL_SCOPES)
    # Actions: create-only grants do not cover delete.
    assert parse_scopes("repo:fm.plyr.like?action=create") == {"repo:fm.plyr.like?action=create"}
    assert covers("repo:fm.plyr.like?action=create&action=delete", "repo?collection=fm.plyr.like&action=delete")
    assert not covers("repo:fm.plyr.like?action=create", "repo:fm.plyr.like")
    # Wildcards and the transition scope.
    assert covers("atproto repo:*", "atproto repo:fm.plyr.track repo:fm.teal.feed.play")
    assert covers("atproto transition:generic", BASE_SCOPE + " " + TEAL_SCOPES)
    assert covers(parse_scopes(BASE_SCOPE), parse_scopes(BASE_SCOPE))
    assert not covers("repo:fm.plyr.track", "atproto")
    assert covers("atproto include:fm.plyr.authFullApp", "include:fm.plyr.authFullApp")


def test_jws_roundtrip_and_tamper() -> None:
    key = jwt.ES256Key.generate(kid="k1")
    token = key.sign({"typ": "JWT"}, {"sub": "x", "n": 1})
    header, payload = jwt.verify(token, key.public_jwk())
    assert header == {"typ": "JWT", "alg": "ES256", "kid": "k1"} and payload == {"sub": "x", "n": 1}
    again = jwt.ES256Key.from_jwk(json.loads(json.dumps(key.private_jwk())))
    assert again.public_jwk() == key.public_jwk() and again.thumbprint() == key.thumbprint()
    assert "d" not in key.public_jwk() and "d" not in jwt.public_jwk(key.private_jwk())
    head, _, sig = token.split(".")
    forged = jwt.b64url_encode(json.dumps({"sub": "y", "n": 1}).encode())
    with pytest.raises(jwt.JWTError):
        jwt.verify(f"{head}.{forged}.{sig}", key.public_jwk())
    with pytest.raises(jwt.JWTError):
        jwt.verify(token, jwt.ES256Key.generate().public_jwk())
    bad = dict(key.private_jwk(), x=jwt.ES256Key.generate().public_jwk()["x"])
    with pytest.raises(jwt.JWTError):
        jwt.ES256Key.from_jwk(bad)


def test_dpop_proof_shape() -> None:
    key = jwt.ES256Key.generate()
    proof = make_proof(key, "post", "https://pds.example/xrpc/x?a=1#f", nonce="n1", access_token="tok")
    header, payload = jwt.verify(proof, key.public_jwk())
    assert header["typ"] == "dpop+jwt" and header["jwk"] == key.public_jwk() and "kid" not in header
    assert payload["htm"] == "POST" and payload["htu"] == "https://pds.example/xrpc/x"
    assert payload["nonce"] == "n1" and payload["ath"] and abs(payload["iat"] - time.time()) < 5
    assert htu_of("http://localhost:1234/oauth/par") == "http://localhost:1234/oauth/par"
    store = NonceStore(max_origins=2)
    store.set("https://a.example/x", "1")
    store.set("https://b.example/y", "2")
    store.set("https://c.example/z", "3")
    assert store.get("https://a.example/other") is None and store.get("https://C.example/") == "3"


def test_client_metadata_and_jwks() -> None:
    loop = loopback_client(REDIRECT, BASE_SCOPE)
    assert loop.client_id.startswith("http://localhost?redirect_uri=")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loop.client_id).query)
    assert q == {"redirect_uri": [REDIRECT], "scope": [BASE_SCOPE]}
    assert not loop.is_confidential and public_jwks(loop) == {"keys": []}
    meta = client_metadata(loop)
    assert meta["token_endpoint_auth_method"] == "none" and meta["dpop_bound_access_tokens"] is True
    with pytest.raises(ValueError):
        loopback_client("http://localhost:8080/auth/callback", BASE_SCOPE)

    key = jwt.ES256Key.generate()
    conf = confidential_client("https://music.example.org/", BASE_SCOPE, key.private_jwk())
    assert conf.client_id == "https://music.example.org/oauth-client-metadata.json"
    assert conf.redirect_uri == "https://music.example.org/auth/callback"
    meta = client_metadata(conf)
    assert meta["application_type"] == "web"
    assert meta["token_endpoint_auth_method"] == "private_key_jwt"
    assert meta["token_endpoint_auth_signing_alg"] == "ES256"
    assert meta["jwks_uri"] == "https://music.example.org/.well-known/jwks.json"
    assert meta["redirect_uris"] == [conf.redirect_uri] and meta["scope"] == BASE_SCOPE
    jwks = public_jwks(conf)
    (pub,) = jwks["keys"]
    assert "d" not in pub and pub["kid"] == key.thumbprint() and pub["alg"] == "ES256"
    assert "signing_key_jwk" not in repr(conf) and key.private_jwk()["d"] not in repr(conf)


async def test_client_assertion_is_verifiable_with_published_jwks(http: httpx.AsyncClient) -> None:
    key = jwt.ES256Key.generate()
    conf = confidential_client("https://music.example.org", BASE_SCOPE, key.private_jwk())
    client = OAuthClient(http, conf, resolver=None)  # type: ignore[arg-type]  # no network in this test
    fields = client._client_assertion("https://issuer.example")
    assert fields["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header, claims = jwt.verify(fields["client_assertion"], public_jwks(conf)["keys"][0])
    assert header["kid"] == key.thumbprint()
    assert claims["iss"] == claims["sub"] == conf.client_id and claims["aud"] == "https://issuer.example"
    assert 0 < claims["exp"] - claims["iat"] <= 60 and claims["jti"]


def test_state_objects_are_json_and_hide_secrets() -> None:
    t = TokenSet(
        did="did:plc:x",
        handle=None,
        pds_url="https://pds.example",
        issuer="https://pds.example",
        access_token="SECRET-AT",
        refresh_token="SECRET-RT",
        expires_at=1.0,
        scope="atproto",
        dpop_jwk={"d": "SECRET-D"},
        token_endpoint="https://pds.example/oauth/token",
        revocation_endpoint=None,
    )
    assert TokenSet.from_dict(json.loads(json.dumps(t.to_dict())) | {"future": 1}) == t
    assert "SECRET" not in repr(t)
    assert t.is_expired()


# --------------------------------------------------------------------------- against the real PDS


async def test_full_loopback_sign_in_and_dpop_write(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("oauth")
    oauth = make_oauth(http, pds)
    rec = Recorder()
    http.event_hooks["response"].append(rec)

    t0 = time.perf_counter()
    pending = await oauth.start(account.handle)
    assert pending.did == account.did and pending.handle == account.handle
    assert pending.issuer == pds.pds_url and pending.pds_url == pds.pds_url
    assert pending.authorize_url.startswith(f"{pds.pds_url}/oauth/authorize?")
    # The first PAR met the authorization server's nonce challenge (400 use_dpop_nonce) and retried.
    par = [s for s in rec.seen if s[1] == "/oauth/par"]
    assert par[0][2:] == (400, "use_dpop_nonce") and par[-1][2] == 201

    q = await authorize(pending, account)
    assert q["state"] == pending.state and q["iss"] == pending.issuer
    tokens = await oauth.callback(pending, code=q["code"], iss=q["iss"], state=q["state"])
    elapsed = time.perf_counter() - t0
    assert tokens.did == account.did and tokens.handle == account.handle
    assert tokens.pds_url == pds.pds_url and tokens.issuer == pds.pds_url
    assert covers(tokens.scope, BASE_SCOPE) and "atproto" in parse_scopes(tokens.scope)
    assert tokens.refresh_token and tokens.expires_at > time.time() + 600
    assert TokenSet.from_dict(json.loads(json.dumps(tokens.to_dict()))) == tokens
    print(f"loopback sign-in: {elapsed:.2f} s")

    # A separate nonce store: the PDS has not given this session a nonce yet, so it must challenge.
    rec.seen.clear()
    session = OAuthSession(http, oauth, tokens, nonces=NonceStore())
    out = await session.create_record("fm.plyr.track", TRACK)
    assert out["uri"].startswith(f"at://{account.did}/fm.plyr.track/")
    writes = [s for s in rec.seen if s[1].endswith("createRecord")]
    assert writes[0][2:] == (401, "use_dpop_nonce") and writes[1][2] == 200, writes
    # The nonce from the successful response is kept: the next write needs no challenge.
    rec.seen.clear()
    await session.create_record("fm.plyr.track", TRACK)
    assert [s[2] for s in rec.seen] == [200]
    got = await session.get_record("fm.plyr.track", out["uri"].rsplit("/", 1)[1])
    assert got["value"]["title"] == "oauth test"

    # Narrow scopes are enforced by the PDS and surface as Forbidden.
    with pytest.raises(Forbidden):
        await session.create_record("app.bsky.feed.post", {"$type": "app.bsky.feed.post", "text": "x"})


async def test_callback_rejects_wrong_iss_state_and_replayed_code(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("oauthbad")
    oauth = make_oauth(http, pds)
    pending = await oauth.start(account.handle)
    q = await authorize(pending, account)

    with pytest.raises(Unauthenticated, match=r"not .* where it started"):
        await oauth.callback(pending, code=q["code"], iss="https://evil.example")
    with pytest.raises(Unauthenticated, match="no iss"):
        await oauth.callback(pending, code=q["code"], iss=None)
    with pytest.raises(Unauthenticated, match="state mismatch"):
        await oauth.callback(pending, code=q["code"], iss=q["iss"], state="not-the-state")
    stale = dataclasses.replace(pending, created_at=time.time() - 3600)
    with pytest.raises(Unauthenticated, match="too long"):
        await oauth.callback(stale, code=q["code"], iss=q["iss"])

    # None of the refusals above spent the code; it still works once, and only once.
    tokens = await oauth.callback(pending, code=q["code"], iss=q["iss"], state=q["state"])
    assert tokens.did == account.did
    with pytest.raises(Unauthenticated, match="already used"):
        await oauth.callback(pending, code=q["code"], iss=q["iss"], state=q["state"])


async def test_callback_rejects_other_account(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    """The user signs in as someone else than the handle typed: `sub` differs from the resolved DID."""
    alice, mallory = pds.create_account("alice"), pds.create_account("mallory")
    oauth = make_oauth(http, pds)
    pending = await oauth.start(alice.handle)
    url = await asyncio.to_thread(authorize_headless, pending.authorize_url, mallory.handle, mallory.password)
    q = redirect_params(url)
    with pytest.raises(Unauthenticated, match="different account"):
        await oauth.callback(pending, code=q["code"], iss=q["iss"], state=q["state"])


async def test_refresh_rotates_and_old_refresh_token_is_dead(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("refresh")
    oauth = make_oauth(http, pds)
    tokens = await sign_in(oauth, account)
    old = dataclasses.replace(tokens)

    persisted: list[TokenSet] = []

    async def on_refresh(new: TokenSet) -> None:
        persisted.append(new)

    session = OAuthSession(http, oauth, dataclasses.replace(tokens, expires_at=time.time() - 10), on_refresh)
    t0 = time.perf_counter()
    await asyncio.gather(*(session.create_record("fm.plyr.track", TRACK) for _ in range(3)))
    print(f"refresh + 3 writes: {time.perf_counter() - t0:.2f} s")
    assert len(persisted) == 1, "three concurrent writes must share one refresh"
    new = persisted[0]
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token
    assert new.expires_at > time.time() + 600 and new.dpop_jwk == old.dpop_jwk
    assert session.tokens == new

    # Another OAuthSession built from the same stale tokens (a second request, say) shares the result.
    twin = OAuthSession(http, oauth, dataclasses.replace(old, expires_at=0), on_refresh)
    await twin.create_record("fm.plyr.track", TRACK)
    assert twin.tokens.access_token == new.access_token

    # A client without that short-lived memory replays the spent refresh token: the server refuses it.
    fresh_client = make_oauth(http, pds)
    with pytest.raises(SessionExpired) as exc:
        await fresh_client.refresh(old)
    assert exc.value.detail == "session_expired" and isinstance(exc.value, Unauthenticated)


async def test_refresh_on_invalid_token(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    """The PDS says invalid_token (here: a token the server never issued): refresh once, then succeed."""
    account = pds.create_account("invtok")
    oauth = make_oauth(http, pds)
    tokens = await sign_in(oauth, account)
    seen: list[TokenSet] = []

    async def on_refresh(new: TokenSet) -> None:
        seen.append(new)

    broken = dataclasses.replace(tokens, access_token=tokens.access_token[:-4] + "AAAA")
    session = OAuthSession(http, oauth, broken, on_refresh)
    await session.create_record("fm.plyr.track", TRACK)
    assert len(seen) == 1 and session.tokens.access_token not in (broken.access_token, tokens.access_token)


async def test_revoke_ends_the_session(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("revoke")
    oauth = make_oauth(http, pds)
    tokens = await sign_in(oauth, account)
    await oauth.revoke(tokens)
    with pytest.raises(SessionExpired):
        await make_oauth(http, pds).refresh(tokens)
    # The access token dies with the grant: the write fails, refresh is refused, the caller sees 401.
    session = OAuthSession(http, oauth, tokens)
    with pytest.raises(Unauthenticated):
        await session.create_record("fm.plyr.track", TRACK)
    # Revoking again (or an unreachable server) never raises.
    await oauth.revoke(tokens)
    await oauth.revoke(dataclasses.replace(tokens, revocation_endpoint=f"http://127.0.0.1:{free_port()}/x"))


async def test_start_maps_failures(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    oauth = make_oauth(http, pds)
    with pytest.raises(InvalidInput):
        await oauth.start("not a handle!")
    with pytest.raises(InvalidInput):
        await oauth.start("did:example:123")
    with pytest.raises(NotFound):
        await oauth.start("nobody-here-at-all.test")
    with pytest.raises(UpstreamError):
        await oauth.authorization_server_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamError, match="not an https URL"):
        await oauth.authorization_server_for("http://pds.example.com")
    # A scope the loopback client_id does not declare: the server refuses the PAR, and says why.
    account = pds.create_account("scope")
    with pytest.raises(OAuthServerError) as exc:
        await oauth.start(account.handle, scope="atproto repo:fm.teal.feed.play")
    assert exc.value.error in ("invalid_scope", "invalid_request"), exc.value.detail


async def test_start_with_did_and_teal_scope(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("teal")
    oauth = make_oauth(http, pds, scope=BASE_SCOPE + " " + TEAL_SCOPES)
    pending = await oauth.start(account.did)
    assert pending.handle == account.handle
    q = await authorize(pending, account)
    tokens = await oauth.callback(pending, code=q["code"], iss=q["iss"])
    assert covers(tokens.scope, TEAL_SCOPES)
    play: dict[str, Any] = {"$type": "fm.teal.feed.play", "trackName": "x", "playedTime": "2026-01-01T00:00:00Z"}
    out = await OAuthSession(http, oauth, tokens).create_record("fm.teal.feed.play", play)
    assert "/fm.teal.feed.play/" in out["uri"]


def test_client_config_is_frozen() -> None:
    cfg = ClientConfig("http://localhost", REDIRECT, "atproto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scope = "x"  # type: ignore[misc]
