"""The node's labeler, as another ATProto app meets it: admins' actions on a real node (through the admin API) produce
labels that queryLabels answers and subscribeLabels streams as DAG-CBOR frames, decoded here with a standard CBOR
decoder (cbor2), every signature verified with the key the node's did:web document publishes (decoded here from
its multibase, checked with `cryptography`). The wake-up of streams after a commit is checked on a real database in
this process."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import httpx
import pytest
import websockets
from conftest import node_env, start_node
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from helpers import Person, anonymous, db, person, publish, sign_in, upload

from plyrd.config import read_toml
from plyrd.moderation import labels

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def world(pds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    admin_acct = pds.create_account("lbladmin")
    node = start_node([], cwd=tmp_path_factory.mktemp("labeler"),
                      env=node_env(pds, PLYRD_AUTH_ADMINS=admin_acct.handle))
    try:
        admin = Person(sign_in(node.url, admin_acct), admin_acct)
        artist = person(node, pds, "lblart")
        tmp = tmp_path_factory.mktemp("lblaudio")
        tracks = [upload(artist, tmp, f"label song {i}", seconds=1.0, frequency=330 + 60 * i) for i in range(3)]
        uris = [publish(node, pds, t["id"]) for t in tracks]
        yield {"node": node, "admin": admin, "artist": artist, "tracks": tracks, "uris": uris}
    finally:
        node.stop()


# ---- what a consumer does, with its own tools -------------------------------------------------------------------


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + raw


def published_key(url: str) -> tuple[str, ec.EllipticCurvePublicKey, dict[str, Any]]:
    doc = httpx.get(url + "/.well-known/did.json").json()
    method = next(m for m in doc["verificationMethod"] if m["id"] == doc["id"] + "#atproto_label")
    assert method["type"] == "Multikey" and method["publicKeyMultibase"].startswith("z")
    raw = b58decode(method["publicKeyMultibase"][1:])
    assert raw[:2] == b"\xe7\x01" and len(raw) == 35, raw.hex()  # secp256k1-pub multicodec, compressed point
    return doc["id"], ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw[2:]), doc


def verify(label: dict[str, Any], key: ec.EllipticCurvePublicKey) -> None:
    """The label's signature over the canonical CBOR of the label without `sig` (RFC 7049 canonical ordering is
    DAG-CBOR's), low-S, 64 bytes r||s."""
    sig = label["sig"]
    if isinstance(sig, dict):  # JSON: {"$bytes": base64}
        sig = base64.b64decode(sig["$bytes"] + "=" * (-len(sig["$bytes"]) % 4))
    assert isinstance(sig, bytes) and len(sig) == 64
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert s <= SECP256K1_N // 2, "signature is not low-S"
    unsigned = cbor2.dumps({k: v for k, v in label.items() if k != "sig"}, canonical=True)
    key.verify(encode_dss_signature(r, s), unsigned, ec.ECDSA(hashes.SHA256()))


def frames(message: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    stream = io.BytesIO(message)
    decoder = cbor2.CBORDecoder(stream)
    header, body = decoder.decode(), decoder.decode()
    assert stream.read() == b"", "trailing bytes after the frame's body"
    return header, body


def query(url: str, patterns: list[str], **params: Any) -> httpx.Response:
    return httpx.get(url + "/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": patterns, **params})


def ws_url(url: str, cursor: int | str | None = None) -> str:
    base = url.replace("http://", "ws://") + "/xrpc/com.atproto.label.subscribeLabels"
    return base if cursor is None else f"{base}?cursor={cursor}"


def admin_post(world: dict[str, Any], path: str, **body: Any) -> None:
    r = world["admin"].post(path, json=body)
    assert r.status_code == 200, r.text


def all_labels(url: str) -> list[dict[str, Any]]:
    return query(url, ["*"], limit=250).json()["labels"]


# ---- the tests --------------------------------------------------------------------------------------------------


