"""The durable PDS outbox against the real PDS: writes, updates, deletes, coalescing, order, waiting for a session,
refusals, an outage in the middle of 200 writes, a restarted worker, and blobs uploaded once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from pds_harness import Account, PDSHarness

from plyrd.app import create_app
from plyrd.atproto import cbor, tids
from plyrd.atproto import records as r
from plyrd.atproto.outbox import Outbox, enqueue_delete, enqueue_put, outbox_counts, retry_failed
from plyrd.atproto.xrpc import PasswordSession, PasswordTokens
from plyrd.config import load_config
from plyrd.db import Database
from plyrd.errors import InvalidInput

TRACK_URI = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
WHEN = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)


def like(n: int = 0) -> dict[str, Any]:
    return r.like_record(TRACK_URI.replace("3kabcdefghij2", tids.tid_for_time(datetime.fromtimestamp(n, UTC))),
                         TRACK_CID, WHEN)


def profile(bio: str) -> dict[str, Any]:
    return r.profile_record(created_at=WHEN, bio=bio)


class Env:
    """A database, PDS sessions that count their requests, a blob directory, and outboxes over them."""

    def __init__(self, db: Database, pds: PDSHarness, blob_dir: Path) -> None:
        self.db = db
        self.pds = pds
        self.blob_dir = blob_dir
        self.requests: list[str] = []  # XRPC method names, in the order sent
        self.http = httpx.AsyncClient(timeout=30, event_hooks={"request": [self._count]})
        self.sessions: dict[str, PasswordSession] = {}

    async def _count(self, request: httpx.Request) -> None:
        self.requests.append(request.url.path.rsplit(".", 1)[-1])

    def sign_in(self, account: Account) -> None:
        self.sessions[account.did] = PasswordSession(self.http, PasswordTokens(
            did=account.did, handle=account.handle, pds_url=self.pds.pds_url, access_jwt=account.access_jwt,
            refresh_jwt=account.refresh_jwt))

    async def session_for(self, did: str) -> PasswordSession | None:
        return self.sessions.get(did)

    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256

    def store_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blob_path(sha).write_bytes(data)
        return sha

    def outbox(self, **options: Any) -> Outbox:
        options = {"poll_interval": 5.0, "backoff_base": 0.05, "backoff_max": 0.5, **options}
        return Outbox(self.db, self.session_for, self.blob_path, **options)

    @asynccontextmanager
    async def running(self, outbox: Outbox | None = None) -> AsyncIterator[Outbox]:
        outbox = outbox or self.outbox()
        stop = asyncio.Event()
        task = asyncio.create_task(outbox.run(stop))
        try:
            yield outbox
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    def writes(self) -> list[str]:
        return [m for m in self.requests if m in ("putRecord", "deleteRecord", "applyWrites", "uploadBlob")]


@pytest.fixture
async def env(db: Database, pds: PDSHarness, tmp_path: Path) -> AsyncIterator[Env]:
    blob_dir = tmp_path / "blobs"
    blob_dir.mkdir()
    e = Env(db, pds, blob_dir)
    yield e
    await e.http.aclose()


@pytest.fixture
def pds_back_up(pds: PDSHarness) -> Iterator[PDSHarness]:
    """For outage tests: the PDS is running again afterwards, whatever happened."""
    yield pds
    if not pds.pds_running:
        pds.start_pds()


async def wait_drained(db: Database, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        counts = await outbox_counts(db)
        if counts["pending"] == 0 and counts["sending"] == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained after {within} s: {counts}")
        await asyncio.sleep(0.05)


async def pds_records(pds: PDSHarness, did: str, collection: str) -> dict[str, dict[str, Any]]:
    """Everything in one collection of the repo, by rkey (listRecords, every page), read without any session."""
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    async with httpx.AsyncClient(timeout=30) as h:
        while True:
            params = {"repo": did, "collection": collection, "limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await h.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords", params=params)).json()
            for rec in page["records"]:
                rkey = rec["uri"].rsplit("/", 1)[1]
                assert rkey not in out, f"{rkey} listed twice"
                out[rkey] = rec
            cursor = page.get("cursor")
            if not cursor or not page["records"]:
                return out


async def put(db: Database, did: str, collection: str, rkey: str, record: dict[str, Any],
              blobs: list[tuple[str, str, int]] | None = None) -> tuple[str, str]:
    async with db.write() as conn:
        return await enqueue_put(conn, did=did, collection=collection, rkey=rkey, record=record, blobs=blobs or [])


async def delete(db: Database, did: str, collection: str, rkey: str) -> bool:
    async with db.write() as conn:
        return await enqueue_delete(conn, did=did, collection=collection, rkey=rkey)


# --------------------------------------------------------------------------- the basics


async def test_writes_arrive_with_the_cids_computed_locally(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    queued: dict[str, tuple[str, str]] = {}
    async with env.running() as outbox:
        async with env.db.write() as conn:  # several writes in one local transaction
            for n in range(3):
                rkey = tids.new_tid()
                queued[rkey] = await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=rkey, record=like(n))
        await wait_drained(env.db)
    on_pds = await pds_records(env.pds, did, "fm.plyr.like")
    assert set(on_pds) == set(queued)
    for rkey, (uri, cid) in queued.items():
        assert on_pds[rkey]["uri"] == uri and on_pds[rkey]["cid"] == cid
    known = await env.db.fetchall("SELECT uri, cid FROM pds_records WHERE did = ?", (did,))
    assert {(row["uri"], row["cid"]) for row in known} == set(queued.values())
    assert outbox.stats["written"] == 3 and await outbox_counts(env.db) == {"pending": 0, "sending": 0, "failed": 0}
    assert env.writes() == ["applyWrites"]  # one batch for the three


async def test_updates_and_consecutive_puts_collapse(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    async with env.running():
        await put(env.db, did, "fm.plyr.actor.profile", "self", profile("first"))
        await wait_drained(env.db)
    assert (await pds_records(env.pds, did, "fm.plyr.actor.profile"))["self"]["value"]["bio"] == "first"

    # While no worker runs, five edits of one record leave one row, holding the last.
    for n in range(5):
        uri, cid = await put(env.db, did, "fm.plyr.actor.profile", "self", profile(f"edit {n}"))
    rows = await env.db.fetchall("SELECT record FROM outbox")
    assert len(rows) == 1 and '"edit 4"' in rows[0]["record"]
    env.requests.clear()
    async with env.running():
        await wait_drained(env.db)
    assert env.writes() == ["putRecord"]
    rec = (await pds_records(env.pds, did, "fm.plyr.actor.profile"))["self"]
    assert rec["value"] == profile("edit 4") and rec["cid"] == cid and rec["uri"] == uri
    row = await env.db.fetchone("SELECT cid FROM pds_records WHERE uri = ?", (uri,))
    assert row["cid"] == cid


async def test_deletes(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    keep, gone = tids.new_tid(), tids.new_tid()
    async with env.running():
        await put(env.db, did, "fm.plyr.like", keep, like(1))
        await put(env.db, did, "fm.plyr.like", gone, like(2))
        await wait_drained(env.db)
        assert set(await pds_records(env.pds, did, "fm.plyr.like")) == {keep, gone}
        assert await delete(env.db, did, "fm.plyr.like", gone) is True
        await wait_drained(env.db)
    assert set(await pds_records(env.pds, did, "fm.plyr.like")) == {keep}
    assert [row["rkey"] for row in await env.db.fetchall("SELECT rkey FROM pds_records")] == [keep]
    # Deleting something plyrd never wrote still asks the PDS (it may predate plyrd); a no-op there.
    env.requests.clear()
    async with env.running():
        assert await delete(env.db, did, "fm.plyr.like", tids.new_tid()) is True
        await wait_drained(env.db)
    assert env.writes() == ["deleteRecord"]


async def test_an_unlike_before_the_like_reached_the_pds_sends_nothing(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    rkey = tids.new_tid()
    await put(env.db, did, "fm.plyr.like", rkey, like())
    await put(env.db, did, "fm.plyr.like", rkey, like())
    assert await delete(env.db, did, "fm.plyr.like", rkey) is False
    assert await env.db.fetchall("SELECT * FROM outbox") == []
    async with env.running():
        await asyncio.sleep(0.3)
        await wait_drained(env.db)
    assert env.requests == []  # not one request
    assert await pds_records(env.pds, did, "fm.plyr.like") == {}

    # Once the like is on the PDS, an unlike is sent; a re-like before that is sent turns it back into a put.
    async with env.running():
        await put(env.db, did, "fm.plyr.like", rkey, like())
        await wait_drained(env.db)
    assert await delete(env.db, did, "fm.plyr.like", rkey) is True
    assert await delete(env.db, did, "fm.plyr.like", rkey) is True
    assert [row["op"] for row in await env.db.fetchall("SELECT op FROM outbox")] == ["delete"]
    await put(env.db, did, "fm.plyr.like", rkey, like(9))
    assert [row["op"] for row in await env.db.fetchall("SELECT op FROM outbox")] == ["put"]
    async with env.running():
        await wait_drained(env.db)
    assert (await pds_records(env.pds, did, "fm.plyr.like"))[rkey]["value"] == like(9)


async def test_an_unlike_after_a_like_sent_without_an_answer_is_sent(env: Env, pds_account: Account) -> None:
    """The like went out, the PDS committed it, but the answer was lost (it went down mid-response): the row is
    back in the queue. An unlike now must not just cancel it, or the like would stay on the PDS for good."""
    env.sign_in(pds_account)
    did = pds_account.did
    rkey = tids.new_tid()
    await put(env.db, did, "fm.plyr.like", rkey, like())
    # What a transient failure after the PDS committed leaves: the record there, the row pending, one attempt.
    await env.sessions[did].put_record("fm.plyr.like", rkey, like())
    await env.db.execute("UPDATE outbox SET attempts = 1")
    assert await delete(env.db, did, "fm.plyr.like", rkey) is True
    assert [row["op"] for row in await env.db.fetchall("SELECT op FROM outbox")] == ["delete"]
    async with env.running():
        await wait_drained(env.db)
    assert await pds_records(env.pds, did, "fm.plyr.like") == {}


@pytest.mark.parametrize("apply_writes", [True, False], ids=["batched", "one-by-one"])
async def test_order_per_record_while_the_worker_runs(env: Env, pds_account: Account, apply_writes: bool) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    rkeys = [tids.new_tid() for _ in range(6)]
    model: dict[str, dict[str, Any] | None] = {}
    rng = random.Random(7)
    async with env.running(env.outbox(apply_writes=apply_writes, batch_size=4)):
        for step in range(150):
            rkey = rng.choice(rkeys)
            if rng.random() < 0.3:
                await delete(env.db, did, "fm.plyr.comment", rkey)
                model[rkey] = None
            else:
                record = r.comment_record(r.strong_ref(TRACK_URI, TRACK_CID), f"version {step}", step, WHEN)
                await put(env.db, did, "fm.plyr.comment", rkey, record)
                model[rkey] = record
            if step % 10 == 0:
                await asyncio.sleep(0.02)  # let batches go out between writes
        await wait_drained(env.db)
    on_pds = await pds_records(env.pds, did, "fm.plyr.comment")
    assert {k: v["value"] for k, v in on_pds.items()} == {k: v for k, v in model.items() if v is not None}
    assert len(env.writes()) > 5  # the writes really interleaved with sending


async def test_enqueue_validates_and_joins_the_callers_transaction(env: Env, pds_account: Account) -> None:
    did = pds_account.did
    with pytest.raises(InvalidInput, match=r"\$\.createdAt"):
        await put(env.db, did, "fm.plyr.like", tids.new_tid(), {**like(), "createdAt": "yesterday"})
    with pytest.raises(InvalidInput, match="TID"):
        await put(env.db, did, "fm.plyr.like", "self", like())
    with pytest.raises(InvalidInput, match="not a DID"):
        await put(env.db, "alice.test", "fm.plyr.like", tids.new_tid(), like())
    blob = cbor.blob_ref(hashlib.sha256(b"x").hexdigest(), "audio/mpeg", 1)
    track = r.track_record(title="T", artist="A", file_type="mp3", created_at=WHEN, audio_blob=blob)
    with pytest.raises(InvalidInput, match="references blob"):
        await put(env.db, did, "fm.plyr.track", tids.new_tid(), track)  # the blob is neither given nor on the PDS

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with env.db.write() as conn:
            await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=tids.new_tid(), record=like())
            raise Rollback  # the local change failed: the PDS write goes with it
    assert await env.db.fetchall("SELECT * FROM outbox") == []


# --------------------------------------------------------------------------- sessions, refusals, outages, restarts


@pytest.fixture
async def node_app(tmp_path: Path, pds: PDSHarness) -> AsyncIterator[Any]:
    config = load_config(env={}, overrides={
        "storage.data_dir": str(tmp_path / "data"), "server.port": free_port(), "atproto.plc_url": pds.plc_url,
        "atproto.handle_resolver_url": pds.pds_url, "atproto.allow_private_addresses": True,
    })
    app = create_app(config)
    async with app.test_app():
        yield app


async def test_rows_wait_for_a_session_and_drain_after_sign_in(node_app: Any, pds: PDSHarness,
                                                               pds_account: Account) -> None:
    node = node_app.extensions["plyrd"]
    did = pds_account.did
    assert "outbox" in node.workers.names
    node.outbox.poll_interval = 0.3  # the node's worker looks again this often for users who were away
    assert await node.auth.pds_session_for_did(did) is None
    rkey = tids.new_tid()
    uri, cid = await put(node.db, did, "fm.plyr.like", rkey, like())
    await asyncio.sleep(1.0)
    assert (await outbox_counts(node.db))["pending"] == 1  # nobody with that DID is signed in: the row waits
    assert await pds_records(pds, did, "fm.plyr.like") == {}

    r_ = await node_app.test_client().post("/auth/app-password",
                                           json={"handle": pds_account.handle, "app_password": pds_account.password})
    assert r_.status_code == 200
    assert await node.auth.pds_session_for_did(did) is not None
    await wait_drained(node.db, within=10)
    on_pds = await pds_records(pds, did, "fm.plyr.like")
    assert on_pds[rkey]["uri"] == uri and on_pds[rkey]["cid"] == cid


async def test_a_4xx_fails_the_row_with_its_error_and_spares_the_others(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    good = [tids.new_tid() for _ in range(3)]
    async with env.db.write() as conn:
        await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=good[0], record=like(0))
        # A row the PDS refuses (plyrd's own checks would have stopped it: written straight into the table).
        await conn.execute(
            "INSERT INTO outbox(did, collection, rkey, op, record, cid) VALUES (?, 'fm.plyr.like', 'bad rkey!', "
            "'put', ?, 'x')", (did, '{"$type": "fm.plyr.like"}'))
        for rkey in good[1:]:
            await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=rkey, record=like(1))
    async with env.running() as outbox:
        await wait_drained(env.db)
    assert set(await pds_records(env.pds, did, "fm.plyr.like")) == set(good)
    failed = await env.db.fetchall("SELECT * FROM outbox")
    assert len(failed) == 1 and failed[0]["state"] == "failed" and failed[0]["attempts"] == 1
    assert "Invalid record key" in failed[0]["last_error"]
    assert outbox.stats["failed"] == 1 and outbox.stats["fallbacks"] == 1  # the batch was refused, then row by row

    assert await retry_failed(env.db) == 1
    async with env.running():
        await wait_drained(env.db)
    assert (await outbox_counts(env.db))["failed"] == 1  # still refused: retrying cannot fix it


@pytest.mark.parametrize("apply_writes", [True, False], ids=["batched", "one-by-one"])
async def test_pds_outage_during_200_writes(env: Env, pds_back_up: PDSHarness, pds_account: Account,
                                            apply_writes: bool) -> None:
    pds = pds_back_up
    env.sign_in(pds_account)
    did = pds_account.did
    expected: dict[str, str] = {}
    async with env.running(env.outbox(apply_writes=apply_writes, batch_size=25)) as outbox:
        for txn in range(20):
            if txn == 6:
                for _ in range(1000):  # some writes are through; others are still going out
                    if outbox.stats["written"]:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(pds.stop_pds)
            async with env.db.write() as conn:
                for i in range(10):
                    rkey = tids.new_tid()
                    _, cid = await enqueue_put(conn, did=did, collection="fm.plyr.like", rkey=rkey,
                                               record=like(txn * 10 + i))
                    expected[rkey] = cid
            await asyncio.sleep(0.03)
        await asyncio.sleep(1.5)  # retries fail meanwhile
        assert outbox.stats["retries"] >= 2
        assert (await outbox_counts(env.db))["pending"] > 0
        written_before = outbox.stats["written"]
        await asyncio.to_thread(pds.start_pds)
        await wait_drained(env.db, within=60)
    on_pds = await pds_records(pds, did, "fm.plyr.like")  # pds_records() also asserts no rkey is listed twice
    assert len(on_pds) == 200 and {k: v["cid"] for k, v in on_pds.items()} == expected
    assert await outbox_counts(env.db) == {"pending": 0, "sending": 0, "failed": 0}
    assert 0 < written_before < 200
    assert (await env.db.fetchone("SELECT count(*) FROM pds_records WHERE did = ?", (did,)))[0] == 200


async def test_a_new_outbox_on_the_same_database_resumes(env: Env, pds_account: Account) -> None:
    did = pds_account.did
    rkeys = [tids.new_tid() for _ in range(60)]
    # First worker: the user is not signed in here, so everything waits.
    async with env.running():
        for rkey in rkeys[:30]:
            await put(env.db, did, "fm.plyr.like", rkey, like())
        await asyncio.sleep(0.2)
    # Then the worker is cancelled in the middle of sending (as by a hard stop).
    env.sign_in(pds_account)
    for rkey in rkeys[30:]:
        await put(env.db, did, "fm.plyr.like", rkey, like())
    first_put = asyncio.Event()

    async def watch(request: httpx.Request) -> None:
        if request.url.path.endswith("putRecord"):
            first_put.set()

    env.http.event_hooks["request"].append(watch)
    task = asyncio.create_task(env.outbox(apply_writes=False).run(asyncio.Event()))
    await asyncio.wait_for(first_put.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    counts = await outbox_counts(env.db)
    assert counts["sending"] == 0 and counts["pending"] > 0  # what it had claimed went back to the queue
    # A process killed outright leaves rows `sending`: the next worker takes them up too.
    await env.db.execute("UPDATE outbox SET state = 'sending' WHERE seq IN (SELECT seq FROM outbox LIMIT 5)")
    async with env.running():
        await wait_drained(env.db)
    assert set(await pds_records(env.pds, did, "fm.plyr.like")) == set(rkeys)


# --------------------------------------------------------------------------- blobs


async def test_track_blob_is_uploaded_once_and_served_by_the_pds(env: Env, pds: PDSHarness,
                                                                 pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    audio = os.urandom(700_000)
    sha = env.store_blob(audio)
    spec = (sha, "audio/mpeg", len(audio))
    blob = cbor.blob_ref(*spec)

    def track(title: str) -> dict[str, Any]:
        return r.track_record(title=title, artist="Ada", file_type="mp3", created_at=WHEN, audio_blob=blob,
                              audio_url="https://node.example/audio/1")

    first, second = tids.new_tid(), tids.new_tid()
    async with env.running() as outbox:
        await put(env.db, did, "fm.plyr.track", first, track("One"), [spec])
        await wait_drained(env.db)
        await put(env.db, did, "fm.plyr.track", first, track("One (edit)"), [spec])  # a metadata edit
        await put(env.db, did, "fm.plyr.track", second, track("Two"), [spec])  # same audio, another track
        await wait_drained(env.db)
    assert env.writes().count("uploadBlob") == 1 and outbox.stats["blobs_uploaded"] == 1
    on_pds = await pds_records(pds, did, "fm.plyr.track")
    assert on_pds[first]["value"] == track("One (edit)") and on_pds[second]["value"]["audioBlob"] == blob
    async with httpx.AsyncClient(timeout=30) as h:
        got = await h.get(f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob",
                          params={"did": did, "cid": blob["ref"]["$link"]})
    assert got.status_code == 200 and got.content == audio
    stored = await env.db.fetchone("SELECT cid, size FROM pds_blobs WHERE did = ? AND sha256 = ?", (did, sha))
    assert (stored["cid"], stored["size"]) == (blob["ref"]["$link"], len(audio))


async def test_blobs_missing_locally_or_forgotten_by_the_pds(env: Env, pds_account: Account) -> None:
    env.sign_in(pds_account)
    did = pds_account.did
    # The local file is gone: the row fails (no retry brings it back) and says why.
    lost = (hashlib.sha256(b"lost").hexdigest(), "audio/mpeg", 4)
    lost_track = r.track_record(title="L", artist="A", file_type="mp3", created_at=WHEN,
                                audio_blob=cbor.blob_ref(*lost))
    # plyrd believes the PDS has this blob, but it never got it (a PDS collects blobs no record uses):
    # the PDS answers BlobNotFound, and the outbox uploads it again.
    audio = os.urandom(1000)
    spec = (env.store_blob(audio), "audio/wav", len(audio))
    await env.db.execute("INSERT INTO pds_blobs(did, sha256, cid, size) VALUES (?, ?, ?, ?)",
                         (did, spec[0], cbor.blob_cid(spec[0]), spec[2]))
    kept_track = r.track_record(title="K", artist="A", file_type="wav", created_at=WHEN,
                                audio_blob=cbor.blob_ref(*spec))
    rkey = tids.new_tid()
    async with env.running():
        await put(env.db, did, "fm.plyr.track", tids.new_tid(), lost_track, [lost])
        await put(env.db, did, "fm.plyr.track", rkey, kept_track, [spec])
        await wait_drained(env.db)
    failed = await env.db.fetchall("SELECT last_error FROM outbox WHERE state = 'failed'")
    assert len(failed) == 1 and "local blob file missing" in failed[0]["last_error"]
    assert list(await pds_records(env.pds, did, "fm.plyr.track")) == [rkey]
    assert env.writes().count("uploadBlob") == 1
