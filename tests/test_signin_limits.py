"""Sign-in is throttled (issue 11, item 4): wrong app passwords per account and per client address, sign-in attempts
per address, and pending OAuth sign-ins capped and expired, all refused with 429 + Retry-After before any outbound
request. Against a real node process (behind_proxy, so X-Forwarded-For names the client) and the real PDS; the
lockout's end, and that a refused attempt never reaches the PDS, in-process on a fake clock."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServedNode, free_port, node_fixture

from plyrd.app import create_app
from plyrd.auth.service import (
    ACCOUNT_FAILURES,
    ACCOUNT_OAUTH_STARTS,
    ADDRESS_ATTEMPTS,
    ADDRESS_FAILURES,
    PENDING_MAX,
    PENDING_PER_ADDRESS,
    SignInLimits,
)
from plyrd.config import load_config
from plyrd.ratelimit import RateLimiter, address_key

JSON = {"Accept": "application/json"}
LOCKOUT_AFTER = ACCOUNT_FAILURES[0]  # 10 wrong app passwords for one account
STEP = ACCOUNT_FAILURES[1] / ACCOUNT_FAILURES[0]  # then one more every 90 s

node = node_fixture("signin_limits", PLYRD_SERVER_BEHIND_PROXY="true")


def address() -> str:
    """A client address of its own, named to the node through X-Forwarded-For (behind_proxy trusts one hop)."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def app_password(node: ServedNode, handle: str, password: str, addr: str) -> httpx.Response:
    return httpx.post(f"{node.url}/auth/app-password", json={"handle": handle, "app_password": password},
                      headers={"X-Forwarded-For": addr}, timeout=30)


def start(node: ServedNode, handle: str, addr: str) -> httpx.Response:
    return httpx.get(f"{node.url}/auth/start", params={"handle": handle}, headers={**JSON, "X-Forwarded-For": addr},
                     timeout=30)


def pending_rows(node: ServedNode, where: str = "1", params: tuple[Any, ...] = ()) -> int:
    with sqlite3.connect(node.data / "plyrd.db", timeout=10) as conn:
        return int(conn.execute(f"SELECT count(*) FROM oauth_pending WHERE {where}", params).fetchone()[0])


# ---- through a node process and the real PDS -------------------------------------------------------------------


def test_wrong_app_passwords_lock_the_account_not_the_person_typing_correctly(node: ServedNode, pds) -> None:
    account = pds.create_account("guessed")
    here = address()
    # Typing the right password again and again never counts: only failures do.
    for _ in range(LOCKOUT_AFTER + 2):
        assert app_password(node, account.handle, account.password, here).status_code == 200

    statuses = [app_password(node, account.handle, f"wrong-{i}", here) for i in range(LOCKOUT_AFTER + 2)]
    assert [r.status_code for r in statuses] == [401] * LOCKOUT_AFTER + [429, 429]
    refused = statuses[-1]
    assert STEP - 10 <= int(refused.headers["Retry-After"]) <= STEP
    assert refused.json()["detail"].startswith(
        "too many failed sign-ins for this account: at most 10 every 15 minutes; try again in ")

    # Locked: the right password is refused too, from anywhere, whichever way the account is named, and the form
    # says the same with the same status. (Had the PDS been asked, the right password would have signed in.)
    elsewhere = address()
    for handle in (account.handle, "@" + account.handle.upper(), account.did):
        r = app_password(node, handle, account.password, elsewhere)
        assert r.status_code == 429 and "Retry-After" in r.headers, (handle, r.text)
    form = httpx.post(f"{node.url}/login", data={"handle": account.handle, "app_password": account.password},
                      headers={"X-Forwarded-For": elsewhere})
    assert form.status_code == 429 and int(form.headers["Retry-After"]) > 0
    assert "too many failed sign-ins for this account" in form.text and "session_id" not in form.headers.get(
        "set-cookie", "")

    # Someone else, from another address, signs in as usual.
    other = pds.create_account("bystander")
    r = app_password(node, other.handle, other.password, address())
    assert r.status_code == 200 and r.json()["did"] == other.did


def test_wrong_app_passwords_from_one_address_across_accounts(node: ServedNode, pds) -> None:
    """Password spraying: a few guesses at each of many accounts trips the per-address failure limit."""
    spray = address()
    accounts = [pds.create_account("sprayed") for _ in range(5)]
    statuses = []
    for i in range(25):
        statuses.append(app_password(node, accounts[i % 5].handle, "guess", spray).status_code)
        if statuses[-1] == 429:
            break
    assert statuses == [401] * ADDRESS_FAILURES[0] + [429]  # 4 per account: no account is locked, the address is
    r = app_password(node, accounts[0].handle, accounts[0].password, spray)
    assert r.status_code == 429 and "from your address" in r.json()["detail"]
    assert app_password(node, accounts[0].handle, accounts[0].password, address()).status_code == 200