def test_the_did_document_publishes_the_nodes_label_key_and_service(world) -> None:
    node = world["node"]
    did, key, doc = published_key(node.url)
    port = node.url.rsplit(":", 1)[1]
    assert did == f"did:web:127.0.0.1%3A{port}"
    assert doc["service"] == [{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": node.url}]
    # the key `plyrd init` (here: the first start) made and keeps in secrets.toml
    private = int(read_toml(node.data / "secrets.toml")["secrets.labeler_key"], 16)
    assert key.public_numbers() == ec.derive_private_key(private, ec.SECP256K1()).public_key().public_numbers()


def test_actions_are_signed_labels_that_query_labels_answers(world) -> None:
    url, (a, b, _c) = world["node"].url, world["tracks"]
    (uri_a, cid_a), (uri_b, cid_b), _ = world["uris"]
    did, key, _doc = published_key(url)
    before = len(all_labels(url))
    admin_post(world, f"/admin/api/tracks/{a['id']}/takedown", reason="not theirs")
    admin_post(world, f"/admin/api/tracks/{b['id']}/sensitive", value="nudity", reason="cover")
    admin_post(world, f"/admin/api/tracks/{a['id']}/restore", reason="licence shown")
    # refused actions (already restored; a flag twice) roll back: no label
    assert world["admin"].post(f"/admin/api/tracks/{a['id']}/restore", json={}).status_code == 400
    assert world["admin"].post(f"/admin/api/tracks/{b['id']}/sensitive", json={"value": "nudity"}).status_code == 400

    found = all_labels(url)[before:]
    assert [(x["uri"], x["cid"], x["val"], x["neg"]) for x in found] == [
        (uri_a, cid_a, "!takedown", False), (uri_b, cid_b, "nudity", False), (uri_a, cid_a, "!takedown", True)]
    for label in found:
        assert label["ver"] == 1 and label["src"] == did
        assert label["cts"].endswith("Z") and len(label["cts"]) == len("2026-01-01T00:00:00.000Z")
        verify(label, key)
    # a tampered label does not verify: the check above means something
    with pytest.raises(InvalidSignature):
        verify({**found[0], "val": "!hide"}, key)

    # one URI: the takedown and then its negation, in order
    assert [x["neg"] for x in query(url, [uri_a]).json()["labels"]] == [False, True]
    # patterns are ORed; a trailing * is a prefix
    artist = world["artist"].did
    assert len(query(url, [uri_a, uri_b]).json()["labels"]) == 3
    assert len(query(url, [f"at://{artist}/*"]).json()["labels"]) == 3
    assert query(url, [f"at://{artist}/fm.plyr.track/nope*", "at://did:plc:nobody/*"]).json()["labels"] == []
    assert query(url, [uri_b[:-1] + "*"]).json()["labels"][0]["val"] == "nudity"
    # sources filter on the labeler's DID
    assert len(query(url, [f"at://{artist}/*"], sources=[did]).json()["labels"]) == 3
    assert query(url, [f"at://{artist}/*"], sources=["did:web:elsewhere.example"]).json()["labels"] == []
    # paging: one at a time, the cursor walks them in order, none twice, no cursor after the last
    seen, cursor = [], None
    while True:
        page = query(url, [f"at://{artist}/*"], limit=1, **({"cursor": cursor} if cursor else {})).json()
        seen += page["labels"]
        cursor = page.get("cursor")
        if not cursor:
            break
    assert seen == query(url, [f"at://{artist}/*"]).json()["labels"]

    # clearing the artwork's flags negates each of them
    assert world["admin"].delete(f"/admin/api/tracks/{b['id']}/sensitive").status_code == 200
    on_b = query(url, [uri_b]).json()["labels"]
    assert [(x["val"], x["neg"]) for x in on_b] == [("nudity", False), ("nudity", True)]
    verify(on_b[1], key)


def test_query_labels_refuses_bad_parameters(world) -> None:
    url = world["node"].url
    for params in ({}, {"uriPatterns": "at://x*y"}, {"uriPatterns": "*", "limit": "0"},
                   {"uriPatterns": "*", "limit": "251"}, {"uriPatterns": "*", "cursor": "-1"},
                   {"uriPatterns": "*", "sources": "nope"}, {"uriPatterns": ["a"] * 51}):
        r = httpx.get(url + "/xrpc/com.atproto.label.queryLabels", params=params)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (params, r.text)


async def test_subscribe_labels_replays_from_a_cursor_then_streams_live(world) -> None:
    url, c = world["node"].url, world["tracks"][2]
    uri_c, cid_c = world["uris"][2]
    _did, key, _doc = published_key(url)
    stored = all_labels(url)
    if len(stored) < 2:  # this test alone: some history to replay
        await asyncio.to_thread(admin_post, world, f"/admin/api/tracks/{c['id']}/sensitive", value="gore")
        await asyncio.to_thread(admin_post, world, f"/admin/api/tracks/{c['id']}/sensitive", value="graphic-media")
        stored = all_labels(url)
    newest = int(db(world["node"], "SELECT max(seq) FROM labels")[0][0])

    async with websockets.connect(ws_url(url, 1)) as ws:
        replayed = []
        for _ in range(len(stored) - 1):  # everything after seq 1
            header, body = frames(await asyncio.wait_for(ws.recv(), 10))
            assert header == {"op": 1, "t": "#labels"}
            assert len(body["labels"]) == 1 and isinstance(body["labels"][0]["sig"], bytes)
            verify(body["labels"][0], key)
            replayed.append(body)
        assert [b["seq"] for b in replayed] == list(range(2, newest + 1))
        assert [b["labels"][0]["val"] for b in replayed] == [x["val"] for x in stored[1:]]

        # then live: a takedown while the stream is open arrives as the next frame
        started = time.monotonic()
        await asyncio.to_thread(admin_post, world, f"/admin/api/tracks/{c['id']}/takedown", reason="live")
        header, body = frames(await asyncio.wait_for(ws.recv(), 10))
        latency = time.monotonic() - started
        label = body["labels"][0]
        assert body["seq"] == newest + 1 and (label["uri"], label["cid"], label["val"], label["neg"]) == (
            uri_c, cid_c, "!takedown", False)
        verify(label, key)
        print(f"live label after the admin's request: {latency * 1000:.0f} ms (request included)")

        # a restore is a negation with a higher seq
        await asyncio.to_thread(admin_post, world, f"/admin/api/tracks/{c['id']}/restore", reason="fine")
        _h, neg = frames(await asyncio.wait_for(ws.recv(), 10))
        assert neg["seq"] > body["seq"] and neg["labels"][0]["neg"] is True and neg["labels"][0]["uri"] == uri_c
        verify(neg["labels"][0], key)

    # without a cursor: live only, nothing replayed
    async with websockets.connect(ws_url(url)) as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.5)
        await asyncio.to_thread(admin_post, world, f"/admin/api/tracks/{c['id']}/sensitive", value="sexual")
        _h, body = frames(await asyncio.wait_for(ws.recv(), 10))
        assert body["seq"] == neg["seq"] + 1 and body["labels"][0]["val"] == "sexual"


async def test_subscribe_labels_refuses_a_future_or_bad_cursor(world) -> None:
    url = world["node"].url
    newest = int(db(world["node"], "SELECT coalesce(max(seq), 0) FROM labels")[0][0])
    for cursor, error in ((newest + 100, "FutureCursor"), ("abc", "InvalidRequest")):
        async with websockets.connect(ws_url(url, cursor)) as ws:
            header, body = frames(await asyncio.wait_for(ws.recv(), 10))
            assert header == {"op": -1} and body["error"] == error and body["message"]
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    # the cursor of the newest label is not in the future: the stream stays open for what comes next
    async with websockets.connect(ws_url(url, newest)) as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.0)
    assert anonymous(world["node"]).get("/health").status_code == 200


