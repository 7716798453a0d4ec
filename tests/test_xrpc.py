"""PDS sessions (plyrd.atproto.xrpc) against the real reference PDS: app password and OAuth, records, blobs,
and the mapping of XRPC errors to plyrd's domain errors. No mocks of the PDS."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from oauth_support import Recorder, make_oauth, sign_in
from pds_harness import PDSHarness, free_port

from plyrd.atproto import jwt
from plyrd.atproto.dpop import NonceStore
from plyrd.atproto.net import make_http_client
from plyrd.atproto.xrpc import (
    MAX_APPLY_WRITES,
    OAuthSession,
    PasswordSession,
    PasswordTokens,
    PDSSession,
    xrpc_error,
)
from plyrd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthenticated,
    UpstreamError,
)

NOW = "2026-01-01T00:00:00.000Z"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = make_http_client(allow_private=True, timeout=30, user_agent="plyrd-tests")
    async with client:
        yield client


def track(title: str, **extra: Any) -> dict[str, Any]:
    return {"$type": "fm.plyr.track", "title": title, "createdAt": NOW, **extra}


def audio(size: int) -> bytes:
    # An ID3 header so the PDS's content sniffing agrees with the declared type.
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(size - 10)


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def fetch_blob(http: httpx.AsyncClient, session: PDSSession, cid: str) -> bytes:
    resp = await http.get(f"{session.pds_url}/xrpc/com.atproto.sync.getBlob", params={"did": session.did, "cid": cid})
    assert resp.status_code == 200, resp.text
    return resp.content


async def exercise_records(session: PDSSession) -> None:
    """The record API, the same for every kind of session."""
    created = await session.create_record("fm.plyr.track", track("one"))
    rkey = created["uri"].rsplit("/", 1)[1]
    assert created["uri"] == f"at://{session.did}/fm.plyr.track/{rkey}" and created["cid"]
    got = await session.get_record("fm.plyr.track", rkey)
    assert got["value"]["title"] == "one" and got["cid"] == created["cid"]

    # Conditional update: right CID succeeds, stale CID is a Conflict, swap_record=None is create-only.
    updated = await session.put_record("fm.plyr.track", rkey, track("two"), swap_record=created["cid"])
    with pytest.raises(Conflict):
        await session.put_record("fm.plyr.track", rkey, track("three"), swap_record=created["cid"])
    with pytest.raises(Conflict):
        await session.put_record("fm.plyr.track", rkey, track("four"), swap_record=None)
    fresh = await session.put_record("fm.plyr.track", "3kfreshrkey22", track("new"), swap_record=None)
    assert fresh["uri"].endswith("/3kfreshrkey22")
    await session.put_record("fm.plyr.track", rkey, track("five"))  # unconditional
    assert (await session.get_record("fm.plyr.track", rkey))["value"]["title"] == "five"

    listed = await session.list_records("fm.plyr.track", limit=10)
    assert {r["uri"] for r in listed["records"]} >= {created["uri"], fresh["uri"]}
    assert updated["cid"] != created["cid"]

    batch = await session.apply_writes(
        [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": "fm.plyr.like", "value": _like(created)},
            {"$type": "com.atproto.repo.applyWrites#delete", "collection": "fm.plyr.track", "rkey": "3kfreshrkey22"},
        ]
    )
    assert len(batch["results"]) == 2
    with pytest.raises(InvalidInput, match="at most 200"):
        await session.apply_writes([{"$type": "x"}] * (MAX_APPLY_WRITES + 1))

    await session.delete_record("fm.plyr.track", rkey)
    with pytest.raises(NotFound):
        await session.get_record("fm.plyr.track", rkey)
    with pytest.raises(InvalidInput, match="refused the request"):
        await session.create_record("not a collection", {"$type": "x"})


def _like(subject: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "fm.plyr.like", "subject": {"uri": subject["uri"], "cid": subject["cid"]}, "createdAt": NOW}


async def exercise_blobs(http: httpx.AsyncClient, session: PDSSession) -> None:
    data = audio(1024 * 1024 + 7)
    t0 = time.perf_counter()
    ref = await session.upload_blob(data, "audio/mpeg")
    print(f"uploadBlob 1 MiB: {1000 * (time.perf_counter() - t0):.0f} ms")
    assert ref["$type"] == "blob" and ref["mimeType"] == "audio/mpeg" and ref["size"] == len(data)
    cid = ref["ref"]["$link"]
    # Reference it right away: an unreferenced blob is garbage-collected.
    await session.create_record("fm.plyr.track", track("with audio", audioBlob=ref))
    assert hashlib.sha256(await fetch_blob(http, session, cid)).digest() == hashlib.sha256(data).digest()

    streamed = audio(3 * 1024 * 1024)
    ref2 = await session.upload_blob(chunks(streamed), "audio/mpeg")
    assert ref2["size"] == len(streamed)
    await session.create_record("fm.plyr.track", track("streamed", audioBlob=ref2))
    assert await fetch_blob(http, session, ref2["ref"]["$link"]) == streamed


# --------------------------------------------------------------------------- app password


async def test_password_session_records_blobs_refresh(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("pw")
    saved: list[PasswordTokens] = []

    async def on_refresh(tokens: PasswordTokens) -> None:
        saved.append(tokens)

    with pytest.raises(Unauthenticated):
        await PasswordSession.login(http, pds.pds_url, account.handle, "wrong-password")
    t0 = time.perf_counter()
    session = await PasswordSession.login(http, pds.pds_url, account.handle, account.password, on_refresh=on_refresh)
    print(f"createSession: {1000 * (time.perf_counter() - t0):.0f} ms")
    assert isinstance(session, PDSSession)
    assert session.did == account.did and session.tokens.handle == account.handle
    assert not session.tokens.is_expired()
    assert PasswordTokens.from_dict(json.loads(json.dumps(session.tokens.to_dict()))) == session.tokens
    assert "accessJwt" not in repr(session.tokens) and session.tokens.access_jwt not in repr(session.tokens)

    await exercise_records(session)
    await exercise_blobs(http, session)

    # refreshSession, explicitly...
    before = session.tokens
    await session.refresh()
    assert len(saved) == 1 and saved[0] is session.tokens
    # (The access JWT may be byte-identical when issued in the same second; the refresh JWT carries a jti.)
    assert session.tokens is not before and session.tokens.refresh_jwt != before.refresh_jwt
    # ...and on its own when the access JWT has expired (here: replaced by one whose `exp` has passed).
    expired = jwt.ES256Key.generate().sign({"typ": "at+jwt"}, {"sub": account.did, "exp": int(time.time()) - 5})
    session.tokens.access_jwt = expired
    assert session.tokens.is_expired()
    await session.create_record("fm.plyr.track", track("after refresh"))
    assert len(saved) == 2 and session.tokens.access_jwt != expired

    # A garbage access token is rejected (not ExpiredToken, so no refresh): Unauthenticated.
    session.tokens.access_jwt = "not-a-jwt"
    with pytest.raises(Unauthenticated):
        await session.create_record("fm.plyr.track", track("nope"))
    await session.logout()


# --------------------------------------------------------------------------- OAuth


async def test_oauth_session_records_and_blobs(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    account = pds.create_account("oxrpc")
    oauth = make_oauth(http, pds)
    tokens = await sign_in(oauth, account)
    session = OAuthSession(http, oauth, tokens, nonces=NonceStore())
    assert isinstance(session, PDSSession)
    await exercise_records(session)
    await exercise_blobs(http, session)


async def test_oauth_streamed_upload_primes_nonce_and_refreshes(http: httpx.AsyncClient, pds: PDSHarness) -> None:
    """A streamed body cannot be replayed, so the session learns the nonce (and refreshes) beforehand."""
    account = pds.create_account("ostream")
    oauth = make_oauth(http, pds)
    tokens = await sign_in(oauth, account)
    tokens.expires_at = 0
    refreshed = []

    async def on_refresh(new: Any) -> None:
        refreshed.append(new)

    session = OAuthSession(http, oauth, tokens, on_refresh, nonces=NonceStore())
    rec = Recorder()
    http.event_hooks["response"].append(rec)
    data = audio(512 * 1024)
    ref = await session.upload_blob(chunks(data), "audio/mpeg")
    assert ref["size"] == len(data) and len(refreshed) == 1
    xrpc = [
        (path.rsplit("/", 1)[1], status)
        for _, path, status, _ in rec.seen
        if "/xrpc/com.atproto.identity" not in path and "/xrpc/" in path
    ]
    # getSession takes the nonce challenge; the upload itself goes through on its first try.
    assert xrpc == [
        ("com.atproto.server.getSession", 401),
        ("com.atproto.server.getSession", 200),
        ("com.atproto.repo.uploadBlob", 200),
    ], xrpc
    await session.create_record("fm.plyr.track", track("s", audioBlob=ref))


async def test_unreachable_pds_is_upstream_error(http: httpx.AsyncClient) -> None:
    tokens = PasswordTokens(
        did="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        handle=None,
        pds_url=f"http://127.0.0.1:{free_port()}",
        access_jwt="x",
        refresh_jwt="y",
    )
    session = PasswordSession(http, tokens)
    with pytest.raises(UpstreamError, match="could not reach"):
        await session.create_record("fm.plyr.track", track("x"))
    with pytest.raises(UpstreamError):
        await session.get_record("fm.plyr.track", "abc")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "InvalidRequest", "message": "bad record"}, InvalidInput),
        (400, {"error": "RecordNotFound", "message": "Could not locate record"}, NotFound),
        (400, {"error": "InvalidSwap", "message": "Record was at x"}, Conflict),
        (400, {"error": "ExpiredToken", "message": "Token has expired"}, Unauthenticated),
        (400, {"error": "BlobTooLarge", "message": "too big"}, TooLarge),
        (401, {"error": "AuthMissing"}, Unauthenticated),
        (403, {"error": "ScopeMissingError", "message": "Missing scope"}, Forbidden),
        (404, {"error": "XRPCNotSupported"}, NotFound),
        (413, {"error": "PayloadTooLarge", "message": "request entity too large"}, TooLarge),
        (429, {"error": "RateLimitExceeded"}, RateLimited),
        (500, {"error": "InternalServerError"}, UpstreamError),
        (502, None, UpstreamError),
    ],
)
def test_xrpc_error_mapping(status: int, body: dict[str, Any] | None, expected: type[Exception]) -> None:
    # A response object built by hand: this checks only the mapping table (the real PDS paths are above).
    request = httpx.Request("POST", "https://pds.example/xrpc/com.atproto.repo.createRecord")
    resp = httpx.Response(status, json=body, request=request) if body else httpx.Response(status, request=request)
    err = xrpc_error(resp)
    assert type(err) is expected
    if body and "message" in body and status == 400 and expected is InvalidInput:
        assert body["message"] in err.detail
    assert err.status == status  # type: ignore[attr-defined]