def test_sign_in_attempts_per_address(node: ServedNode) -> None:
    here = address()
    statuses: list[int] = []
    began = time.monotonic()
    while len(statuses) < 100:
        r = start(node, "not a handle!", here)  # refused as malformed, but still an attempt
        if r.status_code == 429:
            break
        statuses.append(r.status_code)
    took = time.monotonic() - began
    limit, per = ADDRESS_ATTEMPTS
    assert set(statuses) == {400} and limit <= len(statuses) <= limit + took * limit / per + 1
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= per / limit
    assert r.json()["detail"].startswith("too many sign-in attempts from your address: at most 30 a minute")
    # The same limit holds on the app-password route and the form, and a browser gets the page with Retry-After.
    assert app_password(node, "someone.test", "x", here).status_code == 429
    page = httpx.get(f"{node.url}/auth/start", params={"handle": "someone.test"},
                     headers={"Accept": "text/html", "X-Forwarded-For": here})
    assert page.status_code == 429 and "Retry-After" in page.headers and "too many sign-in attempts" in page.text
    # Only the last X-Forwarded-For entry counts (the one the proxy added): a client cannot pick its own address.
    assert start(node, "not a handle!", f"{address()}, {here}").status_code == 429
    assert start(node, "not a handle!", f"{here}, {address()}").status_code == 400


def test_pending_oauth_sign_ins_are_capped_per_address(node: ServedNode, pds) -> None:
    here = address()
    first, second = pds.create_account("pendinga"), pds.create_account("pendingb")
    for i in range(PENDING_PER_ADDRESS):
        r = start(node, (first, second)[i % 2].handle, here)
        assert r.status_code == 307, r.text
    assert pending_rows(node, "client = ?", (here,)) == PENDING_PER_ADDRESS
    r = start(node, first.handle, here)
    assert r.status_code == 429 and 500 <= int(r.headers["Retry-After"]) <= 600  # when the oldest one expires
    assert r.json()["detail"].startswith("too many sign-ins in progress from your address (at most 20 at a time)")
    assert pending_rows(node, "client = ?", (here,)) == PENDING_PER_ADDRESS  # nothing added
    assert start(node, second.handle, address()).status_code == 307  # another address is not held


def test_pending_oauth_sign_ins_are_capped_on_the_node_and_expire(node: ServedNode, pds) -> None:
    account = pds.create_account("crowded")
    now = time.time()
    live = PENDING_MAX - pending_rows(node, "expires_at > ?", (now,)) - 2
    with sqlite3.connect(node.data / "plyrd.db", timeout=10) as conn:
        conn.executemany(
            "INSERT INTO oauth_pending(state, purpose, sealed, expires_at, client) VALUES (?, 'login', X'', ?, ?)",
            [(f"flood-{i}", now + 300, f"flood-{i % 200}") for i in range(live)]
            + [(f"stale-{i}", now - 1, "stale") for i in range(50)],
        )
    try:
        assert start(node, account.handle, address()).status_code == 307  # the stale ones are deleted first
        assert pending_rows(node, "expires_at <= ?", (time.time(),)) == 0
        assert start(node, account.handle, address()).status_code == 307
        assert pending_rows(node) == PENDING_MAX
        r = start(node, account.handle, address())
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 300
        assert r.json()["detail"].startswith("too many sign-ins are in progress on this node (at most 1000 at a time)")
        assert pending_rows(node) == PENDING_MAX
    finally:
        with sqlite3.connect(node.data / "plyrd.db", timeout=10) as conn:
            conn.execute("DELETE FROM oauth_pending WHERE state LIKE 'flood-%'")


def test_new_pending_sign_ins_live_ten_minutes(node: ServedNode, pds) -> None:
    here = address()
    before = time.time()
    assert start(node, pds.create_account("ttl").handle, here).status_code == 307
    with sqlite3.connect(node.data / "plyrd.db", timeout=10) as conn:
        (expires,) = conn.execute("SELECT expires_at FROM oauth_pending WHERE client = ?", (here,)).fetchone()
    assert before + 600 <= expires <= time.time() + 600


# ---- in-process, on a fake clock: the lockout ends, and refused attempts never reach the PDS ----------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def node_app(tmp_path: Path, pds):
    app = create_app(load_config(env={}, overrides={
        "storage.data_dir": str(tmp_path / "data"),
        "server.port": free_port(),
        "atproto.plc_url": pds.plc_url,
        "atproto.handle_resolver_url": pds.pds_url,
        "atproto.allow_private_addresses": True,
    }))
    async with app.test_app():
        yield app