# ---- the labeler in this process, on a real database: only committed labels reach a stream ----------------------


def test_did_web_names_the_public_url_host() -> None:
    assert labels.did_web("https://music.example.com") == "did:web:music.example.com"
    assert labels.did_web("https://Music.Example.com:8443") == "did:web:music.example.com%3A8443"
    assert labels.did_web("http://[::1]:8080") == "did:web:%5B%3A%3A1%5D%3A8080"
    assert labels.did_web("https://music.example.com:443/") == "did:web:music.example.com"


async def test_streams_wake_after_the_commit_and_never_see_a_rollback(db, monkeypatch) -> None:
    monkeypatch.setattr(labels, "POLL_SECONDS", 30.0)  # only the wake-up after the commit can deliver in time
    labeler = labels.Labeler(db, "https://music.example.com", "11" * 32)
    labeler.start()
    try:
        stream = labeler.follow(0)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.1)
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with db.write() as conn:
                await labels.emit(conn, uri="at://did:plc:abc/fm.plyr.track/1", cid=None, val="!takedown")
                raise RuntimeError("changed my mind")
        await asyncio.sleep(0.3)
        assert not waiting.done()  # rolled back: nothing to see

        async with db.write() as conn:
            seq = await labels.emit(conn, uri="at://did:plc:abc/fm.plyr.track/2", cid=None, val="porn")
            await asyncio.sleep(0.3)
            assert not waiting.done()  # not committed yet
        started = time.monotonic()
        batch = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 2
        assert [(x["seq"], x["label"]["uri"], x["label"]["val"]) for x in batch] == [
            (seq, "at://did:plc:abc/fm.plyr.track/2", "porn")]
        assert batch[0]["label"]["src"] == "did:web:music.example.com"
        assert seq == 1  # the rolled-back label took no number
    finally:
        labeler.close()
    # a closed labeler signs nothing: a database without one refuses to label
    with pytest.raises(RuntimeError, match="no labeler"):
        async with db.write() as conn:
            await labels.emit(conn, uri="at://did:plc:abc/fm.plyr.track/3", cid=None, val="porn")
    assert [tuple(r) for r in await db.fetchall("SELECT seq, val FROM labels")] == [(1, "porn")]


