"""Ingest transports against the real PDS's firehose and a Jetstream replay of it: records another client writes
arrive as events with the JSON getRecord gives and their CIDs, filtered by collection; the cursor is durable; account
and identity changes arrive; malformed messages are counted and skipped; dropped connections are resumed.

The handler here only records what it is given (the node's own, plyrd.network.events, is tested with the node).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import libipld
import pytest
from jetstream_replay import JetstreamReplay, to_jetstream
from pds_harness import Account
from websockets.asyncio.client import connect

from plyrd.db import Database
from plyrd.ingest import firehose, jetstream
from plyrd.ingest.cursor import stored_status
from plyrd.ingest.decoded import MALFORMED, OK, SKIPPED, StreamError
from plyrd.ingest.events import AccountEvent, Event, IdentityEvent, RecordOp
from plyrd.ingest.subscriber import FIREHOSE, JETSTREAM, Subscriber, Transport

WANTED = frozenset({"fm.plyr.like", "fm.plyr.comment", "fm.plyr.track"})
TRACK_URI = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
NOW = "2026-12-05T10:00:00.000Z"


class Recorder:
    """A Handler that keeps what it is given; `fail` makes the next calls raise (nothing is kept then)."""

    def __init__(self, wanted: frozenset[str] = WANTED) -> None:
        self.wanted_collections = wanted
        self.events: list[Event] = []
        self.batches = 0
        self.fail = 0

    async def handle(self, events: Sequence[Event]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("handler failed on purpose")
        self.batches += 1
        self.events.extend(events)

    def ops(self, did: str) -> list[RecordOp]:
        return [e for e in self.events if isinstance(e, RecordOp) and e.did == did]


async def until(check: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Running:
    """A subscriber running as the node runs its workers, until stopped."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(subscriber.run(self.stop_event))

    async def stop(self) -> float:
        t0 = time.monotonic()
        self.stop_event.set()
        await asyncio.wait_for(self.task, 5)
        return time.monotonic() - t0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "plyrd.db")
    await database.open()
    yield database
    await database.close()


@pytest.fixture(scope="module")
def writer(pds) -> Account:
    return pds.create_account("ingest")


def ws_url(pds) -> str:
    # The PDS listens on 127.0.0.1 only; "localhost" may try ::1 first.
    return pds.pds_url.replace("http://localhost", "ws://127.0.0.1")


def start(db: Database, source: str, transport: Transport, handler: Recorder, **kw: Any) -> Running:
    kw.setdefault("backoff", (0.05, 0.5))
    kw.setdefault("save_seconds", 0.2)
    return Running(Subscriber(db, source, transport, handler, **kw))


