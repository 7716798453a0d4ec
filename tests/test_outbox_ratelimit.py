"""The outbox and a PDS that rate limits: the wait it names (Retry-After in seconds or as an HTTP date, ATProto's
RateLimit-Reset) is honoured per DID, capped, and a batch it turned away is not retried row by row.

The reference PDS cannot be made to answer 429 on demand, so these tests use a small scripted HTTP server on
127.0.0.1 that answers XRPC writes the way a limiting PDS does (status, headers, XRPC error body)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from plyrd.atproto import records as r
from plyrd.atproto.dpop import NonceStore
from plyrd.atproto.jwt import ES256Key
from plyrd.atproto.oauth import TokenSet
from plyrd.atproto.outbox import RETRY_AFTER_MAX, Outbox, enqueue_put, outbox_counts
from plyrd.atproto.tids import tid_for_time
from plyrd.atproto.xrpc import OAuthSession, PasswordSession, PasswordTokens, retry_after, xrpc_error
from plyrd.db import Database
from plyrd.errors import RateLimited, UpstreamError

DID = "did:plc:ratelimitedaaaaaaaaaaaaa"
TRACK_URI = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
WHEN = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)

Answer = tuple[int, dict[str, str]]  # status, headers


class StubPDS:
    """Answers each XRPC request with the next scripted (status, headers), then 200 {} once the script is spent;
    records (monotonic time, method name) of every request."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stub._lock:
                    stub.requests.append((time.monotonic(), self.path.split("?")[0].rsplit(".", 1)[-1]))
                    status, headers = stub.script.pop(0) if stub.script else (200, {})
                body = b"{}" if status == 200 else json.dumps(
                    {"error": "RateLimitExceeded" if status == 429 else "InternalServerError",
                     "message": "slow down"}).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def writes(self) -> list[str]:
        return [name for _, name in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubPDS]:
    s = StubPDS()
    yield s
    s.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def session_on(http: httpx.AsyncClient, stub: StubPDS) -> PasswordSession:
    # Not a JWT: the session never thinks it expired and never refreshes, so every request is a write.
    return PasswordSession(http, PasswordTokens(did=DID, handle=None, pds_url=stub.url, access_jwt="access",
                                                refresh_jwt="refresh"))


def outbox(db: Database, session: PasswordSession) -> Outbox:
    # Its own backoff is short (at most 0.2 s), so any longer wait can only be the one the PDS asked for.
    return Outbox(db, lambda did: session if did == DID else None, lambda sha: Path("/nonexistent") / sha,
                  poll_interval=5.0, backoff_base=0.05, backoff_max=0.2)


@asynccontextmanager
async def running(box: Outbox) -> AsyncIterator[Outbox]:
    stop = asyncio.Event()
    task = asyncio.create_task(box.run(stop))
    try:
        yield box
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def queue_likes(db: Database, n: int) -> None:
    async with db.write() as conn:
        for i in range(n):
            rkey = tid_for_time(datetime.fromtimestamp(1_800_000_000 + i, UTC))
            record = r.like_record(TRACK_URI, TRACK_CID, WHEN)
            await enqueue_put(conn, did=DID, collection="fm.plyr.like", rkey=rkey, record=record)


async def drained(db: Database, within: float) -> None:
    deadline = time.monotonic() + within
    while (c := await outbox_counts(db))["pending"] or c["sending"]:
        assert time.monotonic() < deadline, f"outbox not drained after {within} s: {c}"
        await asyncio.sleep(0.02)


async def refused_once(db: Database, within: float = 10.0) -> Any:
    """The first row, once a refused attempt has put it back in the queue."""
    deadline = time.monotonic() + within
    while True:
        row = await db.fetchone("SELECT state, attempts, last_error, next_attempt_at FROM outbox ORDER BY seq")
        if row is not None and row["state"] == "pending" and row["attempts"] == 1:
            return row
        assert time.monotonic() < deadline, "the first attempt never came back"
        await asyncio.sleep(0.01)


def in_seconds(seconds: int) -> tuple[float, int]:
    """A whole unix second at least `seconds - 1` from now (headers carry whole seconds), and that second."""
    at = math.floor(time.time()) + seconds
    return at - time.time(), at


# ---- the outbox waits as long as the PDS asked --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["retry-after seconds", "retry-after date", "ratelimit-reset", "no header"])
async def test_a_429_holds_the_did_for_the_wait_the_pds_named(db: Database, http: httpx.AsyncClient, stub: StubPDS,
                                                              kind: str) -> None:
    _, at = in_seconds(3)
    headers = {
        "retry-after seconds": {"Retry-After": "2"},
        "retry-after date": {"Retry-After": format_datetime(datetime.fromtimestamp(at, UTC), usegmt=True)},
        "ratelimit-reset": {"RateLimit-Limit": "5000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(at),
                            "RateLimit-Policy": "5000;w=3600"},
        "no header": {},
    }[kind]
    stub.script = [(429, headers)]
    await queue_likes(db, 1)
    async with running(outbox(db, session_on(http, stub))):
        row = await refused_once(db)
        assert "rate limiting" in row["last_error"]
        if kind != "no header":
            # The row itself carries the wait, so a restarted node waits too.
            assert row["next_attempt_at"] - time.time() > 1.5
        await drained(db, within=10)
    assert stub.writes() == ["putRecord", "putRecord"]  # refused once, then accepted: nothing in between
    gap = stub.requests[1][0] - stub.requests[0][0]
    if kind == "no header":
        assert gap < 1.0  # only the outbox's own short backoff
    else:
        assert gap >= 1.9, f"asked to wait about 2 s or more, tried again after {gap:.2f} s"
        assert gap < 4.5  # and not much longer than asked


