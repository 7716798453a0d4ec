"""Issue 19: a request is one thread hop for its database work. A like or an unlike is one call on the writer's
thread (the whole transaction), a track page and a feed page one call on a reader's, besides the sign-in's own read.

Counted on a real node in process (the `app` fixture: a migrated plyrd.db of its own) by wrapping aiosqlite's
`Connection._execute`, the one door every aiosqlite call goes through to its connection's thread."""

from __future__ import annotations

import contextvars
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiosqlite
import pytest

ARTIST = "did:plc:onehopartist000000000000"
LISTENER = "did:plc:onehoplistener0000000000"


async def add_published_track(db: Any, track_id: int) -> None:
    sha = f"{track_id:064x}"
    now = time.time()
    async with db.write() as conn:
        await conn.execute("INSERT OR IGNORE INTO users(did, handle, pds_url) VALUES (?, ?, ?)",
                           (ARTIST, "onehop.example.com", "https://pds.example.com"))
        await conn.execute("INSERT INTO blobs(sha256, size, mime, refcount, created_at, touched_at)"
                           " VALUES (?, 1000, 'audio/mpeg', 1, ?, ?)", (sha, now, now))
        await conn.execute(
            "INSERT INTO tracks(id, artist_did, title, tags, original_sha, original_ext, original_mime, container,"
            " codec, duration, sample_rate, channels, lossless, status, created_at, updated_at, rkey, record_uri,"
            " record_cid) VALUES (?, ?, ?, '[]', ?, 'mp3', 'audio/mpeg', 'mp3', 'mp3', 60, 44100, 2, 0, 'ready', ?, ?,"
            " ?, ?, ?)",
            (track_id, ARTIST, f"song {track_id}", sha, now + track_id, now + track_id, f"3lonehop{track_id:05d}",
             f"at://{ARTIST}/fm.plyr.track/3lonehop{track_id:05d}",
             "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"))


async def developer_token(app: Any) -> str:
    from plyrd.atproto.xrpc import PasswordTokens

    auth = app.extensions["plyrd"].auth
    creds = PasswordTokens(did=LISTENER, handle="listener.example.com", pds_url="https://pds.example.com",
                           access_jwt="not-a-jwt", refresh_jwt="not-a-jwt")
    token, _ = await auth._create_session(did=LISTENER, handle="listener.example.com",
                                          pds_url="https://pds.example.com", kind="developer", auth_type="password",
                                          credentials=creds.to_dict(), scope="", name="t",
                                          expires_at=time.time() + 3600)
    return str(token)


_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("one_hop_request", default=False)


@contextmanager
def hops(db: Any) -> Iterator[Counter[str]]:
    """Calls to a connection's thread made for the requests sent inside the block, as "writer" and "reader". The
    node's workers (the outbox trying the listener's PDS) run beside them in tasks started before the block, which
    do not carry its context variable, so their hops are not counted."""
    counted: Counter[str] = Counter()
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if _REQUEST.get():
            counted["writer" if self is db._writer else "reader"] += 1
        return await original(self, fn, *args, **kwargs)

    aiosqlite.Connection._execute = counting  # type: ignore[method-assign]
    token = _REQUEST.set(True)
    try:
        yield counted
    finally:
        _REQUEST.reset(token)
        aiosqlite.Connection._execute = original  # type: ignore[method-assign]


@pytest.fixture
async def listener(app: Any) -> dict[str, str]:
    db = app.extensions["plyrd"].db
    for track_id in (1, 2, 3):
        await add_published_track(db, track_id)
    return {"Authorization": f"Bearer {await developer_token(app)}"}


async def test_a_like_and_an_unlike_are_one_hop_on_the_writer(app: Any, client: Any, listener: dict[str, str]) -> None:
    db = app.extensions["plyrd"].db
    await client.get("/tracks/1", headers=listener)  # the session's first use is behind us
    with hops(db) as counted:
        r = await client.post("/tracks/1/like", headers=listener)
    assert r.status_code == 200 and (await r.get_json()) == {"liked": True, "like_count": 1}
    assert counted["writer"] == 1, counted  # the like, its fm.plyr.like and the liked list's record: one call
    assert counted["reader"] <= 1, counted  # the sign-in's session read
    # What the one call did is all there: the like row and two queued records (the like and the liked list).
    rows = await db.fetchall("SELECT collection, op FROM outbox WHERE did = ? ORDER BY seq", (LISTENER,))
    assert [(r["collection"], r["op"]) for r in rows] == [("fm.plyr.like", "put"), ("fm.plyr.list", "put")]

    with hops(db) as counted:
        r = await client.delete("/tracks/1/like", headers=listener)
    assert r.status_code == 200 and (await r.get_json()) == {"liked": False, "like_count": 0}
    assert counted["writer"] == 1 and counted["reader"] <= 1, counted
    # The like never reached the PDS: its put is simply dropped, and the list is rewritten empty.
    rows = await db.fetchall("SELECT collection, op FROM outbox WHERE did = ? ORDER BY seq", (LISTENER,))
    assert [(r["collection"], r["op"]) for r in rows] == [("fm.plyr.list", "put")]
    assert json.loads((await db.fetchone("SELECT record FROM outbox WHERE did = ?", (LISTENER,)))["record"])[
        "items"] == []


async def test_a_refused_like_leaves_nothing(app: Any, client: Any, listener: dict[str, str]) -> None:
    db = app.extensions["plyrd"].db
    r = await client.post("/tracks/99/like", headers=listener)
    assert r.status_code == 404
    async with db.write() as conn:  # the writer is usable: no transaction was left open
        await conn.execute("UPDATE tracks SET record_uri = NULL, record_cid = NULL WHERE id = 2")
    r = await client.post("/tracks/2/like", headers=listener)
    assert r.status_code == 422  # not published yet: nothing to point a like record at
    assert await db.fetchall("SELECT * FROM likes") == []
    assert await db.fetchall("SELECT * FROM outbox") == []


async def test_a_track_page_and_a_feed_page_are_one_hop(app: Any, client: Any, listener: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from plyrd.web import conditional

    monkeypatch.setattr(conditional, "MOMENT", 600.0)  # a slow machine must not see the kept page expire mid-test
    db = app.extensions["plyrd"].db
    await client.get("/tracks/1", headers=listener)
    for headers in (listener, {}):
        with hops(db) as counted:
            r = await client.get("/tracks/2", headers=headers)
        assert r.status_code == 200 and (await r.get_json())["id"] == 2
        assert counted["writer"] == 0 and counted["reader"] == (2 if headers else 1), counted  # (+ the session)
        with hops(db) as counted:
            r = await client.get("/tracks/?limit=2", headers=headers)
        page = await r.get_json()
        assert [t["id"] for t in page["tracks"]] == [3, 2] and page["has_more"]
        # signed in: the session and the page; anonymous: the catalog's count, then the page (kept for a moment)
        assert counted["writer"] == 0 and counted["reader"] == 2, counted
    with hops(db) as counted:  # the anonymous page again, within the moment: the count alone
        r = await client.get("/tracks/?limit=2")
    assert [t["id"] for t in (await r.get_json())["tracks"]] == [3, 2]
    assert counted["writer"] == 0 and counted["reader"] == 1, counted