class Repo:
    """Another client writing to an account's repo with plain com.atproto.repo calls."""

    def __init__(self, pds, account: Account) -> None:
        self.pds, self.account = pds, account
        self.http = httpx.AsyncClient(base_url=pds.pds_url, timeout=30,
                                      headers={"Authorization": f"Bearer {account.access_jwt}"})

    async def call(self, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
        r = await self.http.post(f"/xrpc/{method}", json=body) if body is not None \
            else await self.http.post(f"/xrpc/{method}")
        assert r.status_code == 200, r.text
        return r.json() if r.content else {}

    async def create(self, collection: str, record: dict[str, Any]) -> tuple[str, str]:
        made = await self.call("com.atproto.repo.createRecord",
                               {"repo": self.account.did, "collection": collection, "record": record})
        return made["uri"], made["cid"]

    async def delete(self, uri: str) -> None:
        _, _, _, collection, rkey = uri.split("/")
        await self.call("com.atproto.repo.deleteRecord",
                        {"repo": self.account.did, "collection": collection, "rkey": rkey})

    async def get(self, uri: str) -> dict[str, Any]:
        _, _, did, collection, rkey = uri.split("/")
        r = await self.http.get("/xrpc/com.atproto.repo.getRecord",
                                params={"repo": did, "collection": collection, "rkey": rkey})
        assert r.status_code == 200, r.text
        got: dict[str, Any] = r.json()
        return got

    async def blob(self, data: bytes, mime: str) -> dict[str, Any]:
        r = await self.http.post("/xrpc/com.atproto.repo.uploadBlob", content=data, headers={"Content-Type": mime})
        assert r.status_code == 200, r.text
        blob: dict[str, Any] = r.json()["blob"]
        return blob

    async def aclose(self) -> None:
        await self.http.aclose()


def like(n: int = 0) -> dict[str, Any]:
    return {"$type": "fm.plyr.like", "subject": {"uri": TRACK_URI, "cid": TRACK_CID}, "createdAt": NOW, "n": n}


async def odd_track(repo: Repo) -> dict[str, Any]:
    """A track record with every JSON special form: a blob ref, a CID link, bytes (the PDS does not validate
    fm.plyr.* records, so these reach the firehose as written)."""
    image = await repo.blob(b"\x89PNG plyrd ingest test", "image/png")
    return {"$type": "fm.plyr.track", "title": "Ingest ✓", "artist": "x", "imageBlob": image,
            "link": {"$link": image["ref"]["$link"]},
            # bytes that parse as a CID (but are not a link) and bytes that start like one
            "cidbytes": {"$bytes": base64.b64encode(libipld.decode_multibase(TRACK_CID)[1]).decode().rstrip("=")},
            "raw": {"$bytes": base64.b64encode(b"\x01\x71\x12\x20abc").decode().rstrip("=")},
            "nested": [{"n": 1, "b": {"$bytes": "AAEC"}}, None, True], "createdAt": NOW}


def without_cursor(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, RecordOp):
            out.append(("op", e.did, e.collection, e.rkey, e.action, e.cid, e.record))
        elif isinstance(e, IdentityEvent):
            out.append(("identity", e.did, e.handle))
        else:
            out.append(("account", e.did, e.active, e.status))
    return out


# --- the firehose ---------------------------------------------------------------------------------------------------


async def test_firehose_delivers_wanted_records_as_getrecord_json(pds, writer: Account, db: Database) -> None:
    handler = Recorder()
    run = start(db, ws_url(pds), FIREHOSE, handler)
    repo = Repo(pds, writer)
    try:
        await until(lambda: run.subscriber.connected, what="connected")
        t0 = time.monotonic()
        like_uri, like_cid = await repo.create("fm.plyr.like", like())
        await repo.create("app.bsky.feed.post", {"$type": "app.bsky.feed.post", "text": "not wanted",
                                                 "createdAt": NOW})
        track_uri, track_cid = await repo.create("fm.plyr.track", await odd_track(repo))
        like_value = (await repo.get(like_uri))["value"]
        await repo.delete(like_uri)
        ops = await until(lambda: len(handler.ops(writer.did)) >= 3 and handler.ops(writer.did), what="3 ops")
        lag = time.monotonic() - t0
        assert lag < 5, lag
        assert [(o.collection, o.action) for o in ops] == [
            ("fm.plyr.like", "create"), ("fm.plyr.track", "create"), ("fm.plyr.like", "delete")]
        created_like, created_track, deleted = ops
        assert (created_like.uri, created_like.cid) == (like_uri, like_cid)
        assert created_like.record == like_value
        assert (created_track.uri, created_track.cid) == (track_uri, track_cid)
        got = (await repo.get(track_uri))["value"]
        assert created_track.record == got  # blob ref, $link and $bytes exactly as getRecord gives them
        assert got["imageBlob"]["$type"] == "blob" and "$link" in got["link"] and "$bytes" in got["raw"]
        assert (deleted.uri, deleted.cid, deleted.record) == (like_uri, None, None)
        # Cursors are the firehose's seqs, increasing; the stored one is at (or past) the last op.
        assert created_like.cursor < created_track.cursor < deleted.cursor
        await until(lambda: (run.subscriber.cursor or 0) >= deleted.cursor, what="cursor stored")
        status = run.subscriber.status()
        assert status["connected"] and status["transport"] == "firehose" and status["kept"] >= 3
        assert status["seen"] > status["kept"]  # the post's commit (and others) were read and not kept
        assert await run.stop() < 2  # stops promptly
        assert not run.subscriber.connected
        [stored] = await stored_status(db)
        assert stored["source"] == ws_url(pds) and stored["cursor"] == run.subscriber.cursor
        assert stored["kept"] == status["kept"] and stored["seen"] >= status["seen"]
    finally:
        await repo.aclose()
        if not run.task.done():
            await run.stop()


async def test_cursor_is_durable_and_resumes_after_restart(pds, writer: Account, db: Database) -> None:
    handler = Recorder()
    repo = Repo(pds, writer)
    try:
        run = start(db, ws_url(pds), FIREHOSE, handler)
        await until(lambda: run.subscriber.connected, what="connected")
        first, _ = await repo.create("fm.plyr.like", like(1))
        await until(lambda: any(o.uri == first for o in handler.ops(writer.did)), what="first like")
        await until(lambda: run.subscriber.cursor == handler.events[-1].cursor, what="cursor stored")
        await run.stop()

        # While the node is down: more records, one of them deleted again.
        missed = [(await repo.create("fm.plyr.like", like(n)))[0] for n in range(2, 5)]
        await repo.delete(missed[0])

        again = Recorder()
        run = start(db, ws_url(pds), FIREHOSE, again)  # a new subscriber: the cursor comes from plyrd.db
        ops = await until(lambda: len(again.ops(writer.did)) >= 4 and again.ops(writer.did), what="missed ops")
        assert [(o.uri, o.action) for o in ops] == [(u, "create") for u in missed] + [(missed[0], "delete")]
        assert first not in {o.uri for o in again.ops(writer.did)}  # resumed after it: nothing delivered twice
        await run.stop()
    finally:
        await repo.aclose()


async def test_account_and_identity_events_and_the_same_events_through_jetstream(pds, db: Database) -> None:
    """Records, deactivation, reactivation and a handle change through the firehose; then those frames, captured
    raw and converted to Jetstream's JSON (records from getRecord), replayed through the Jetstream transport give
    the same events."""
    account = pds.create_account("ingacct")
    repo = Repo(pds, account)
    handler = Recorder()
    run = start(db, ws_url(pds), FIREHOSE, handler)
    frames: list[bytes] = []

    async def capture() -> None:
        async with connect(f"{ws_url(pds)}/xrpc/com.atproto.sync.subscribeRepos", proxy=None) as ws:
            async for message in ws:
                assert isinstance(message, bytes)
                frames.append(message)

    capturing = asyncio.create_task(capture())
    replay = JetstreamReplay()
    try:
        await until(lambda: run.subscriber.connected, what="connected")
        await asyncio.sleep(0.2)  # the raw capture connects too
        records: dict[tuple[str, str], Any] = {}
        for record in (like(7), await odd_track(repo)):
            uri, cid = await repo.create(str(record["$type"]), record)
            records[(uri, cid)] = (await repo.get(uri))["value"]
        comment = {"$type": "fm.plyr.comment", "subject": {"uri": TRACK_URI, "cid": TRACK_CID}, "text": "hi",
                   "timestamp": 0, "createdAt": NOW}
        uri, cid = await repo.create("fm.plyr.comment", comment)
        records[(uri, cid)] = (await repo.get(uri))["value"]
        await repo.delete(uri)
        await repo.call("com.atproto.server.deactivateAccount", {})
        await repo.call("com.atproto.server.activateAccount", None)
        new_handle = "re" + account.handle
        await repo.call("com.atproto.identity.updateHandle", {"handle": new_handle})

        def mine() -> list[Event]:
            return [e for e in handler.events if e.did == account.did]

        await until(lambda: any(isinstance(e, IdentityEvent) and e.handle == new_handle for e in mine()),
                    what="the handle change")
        accounts = [(e.active, e.status) for e in mine() if isinstance(e, AccountEvent)]
        assert (False, "deactivated") in accounts and accounts[-1] == (True, None), accounts
        assert [(o.collection, o.action) for o in mine() if isinstance(o, RecordOp)] == [
            ("fm.plyr.like", "create"), ("fm.plyr.track", "create"), ("fm.plyr.comment", "create"),
            ("fm.plyr.comment", "delete")]
        await until(lambda: sum(1 for f in frames if account.did.encode() in f) >= len(mine()), what="capture")
        await run.stop()

        # The same stream as Jetstream would send it.
        ours = [f for f in frames if _frame_did(f) == account.did]
        events = to_jetstream(ours, records)
        url = await replay.start()
        through_jetstream = Recorder()
        run = start(db, url, JETSTREAM, through_jetstream)
        await until(lambda: replay.connections == 1, what="jetstream connection")
        for event in events:
            replay.add(event)
        await until(lambda: len(through_jetstream.events) >= len(mine()), what="jetstream events")
        assert without_cursor(through_jetstream.events) == without_cursor(mine())
        assert [e.cursor for e in through_jetstream.events] == [e["time_us"] for e in events
                                                                if e["kind"] != "commit"
                                                                or e["commit"]["collection"] in WANTED]
        # Jetstream was asked for the wanted collections only, and the server honoured it.
        assert sorted(replay.queries[0]["wantedCollections"]) == sorted(WANTED)
        await run.stop()
    finally:
        capturing.cancel()
        await asyncio.gather(capturing, return_exceptions=True)
        await replay.stop()
        await repo.aclose()
        if not run.task.done():
            await run.stop()


def _frame_did(frame: bytes) -> str | None:
    _, body = libipld.decode_dag_cbor_multi(frame)
    did = body.get("repo") or body.get("did")
    return did if isinstance(did, str) else None


# --- Jetstream: malformed messages, dropped connections, handler failures ------------------------------------------


def jet_like(did: str, time_us: int, rkey: str, collection: str = "fm.plyr.like") -> dict[str, Any]:
    return {"did": did, "time_us": time_us, "kind": "commit",
            "commit": {"rev": "3l3qo2vutsw2b", "operation": "create", "collection": collection, "rkey": rkey,
                       "record": like(time_us), "cid": TRACK_CID}}


DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


async def test_malformed_messages_are_counted_and_skipped(db: Database) -> None:
    replay = JetstreamReplay()
    url = await replay.start()
    handler = Recorder()
    run = start(db, url, JETSTREAM, handler)
    try:
        await until(lambda: replay.connections == 1, what="connection")
        garbage: list[str | bytes] = [
            "not json", "[1, 2]", '{"kind": "commit"}', '{"did": "nope", "time_us": 5, "kind": "commit"}',
            f'{{"did": "{DID}", "time_us": 6, "kind": "commit", "commit": "x"}}',
            f'{{"did": "{DID}", "time_us": 7, "kind": "commit", "commit": {{"collection": "fm.plyr.like",'
            ' "operation": "create", "rkey": "a", "record": [], "cid": "x"}}',
            f'{{"did": "{DID}", "time_us": 8, "kind": "commit", "commit": {{"collection": "fm.plyr.like",'
            ' "operation": "explode", "rkey": "a"}}',
            f'{{"did": "{DID}", "time_us": 9, "kind": "account", "account": {{"active": "yes"}}}}',
            '{"time_us": 1e400}', b"\xff\xfe not UTF-8", "{" * 100_000,
        ]
        replay.add(jet_like(DID, 1000, "3kaaaaaaaaaa2"))
        for text in garbage:
            replay.add_raw(text)
        replay.add(jet_like(DID, 1001, "3kaaaaaaaaab2"))
        replay.add(jet_like(DID, 1002, "3kaaaaaaaaac2", collection="app.bsky.feed.like"))  # unwanted: the server
        replay.add({"did": DID, "time_us": 1003, "kind": "mystery"})                    # filters, then skipped
        await until(lambda: run.subscriber.totals.seen >= 2 + len(garbage) + 1, what="all read")
        assert [e.rkey for e in handler.ops(DID)] == ["3kaaaaaaaaaa2", "3kaaaaaaaaab2"]
        status = run.subscriber.status()
        assert status["malformed"] == len(garbage) and status["skipped"] == 1 and status["connected"]
        assert run.subscriber.reconnects == 0  # garbage never drops the stream
        await run.stop()
        [stored] = await stored_status(db)
        assert (stored["malformed"], stored["kept"], stored["cursor"]) == (len(garbage), 2, 1003)
    finally:
        await replay.stop()
        if not run.task.done():
            await run.stop()


async def test_reconnects_after_drops_and_handler_failures_resuming_from_the_cursor(db: Database) -> None:
    replay = JetstreamReplay()
    url = await replay.start()
    handler = Recorder()
    run = start(db, url, JETSTREAM, handler, batch_size=2)
    try:
        await until(lambda: replay.connections == 1, what="connection")
        replay.drop_after = 3  # every connection is aborted after 3 messages
        for n in range(10):
            replay.add(jet_like(DID, 2000 + n, f"3kbbbbbbbbb{chr(ord('a') + n)}2"))
        await until(lambda: {e.cursor for e in handler.events} >= set(range(2000, 2010)), what="all 10")
        assert replay.connections >= 4
        # Each reconnection asked for the stored cursor: Jetstream's cursor is inclusive, so the last event handled
        # before a drop may come again (at-least-once); none is lost, and none arrives more than twice.
        cursors = [int(q["cursor"][0]) for q in replay.queries[1:]]
        assert cursors == sorted(cursors) and all(2000 <= c < 2010 for c in cursors)
        counts = [sum(1 for e in handler.events if e.cursor == c) for c in range(2000, 2010)]
        assert max(counts) <= 2, counts
        assert run.subscriber.last_error and "ConnectionClosed" in run.subscriber.last_error

        # A handler that raises: its batch is not stored, the connection is dropped, the batch comes again.
        replay.drop_after = None
        handler.fail = 1
        before = len(handler.events)
        replay.add(jet_like(DID, 3000, "3kccccccccca2"))
        await until(lambda: any(e.cursor == 3000 for e in handler.events[before:]), what="redelivery")
        assert "handler failed on purpose" in (run.subscriber.last_error or "")
        await run.stop()
        [stored] = await stored_status(db)
        assert stored["cursor"] == 3000 and "handler failed on purpose" in stored["last_error"]
    finally:
        await replay.stop()
        if not run.task.done():
            await run.stop()


async def test_a_cursor_the_server_does_not_know_falls_back_to_live(pds, writer: Account, db: Database) -> None:
    """A stored cursor ahead of the firehose (a PDS reset, another relay at this URL): its FutureCursor error frame
    makes the subscriber forget the cursor and follow live, instead of reconnecting with it forever."""
    from plyrd.ingest.cursor import CursorStore, Progress

    await CursorStore(db, ws_url(pds), "firehose").save(10**12, Progress())
    handler = Recorder()
    repo = Repo(pds, writer)
    run = start(db, ws_url(pds), FIREHOSE, handler)
    try:
        await until(lambda: run.subscriber.last_error and "FutureCursor" in run.subscriber.last_error,
                    what="the FutureCursor error")
        await until(lambda: run.subscriber.connected, what="reconnected live")
        uri, _ = await repo.create("fm.plyr.like", like(77))
        await until(lambda: any(o.uri == uri for o in handler.ops(writer.did)), what="the like")
        assert 0 < (run.subscriber.cursor or 0) < 10**12
    finally:
        await repo.aclose()
        await run.stop()


async def test_stopping_lets_the_batch_being_handled_finish_and_stores_its_cursor(db: Database) -> None:
    class Slow(Recorder):
        async def handle(self, events: Sequence[Event]) -> None:
            self.started = True
            await asyncio.sleep(0.5)  # e.g. resolving a remote track
            await super().handle(events)

    replay = JetstreamReplay()
    url = await replay.start()
    handler = Slow()
    handler.started = False
    run = start(db, url, JETSTREAM, handler)
    try:
        await until(lambda: replay.connections == 1, what="connection")
        replay.add(jet_like(DID, 4000, "3kddddddddda2"))
        await until(lambda: handler.started, what="handling")
        took = await run.stop()
        assert 0.2 < took < 2, took  # waited for the batch, not for more
        assert [e.cursor for e in handler.events] == [4000]
        [stored] = await stored_status(db)
        assert stored["cursor"] == 4000
    finally:
        await replay.stop()
        if not run.task.done():
            await run.stop()


async def test_backoff_while_the_pds_is_down_then_resume(pds, writer: Account, db: Database) -> None:
    handler = Recorder()
    repo = Repo(pds, writer)
    run = start(db, ws_url(pds), FIREHOSE, handler)
    try:
        await until(lambda: run.subscriber.connected, what="connected")
        pds.stop_pds()
        await until(lambda: not run.subscriber.connected, what="disconnected")
        await asyncio.sleep(1.0)
        attempts = run.subscriber.reconnects
        assert 2 <= attempts < 12, attempts  # backing off (0.05 s doubling to 0.5 s here), not spinning
        pds.start_pds()
        await until(lambda: run.subscriber.connected, within=20, what="reconnected")
        uri, _ = await repo.create("fm.plyr.like", like(99))
        await until(lambda: any(o.uri == uri for o in handler.ops(writer.did)), what="like after the outage")
    finally:
        if not pds.pds_running:
            pds.start_pds()
        await repo.aclose()
        if not run.task.done():
            await run.stop()


# --- the decoders on their own ---------------------------------------------------------------------------------------


def frame(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def test_firehose_decoder_skips_what_is_not_a_frame() -> None:
    cid = libipld.decode_multibase(TRACK_CID)[1]
    commit = {"seq": 5, "repo": DID, "time": NOW, "ops": [{"action": "create", "path": "fm.plyr.like/3kaaaaaaaaaa2",
                                                            "cid": cid}], "blocks": b"\x0a" + b"\x00" * 3}
    cases: dict[bytes | str, str] = {
        b"garbage": MALFORMED,
        frame({"op": 1, "t": "#commit"}, {}): MALFORMED,  # no seq
        frame({"op": 1, "t": "#commit"}, commit): MALFORMED,  # a truncated CAR
        frame({"op": 1, "t": "#commit"}, {**commit, "blocks": b""}): MALFORMED,
        frame({"op": 1, "t": "#commit"}, {**commit, "ops": [{"path": 3}]}): MALFORMED,
        frame({"op": 1, "t": "#commit"}, {**commit, "ops": [{"action": "create", "path": "fm.plyr.like/.."}]}):
            MALFORMED,
        frame({"op": 1, "t": "#commit"}, {**commit, "ops": [{"action": "delete", "path": "x.y.z/a"}]}): OK,
        frame({"op": 1, "t": "#identity"}, {"seq": 6, "did": 7}): MALFORMED,
        frame({"op": 1, "t": "#account"}, {"seq": 6, "did": DID, "active": "no"}): MALFORMED,
        frame({"op": 1, "t": "#sync"}, {"seq": 8, "did": DID}): SKIPPED,
        frame({"op": 1, "t": "#info"}, {"name": "OutdatedCursor"}): SKIPPED,
        frame({"op": 1, "t": "#future"}, {"seq": 9}): SKIPPED,
        frame({"op": 2}, {}): MALFORMED,
        libipld.encode_dag_cbor({"op": 1, "t": "#commit"}): MALFORMED,  # no body
        "text": MALFORMED,
    }
    for message, outcome in cases.items():
        assert firehose.decode(message, WANTED).outcome == outcome, message
    with pytest.raises(StreamError) as e:
        firehose.decode(frame({"op": -1}, {"error": "FutureCursor", "message": "too far"}), WANTED)
    assert e.value.error == "FutureCursor"


def test_firehose_decoder_checks_record_blocks_against_their_cids() -> None:
    record = like()
    block = libipld.encode_dag_cbor(record)
    from plyrd.atproto.cbor import record_cid

    cid_text = record_cid(record)
    cid = libipld.decode_multibase(cid_text)[1]
    header = libipld.encode_dag_cbor({"version": 1, "roots": [cid]})

    def car(data: bytes) -> bytes:
        section = cid + data
        return bytes([len(header)]) + header + _varint(len(section)) + section

    body = {"seq": 5, "repo": DID, "time": NOW, "ops": [{"action": "create", "path": "fm.plyr.like/3kaaaaaaaaaa2",
                                                          "cid": cid}]}
    good = firehose.decode(frame({"op": 1, "t": "#commit"}, {**body, "blocks": car(block)}), WANTED)
    assert good.outcome == OK and good.events == [RecordOp(DID, "fm.plyr.like", "3kaaaaaaaaaa2", "create", cid_text,
                                                           record, 5)]
    tampered = block.replace(b"plyr", b"plyx")
    assert firehose.decode(frame({"op": 1, "t": "#commit"}, {**body, "blocks": car(tampered)}), WANTED).outcome \
        == MALFORMED
    # Not wanted: the blocks are not even looked at.
    assert firehose.decode(frame({"op": 1, "t": "#commit"}, {**body, "blocks": b"junk"}), {"fm.plyr.list"}) \
        == firehose.Decoded(OK, cursor=5, time_us=good.time_us)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_subscribe_urls() -> None:
    assert firehose.subscribe_url("wss://bsky.network", None, WANTED) \
        == "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos"
    assert firehose.subscribe_url("ws://127.0.0.1:9/xrpc/com.atproto.sync.subscribeRepos?cursor=3", 42, WANTED) \
        == "ws://127.0.0.1:9/xrpc/com.atproto.sync.subscribeRepos?cursor=42"
    assert jetstream.subscribe_url("wss://j.example/subscribe?cursor=1&compress=false", 7,
                                   frozenset({"b.c", "a.b"})) \
        == "wss://j.example/subscribe?compress=false&wantedCollections=a.b&wantedCollections=b.c&cursor=7"


# --- the node -------------------------------------------------------------------------------------------------------


async def test_node_follows_the_configured_firehose(pds, writer: Account, tmp_path: Path) -> None:
    from plyrd.config import load_config
    from plyrd.node import Node

    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path / "data"), "ingest.enabled": True,
                                            "ingest.firehose_url": ws_url(pds)})
    node = Node(config)
    await node.start()
    repo = Repo(pds, writer)
    try:
        assert "ingest" in node.workers.names
        status = await until(lambda: (s := node.ingest_status()) and s["connected"] and s, what="connected")
        assert (status["transport"], status["source"]) == ("firehose", ws_url(pds))
        await repo.create("fm.plyr.like", like(42))
        await until(lambda: node.ingest.status()["kept"] >= 1, what="the like handed to the node's handler")
        await until(lambda: node.ingest.cursor is not None, what="a cursor stored")
        assert (await stored_status(node.db))[0]["cursor"] == node.ingest.cursor
    finally:
        await repo.aclose()
        t0 = time.monotonic()
        await node.stop()
        assert time.monotonic() - t0 < 5
    off = Node(load_config(env={}, overrides={"storage.data_dir": str(tmp_path / "off")}))
    await off.start()
    try:
        assert off.ingest_status() is None and "ingest" not in off.workers.names  # off by default
    finally:
        await off.stop()