def outbound(n: Any, path_end: str) -> Callable[[], int]:
    """Count the node's outbound requests whose path ends with `path_end`."""
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith(path_end):
            seen.append(str(request.url))

    n.http.event_hooks["request"].append(hook)
    return lambda: len(seen)


async def test_the_lockout_ends_and_never_reaches_the_pds(node_app, pds) -> None:
    n = node_app.extensions["plyrd"]
    clock = Clock()
    n.auth.limits = SignInLimits(clock=clock)
    sessions = outbound(n, "/com.atproto.server.createSession")
    account = pds.create_account("lockout")

    async def sign_in(password: str, handle: str = account.handle, addr: str = "192.0.2.1") -> Any:
        # a fresh client each time: a signed-in client would need a CSRF token for the next sign-in
        return await node_app.test_client().post("/auth/app-password", json={"handle": handle,
                                                                            "app_password": password},
                                                 scope_base={"client": (addr, 1234)})

    statuses = [(await sign_in("wrong")).status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429, 429]
    assert sessions() == 10  # the two refused attempts never reached the PDS
    r = await sign_in(account.password)
    assert r.status_code == 429 and r.headers["Retry-After"] == "90"
    assert sessions() == 10

    clock.now += 89
    assert (await sign_in(account.password, addr="198.51.100.7")).status_code == 429
    clock.now += 1.5  # one failure has worn off: the next attempt may go, and the right password succeeds
    r = await sign_in(account.password)
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert sessions() == 11
    # ...and gave its token back: one more wrong guess is allowed, then the account is held again.
    assert (await sign_in("wrong")).status_code == 401
    assert (await sign_in("wrong")).status_code == 429
    assert sessions() == 12

    # An unknown handle (nothing to guess) and a PDS that cannot be reached do not count as failures.
    for _ in range(12):
        assert (await sign_in("x", handle="nobody-here.test", addr="192.0.2.9")).status_code == 404


async def test_throttled_and_capped_starts_make_no_par_request(node_app, pds) -> None:
    n = node_app.extensions["plyrd"]
    n.auth.limits = SignInLimits(clock=Clock())
    pars = outbound(n, "/oauth/par")
    account = pds.create_account("parless")

    async def begin(addr: str) -> Any:
        return await node_app.test_client().get("/auth/start", query_string={"handle": account.handle},
                                                headers=JSON, scope_base={"client": (addr, 1234)})

    assert (await begin("192.0.2.1")).status_code == 307
    made = pars()
    assert made >= 1  # (a second one when the PDS first asks for a DPoP nonce)
    async with n.db.write() as conn:
        await conn.executemany(
            "INSERT INTO oauth_pending(state, purpose, sealed, expires_at, client) VALUES (?, 'login', X'', ?, ?)",
            [(f"flood-{i}", time.time() + 300, None) for i in range(PENDING_MAX - 1)],
        )
    r = await begin("192.0.2.2")
    assert r.status_code == 429 and "in progress on this node" in (await r.get_json())["detail"]
    assert pars() == made
    assert (await n.db.fetchone("SELECT count(*) AS c FROM oauth_pending"))["c"] == PENDING_MAX
    await n.db.execute("DELETE FROM oauth_pending WHERE state LIKE 'flood-%'")

    # Over the per-account start limit (20 per 15 minutes; the refusal above gave its start back): refused before
    # resolving the handle or any PAR.
    for i in range(ACCOUNT_OAUTH_STARTS[0] - 1):
        assert (await begin(f"192.0.2.{10 + i}")).status_code == 307
    made = pars()
    r = await begin("192.0.2.99")
    assert r.status_code == 429 and "sign-ins started for this account" in (await r.get_json())["detail"]
    assert pars() == made


# ---- the buckets ---------------------------------------------------------------------------------------------


def test_refund_and_bounded_memory() -> None:
    clock = Clock()
    limiter = RateLimiter(3, per=60, max_keys=50, clock=clock)
    for _ in range(3):
        assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    limiter.refund("a")
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    limiter.refund("never-seen")  # nothing to give back to, nothing stored
    assert len(limiter) == 1

    # A flood of distinct keys: never more than max_keys buckets...
    for i in range(10_000):
        limiter.take(f"flood-{i}")
    assert len(limiter) == 50
    # ...and buckets that refilled go away by themselves, oldest first.
    clock.now += 60
    limiter.take("late")
    assert len(limiter) == 1


def test_address_keys() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("::1") == "::1"
    assert address_key(None) == "unknown"
    assert address_key("x" * 1000) == "x" * 64