async def test_a_503_with_retry_after_is_not_retried_row_by_row(db: Database, http: httpx.AsyncClient,
                                                                stub: StubPDS) -> None:
    stub.script = [(503, {"Retry-After": "2"})]
    await queue_likes(db, 3)
    async with running(outbox(db, session_on(http, stub))) as box:
        await drained(db, within=10)
    # Without honouring it: the refused batch goes row by row at once (putRecord x3) and retries within 0.2 s.
    assert stub.writes() == ["applyWrites", "applyWrites"]
    assert box.stats["fallbacks"] == 0 and box.stats["written"] == 3
    assert stub.requests[1][0] - stub.requests[0][0] >= 1.9


async def test_a_long_wait_is_capped(db: Database, http: httpx.AsyncClient, stub: StubPDS) -> None:
    stub.script = [(429, {"Retry-After": str(7 * 86400)})]  # a week
    await queue_likes(db, 1)
    async with running(outbox(db, session_on(http, stub))) as box:
        row = await refused_once(db)
        hold = box._hold[DID] - time.time()
        assert RETRY_AFTER_MAX - 5 < hold <= RETRY_AFTER_MAX
        assert RETRY_AFTER_MAX - 5 < row["next_attempt_at"] - time.time() <= RETRY_AFTER_MAX + 1
        await asyncio.sleep(0.5)
    assert stub.writes() == ["putRecord"]  # held: not one more request
    assert Outbox.asked_wait(10) >= 10 and Outbox.asked_wait(-3) == 0


# ---- the error carries the header, whichever kind of session made the call ---------------------------------------


async def test_both_session_kinds_carry_the_wait(http: httpx.AsyncClient, stub: StubPDS) -> None:
    key = ES256Key.generate()
    tokens = TokenSet(did=DID, handle=None, pds_url=stub.url, issuer=stub.url, access_token="access",
                      refresh_token=None, expires_at=time.time() + 3600, scope="atproto", dpop_jwk=key.private_jwk(),
                      token_endpoint=f"{stub.url}/token", revocation_endpoint=None)
    oauth = OAuthSession(http, None, tokens, nonces=NonceStore())  # type: ignore[arg-type]  # never refreshes here
    for session in (session_on(http, stub), oauth):
        stub.script = [(429, {"Retry-After": "17"}), (503, {"Retry-After": "4"})]
        with pytest.raises(RateLimited) as limited:
            await session.put_record("fm.plyr.like", "3kabcdefghij2", {"$type": "fm.plyr.like"})
        assert limited.value.retry_after == 17  # type: ignore[attr-defined]
        with pytest.raises(UpstreamError) as unavailable:
            await session.delete_record("fm.plyr.like", "3kabcdefghij2")
        assert unavailable.value.retry_after == 4  # type: ignore[attr-defined]


def answer(status: int, headers: dict[str, str]) -> httpx.Response:
    request = httpx.Request("POST", "https://pds.example/xrpc/com.atproto.repo.applyWrites")
    return httpx.Response(status, headers=headers, json={"error": "RateLimitExceeded"}, request=request)


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (429, {"Retry-After": "120"}, 120.0),
    (503, {"Retry-After": " 7 "}, 7.0),
    (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a moment already past: no wait
    (429, {"Retry-After": "Thu, 01 Jan 2100 00:00:00 GMT"}, 4102444800.0 - 1_900_000_000),
    (429, {"Retry-After": "Thu, 01 Jan 2100 00:00:00 -0000"}, 4102444800.0 - 1_900_000_000),  # GMT, not local
    (429, {"Retry-After": "-5"}, 0.0),
    (429, {"Retry-After": "soon"}, None),
    (429, {"Retry-After": "soon", "RateLimit-Reset": "1900000090"}, 90.0),  # an unreadable one falls through
    (429, {"RateLimit-Reset": "1900000030", "RateLimit-Remaining": "0"}, 30.0),
    (429, {"RateLimit-Reset": "45"}, 45.0),  # the IETF draft's delta seconds
    (503, {"RateLimit-Reset": "1900000030", "RateLimit-Remaining": "12"}, None),  # points left: not the limit
    (500, {"RateLimit-Reset": "1900000030", "RateLimit-Remaining": "0"}, 30.0),
    (429, {"Retry-After": "inf"}, None),
    (429, {}, None),
])
def test_retry_after_headers(status: int, headers: dict[str, str], expected: float | None) -> None:
    resp = answer(status, headers)
    assert retry_after(resp, now=1_900_000_000) == expected
    err = xrpc_error(resp)
    assert (err.retry_after is None) == (expected is None)  # type: ignore[attr-defined]