async def test_a_node_with_an_open_stream_stops_within_seconds(pds, tmp_path) -> None:
    """A subscribeLabels stream never ends by itself: on SIGTERM the node closes it (1001, going away) instead of
    waiting out server.graceful_timeout for it."""
    import asyncio
    import time

    from conftest import node_env, start_node

    node = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_SERVER_GRACEFUL_TIMEOUT="10"))
    try:
        async with websockets.connect(ws_url(node.url, 0)) as ws:
            await asyncio.sleep(0.3)
            began = time.monotonic()
            node.proc.send_signal(15)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 8)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert await asyncio.to_thread(node.proc.wait, 8) == 0
        assert time.monotonic() - began < 6
    finally:
        node.stop()


def test_a_copyright_takedown_signs_plyr_fms_value_and_its_restore_negates_it(world) -> None:
    """A takedown that settles a copyright report also signs `copyright-violation` (what plyr.fm and other apps
    filter on); restoring the track negates both labels. Other takedowns sign `!takedown` only."""
    track, (uri, _) = world["tracks"][2], world["uris"][2]
    fan = world["artist"]  # anyone signed in may report
    r = fan.post("/moderation/reports", json={"target_type": "track", "target_id": track["id"],
                                              "reason": "copyright"})
    assert r.status_code == 201, r.text
    admin_post(world, f"/admin/api/tracks/{track['id']}/takedown", reason="a label's master",
               report_id=r.json()["report_id"])
    mine = [(x["val"], x.get("neg", False)) for x in all_labels(world["node"].url) if x["uri"] == uri]
    assert ("copyright-violation", False) in mine and ("!takedown", False) in mine
    admin_post(world, f"/admin/api/tracks/{track['id']}/restore", reason="licence shown")
    mine = [(x["val"], x.get("neg", False)) for x in all_labels(world["node"].url) if x["uri"] == uri]
    assert mine[-2:] in ([("!takedown", True), ("copyright-violation", True)],
                         [("copyright-violation", True), ("!takedown", True)])
