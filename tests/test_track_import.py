"""Importing an artist's fm.plyr.track records made by another client, against the real PDS and a real node: the
audio comes from the PDS as a blob, goes through the upload pipeline, and the track keeps the record it came from,
untouched. Records that cannot be imported are skipped with a reason and leave nothing behind. The fetch itself
(size limit, CID check, missing blob) is also tested against a small local server posing as a PDS."""

from __future__ import annotations

import hashlib
import http.server
import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from conftest import ServedNode, node_env, start_node
from helpers import db_rows, records, sign_in, stored_files, wait_for
from pds_harness import Account

from plyrd.atproto.cbor import blob_cid, record_cid
from plyrd.atproto.tids import tid_for_time
from plyrd.catalog.track_import import Skip, fetch_blob, plan_import

MB = 1024 * 1024


class OtherClient:
    """Another client (plyr.fm itself, say) writing straight to the account's repo with its password."""

    def __init__(self, pds: Any, account: Account) -> None:
        self.pds, self.account = pds, account
        session = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                             json={"identifier": account.did, "password": account.password}).json()
        self.http = httpx.Client(base_url=pds.pds_url, timeout=60,
                                 headers={"Authorization": f"Bearer {session['accessJwt']}"})

    def upload_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        r = self.http.post("/xrpc/com.atproto.repo.uploadBlob", content=data, headers={"Content-Type": mime})
        assert r.status_code == 200, r.text
        return r.json()["blob"]

    def put(self, collection: str, record: dict[str, Any], rkey: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"repo": self.account.did, "collection": collection, "record": record}
        if rkey:
            body["rkey"] = rkey
        r = self.http.post(f"/xrpc/com.atproto.repo.{'putRecord' if rkey else 'createRecord'}", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def track(self, title: str, *, blob: dict[str, Any] | None, file_type: str = "flac", when: int = 0,
              **extra: Any) -> dict[str, Any]:
        """An fm.plyr.track shaped as plyr.fm writes it (putRecord, TID rkey from createdAt)."""
        created = datetime(2026, 3, 1, 12, 0, when, 123000, tzinfo=UTC)
        record: dict[str, Any] = {"$type": "fm.plyr.track", "title": title, "artist": "the other client",
                                  "fileType": file_type, "createdAt": created.strftime("%Y-%m-%dT%H:%M:%S.123Z"),
                                  **extra}
        if blob is not None:
            record["audioBlob"] = blob
        return self.put("fm.plyr.track", record, rkey=tid_for_time(created))

    def like(self, subject: dict[str, Any]) -> dict[str, Any]:
        return self.put("fm.plyr.like", {"$type": "fm.plyr.like", "subject": {"uri": subject["uri"],
                                                                              "cid": subject["cid"]},
                                         "createdAt": "2026-03-02T00:00:00.000Z"})

    def get(self, uri: str) -> dict[str, Any]:
        _, _, did, collection, rkey = uri.split("/")
        r = self.http.get("/xrpc/com.atproto.repo.getRecord",
                          params={"repo": did, "collection": collection, "rkey": rkey})
        assert r.status_code == 200, r.text
        return r.json()


def settled(artist: Any) -> bool:
    counts = artist.http.get("/sync/").json()["outbox"]
    return counts["pending"] == 0 and counts["sending"] == 0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def track_row(node: ServedNode, track_id: int) -> sqlite3.Row:
    conn = sqlite3.connect(node.data / "plyrd.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM tracks WHERE id = ?", (track_id,)).fetchone()
    finally:
        conn.close()


def track_by_uri(node: ServedNode, uri: str) -> int | None:
    rows = db_rows(node, f"SELECT id FROM tracks WHERE record_uri = '{uri}'")
    return rows[0][0] if rows else None


def test_tracks_made_elsewhere_are_imported_and_their_records_kept(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_STORAGE_MAX_UPLOAD_MB="1"))
    try:
        account = pds.create_account("mover")
        other = OtherClient(pds, account)
        # Made on plyr.fm before the artist came here: a FLAC with notes, tags and cover art in the repo, and an
        # AIFF, which needs an MP3 rendition here.
        flac = make_audio(tmp_path / "elsewhere.flac", "flac", seconds=3, kind="music")
        aiff = make_audio(tmp_path / "elsewhere.aiff", "aiff", seconds=2, frequency=330)
        cover = other.upload_blob(jpeg_bytes(300, 300, (10, 120, 200)), "image/jpeg")
        flac_blob = other.upload_blob(flac.read_bytes(), "audio/flac")
        first = other.track(
            "made on plyr.fm", blob=flac_blob, when=1, album="the move", description="liner notes",
            duration=3, audioUrl="https://audio.plyr.fm/audio/abc.flac", tags=["Field Recording", "ambient"],
            imageUrl=f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob?did={account.did}&cid={cover['ref']['$link']}",
            imageBlob=cover,  # a client keeping its cover in the repo references it, or the PDS drops it
            labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
            features=[{"did": "did:plc:featuredfeaturedfeatured", "handle": "guest.test"}])
        second = other.track("the aiff one", blob=other.upload_blob(aiff.read_bytes(), "audio/aiff"),
                             file_type="aiff", when=2)
        # What cannot come: audio only behind a URL, an image as the audio, text that the PDS took as audio,
        # audio over this node's 1 MB limit, and a supporters-only track.
        url_only = other.track("only a url", blob=None, when=3, audioUrl="https://audio.plyr.fm/audio/xyz.mp3")
        png = png_bytes(64, 64)
        as_png = other.track("a picture", blob=other.upload_blob(png, "image/png"), when=4)
        text = b"these are lyrics, not audio\n" * 300
        as_text = other.track("some text", blob=other.upload_blob(text, "audio/mpeg"), file_type="mp3", when=5)
        big = make_audio(tmp_path / "big.wav", "wav", seconds=8).read_bytes()  # about 1.4 MB
        too_big = other.track("too big", blob=other.upload_blob(big, "audio/wav"), file_type="wav", when=6)
        gated = other.track("for supporters", blob=flac_blob, when=7, supportGate={"type": "any"})
        # The artist liked their own track there too: adopted in the same pass as the import.
        own_like = other.like(first)
        before = {r["uri"]: r["cid"] for r in records(pds, account.did, "fm.plyr.track")}
        assert len(before) == 7

        artist = sign_in(served.url, account)  # signing in reconciles, and so imports
        ids = wait_for(lambda: (lambda a, b: (a, b) if a and b else None)(
            track_by_uri(served, first["uri"]), track_by_uri(served, second["uri"])))
        csrf = {"X-CSRF-Token": artist.csrf}

        # The FLAC: the record's fields, the exact bytes, its own record uri/cid, its cover, playable at once.
        wait_for(lambda: artist.http.get(f"/tracks/{ids[0]}").json()["peaks"] is not None)
        track = artist.http.get(f"/tracks/{ids[0]}").json()
        assert track["title"] == "made on plyr.fm" and track["album_name"] == "the move"  # the record's album name
        assert track["description"] == "liner notes" and track["tags"] == ["field recording", "ambient"]
        assert track["self_labels"] == ["nudity"] and track["playable"] and abs(track["duration"] - 3) < 0.15
        assert datetime.fromisoformat(track["created_at"]) == datetime(2026, 3, 1, 12, 0, 1, 123000, UTC)
        assert track["file_id"] == track["original_file_id"] == sha(flac.read_bytes())
        assert artist.http.get(f"/audio/{track['file_id']}").content == flac.read_bytes()
        assert track["image_url"] and artist.http.get(track["image_url"].split(served.url)[1]).status_code == 200
        row = track_row(served, ids[0])
        assert (row["record_uri"], row["record_cid"]) == (first["uri"], first["cid"])
        assert json.loads(row["features"]) == [{"did": "did:plc:featuredfeaturedfeatured", "handle": "guest.test"}]

        # The AIFF: an MP3 rendition made here, the original kept byte for byte.
        upload_id = db_rows(served, f"SELECT id FROM uploads WHERE track_id = {ids[1]}")[0][0]
        assert artist.wait(upload_id)[-1]["status"] == "completed"
        track = artist.http.get(f"/tracks/{ids[1]}").json()
        assert track["file_type"] == "mp3" and track["playable"] and track["title"] == "the aiff one"
        assert artist.http.get(f"/audio/{track['original_file_id']}/download").content == aiff.read_bytes()
        assert track_row(served, ids[1])["record_uri"] == second["uri"]

        # The like made elsewhere resolves to the imported track.
        wait_for(lambda: [t["id"] for t in artist.http.get("/tracks/liked").json()["tracks"]] == [ids[0]])
        assert db_rows(served, "SELECT rkey FROM likes") == [(own_like["uri"].rsplit("/", 1)[1],)]

        # Nothing else was kept: two tracks, two uploads, and only their files.
        assert db_rows(served, "SELECT count(*) FROM tracks") == [(2,)]
        assert db_rows(served, "SELECT count(*) FROM uploads") == [(2,)]
        files = stored_files(served)
        assert not {sha(png), sha(text), sha(big)} & files
        assert files == {r[0] for r in db_rows(served, "SELECT sha256 FROM blobs")}
        assert all(n >= 1 for (n,) in db_rows(served, "SELECT refcount FROM blobs"))
        assert not list((served.data / "tmp").iterdir())

        # The records are untouched once the node has sent everything it had to send, and none were added.
        wait_for(lambda: settled(artist))
        assert {r["uri"]: r["cid"] for r in records(pds, account.did, "fm.plyr.track")} == before

        # Reconciling again imports nothing, and says why the others stay out.
        report = artist.http.post("/sync/reconcile", headers=csrf).json()
        assert report["adopted"]["tracks"] == 0 and report["tracks"]["imported"] == []
        reasons = {s["uri"]: s["reason"] for s in report["tracks"]["skipped"]}
        assert set(reasons) == {url_only["uri"], as_png["uri"], as_text["uri"], too_big["uri"], gated["uri"]}
        assert "no audioBlob" in reasons[url_only["uri"]] and "audio.plyr.fm" in reasons[url_only["uri"]]
        assert "not audio this node accepts" in reasons[as_png["uri"]] and "PNG" in reasons[as_png["uri"]]
        assert "not audio this node accepts" in reasons[as_text["uri"]]
        assert "over this node's limit" in reasons[too_big["uri"]]
        assert "supporters-only" in reasons[gated["uri"]]
        assert "track not imported" in served.log()
        assert db_rows(served, "SELECT count(*) FROM tracks") == [(2,)]

        # A track made elsewhere later comes in on demand, and the report names it.
        later = other.track("made later", blob=other.upload_blob(
            make_audio(tmp_path / "later.mp3", "mp3", seconds=1, frequency=700).read_bytes(), "audio/mpeg"),
            file_type="mp3", when=30)
        report = artist.http.post("/sync/reconcile", headers=csrf).json()
        [entry] = report["tracks"]["imported"]
        assert entry["uri"] == later["uri"] and entry["title"] == "made later" and entry["upload_id"]
        assert artist.wait(entry["upload_id"])[-1]["status"] == "completed"

        # A track uploaded here is this node's own record: never "imported". One deleted here stays deleted.
        mine = artist.wait(artist.upload(make_audio(tmp_path / "here.mp3", "mp3", seconds=1, frequency=880),
                                         title="uploaded here").json()["upload_id"])[-1]["track_id"]
        wait_for(lambda: len(records(pds, account.did, "fm.plyr.track")) == 9)
        assert artist.http.delete(f"/tracks/{entry['track_id']}", headers=csrf).status_code == 204
        report = artist.http.post("/sync/reconcile", headers=csrf).json()
        assert report["tracks"]["imported"] == [] and len(report["tracks"]["skipped"]) == 5
        wait_for(lambda: later["uri"] not in {r["uri"] for r in records(pds, account.did, "fm.plyr.track")})
        assert artist.http.post("/sync/reconcile", headers=csrf).json()["tracks"]["imported"] == []
        assert {t for (t,) in db_rows(served, "SELECT id FROM tracks")} == {*ids, mine}

        # Editing an imported track here is what republishes it: same record, its blob kept, this node's URL.
        r = artist.http.patch(f"/tracks/{ids[0]}", files={"title": (None, "renamed here")}, headers=csrf)
        assert r.status_code == 200, r.text
        rec = wait_for(lambda: (lambda v: v if v["value"]["title"] == "renamed here" else None)(
            other.get(first["uri"])))
        assert rec["value"]["audioBlob"]["ref"] == flac_blob["ref"]
        assert rec["value"]["audioUrl"] == f"{served.url}/audio/{sha(flac.read_bytes())}"
        wait_for(lambda: settled(artist))
        assert artist.http.get("/sync/").json()["outbox"]["failed"] == 0
    finally:
        served.stop()


def test_a_listener_who_cannot_upload_gets_nothing_imported(pds, tmp_path: Path) -> None:
    label = pds.create_account("label")
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_AUTH_UPLOADERS=label.did))
    try:
        listener = pds.create_account("listener")
        other = OtherClient(pds, listener)
        song = make_audio(tmp_path / "s.mp3", "mp3", seconds=1)
        other.track("not here", blob=other.upload_blob(song.read_bytes(), "audio/mpeg"), file_type="mp3")
        me = sign_in(served.url, listener)
        report = me.http.post("/sync/reconcile", headers={"X-CSRF-Token": me.csrf}).json()
        assert report["tracks"] is None and "tracks" not in report["adopted"]
        wait_for(lambda: served.log().count(" reconciled did=") >= 2)  # the sign-in's own pass too
        assert db_rows(served, "SELECT count(*) FROM tracks") == [(0,)]
        assert db_rows(served, "SELECT count(*) FROM uploads") == [(0,)]
        assert not stored_files(served)
    finally:
        served.stop()


def test_an_import_killed_mid_way_resumes_after_restart(pds, tmp_path: Path) -> None:
    env = node_env(pds, PLYRD_MEDIA_WORKERS="1")
    served = start_node([], cwd=tmp_path, env=env)
    account = pds.create_account("crashimp")
    other = OtherClient(pds, account)
    song = make_audio(tmp_path / "long.aiff", "aiff", seconds=240, channels=2, kind="music")  # about 42 MB
    made = other.track("survives a crash", blob=other.upload_blob(song.read_bytes(), "audio/aiff"),
                       file_type="aiff")
    artist = sign_in(served.url, account)
    upload_id = wait_for(lambda: (db_rows(served, "SELECT id FROM uploads") or [[None]])[0][0], timeout=60)
    with artist.http.stream("GET", f"/tracks/uploads/{upload_id}/progress", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["phase"] == "transcoding":
                break
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)
    assert db_rows(served, "SELECT state FROM jobs") == [("running",)]

    port = int(served.url.rsplit(":", 1)[1])
    restarted = start_node([], cwd=tmp_path, env=env, port=port, log_path=tmp_path / "second.log")
    try:
        artist = sign_in(restarted.url, account)  # its pass finds the record already here: nothing twice
        events = artist.wait(upload_id, timeout=180)
        assert events[-1]["status"] == "completed", (events, restarted.log())
        track = artist.http.get(f"/tracks/{events[-1]['track_id']}").json()
        assert track["playable"] and track["file_type"] == "mp3" and track["title"] == "survives a crash"
        assert db_rows(restarted, "SELECT count(*) FROM tracks") == [(1,)]
        assert db_rows(restarted, "SELECT count(*) FROM uploads") == [(1,)]
        rows = dict(db_rows(restarted, "SELECT sha256, refcount FROM blobs"))
        assert stored_files(restarted) == set(rows) and all(n >= 1 for n in rows.values())
        assert not list((restarted.data / "tmp").iterdir())
        assert "interrupted job recovered" in restarted.log()
        wait_for(lambda: settled(artist))
        [rec] = records(pds, account.did, "fm.plyr.track")
        assert (rec["uri"], rec["cid"]) == (made["uri"], made["cid"])  # never republished by the import
    finally:
        restarted.stop()


# ---- the fetch and the checks, without a PDS


class _FakePDS(http.server.BaseHTTPRequestHandler):
    """Answers getBlob from a table: cid -> (status, body, send content-length)."""

    blobs: ClassVar[dict[str, tuple[int, bytes, bool]]] = {}

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        cid = parse_qs(urlsplit(self.path).query).get("cid", [""])[0]
        status, body, length = self.blobs.get(cid, (400, b'{"error":"InvalidRequest","message":"Blob not found"}',
                                                   True))
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_pds() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakePDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_fetch_keeps_only_the_bytes_the_cid_names(fake_pds: str, tmp_path: Path) -> None:
    from plyrd.atproto.net import make_http_client
    from plyrd.db import Database
    from plyrd.storage import BlobStore

    good, liar, huge = b"the real audio" * 1000, b"other bytes" * 1000, b"x" * (2 * MB)
    cid_good, cid_liar, cid_huge = (blob_cid(sha(b)) for b in (good, b"what the record names", huge))
    _FakePDS.blobs = {cid_good: (200, good, True), cid_liar: (200, liar, True), cid_huge: (200, huge, False)}
    db = Database(tmp_path / "p.db", busy_timeout_ms=1000, read_connections=1)
    await db.open()
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    client = make_http_client(allow_private=True, user_agent="plyrd-tests")
    try:
        async def fetch(cid: str, named: bytes) -> Any:
            return await fetch_blob(client, store, pds_url=fake_pds, did="did:plc:abc", cid=cid, sha=sha(named),
                                    mime="audio/flac", max_bytes=MB)

        blob = await fetch(cid_good, good)
        assert blob.path.read_bytes() == good
        with pytest.raises(Skip, match="do not match the blob's CID"):
            await fetch(cid_liar, b"what the record names")
        with pytest.raises(Skip, match="over this node's limit"):  # streamed without a length: cut off at 1 MB
            await fetch(cid_huge, huge)
        with pytest.raises(Skip, match="missing at the PDS"):
            await fetch(blob_cid(sha(b"never uploaded")), b"never uploaded")
        with pytest.raises(Skip, match="could not fetch"):
            await fetch_blob(make_http_client(allow_private=False, user_agent="t"), store, pds_url=fake_pds,
                             did="did:plc:abc", cid=cid_good, sha=sha(good), mime="audio/flac", max_bytes=MB)
        # Only the good one is in the store; nothing half-written stays in tmp/.
        assert {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()} == {sha(good)}
        assert [r["sha256"] for r in await db.fetchall("SELECT sha256 FROM blobs")] == [sha(good)]
        assert not list((tmp_path / "tmp").iterdir())
    finally:
        await client.aclose()
        await db.close()


def test_plan_reads_the_record_and_refuses_what_cannot_come() -> None:
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    rkey = tid_for_time(datetime(2026, 1, 1, tzinfo=UTC))
    cid = blob_cid(sha(b"audio"))
    blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": "audio/mpeg", "size": 5}

    def rec(**value: Any) -> dict[str, Any]:
        base = {"$type": "fm.plyr.track", "title": " A title ", "artist": "x", "fileType": "mp3",
                "createdAt": "2026-01-01T00:00:00.000Z", "audioBlob": blob}
        return {"uri": f"at://{did}/fm.plyr.track/{rkey}", "cid": "bafyreia", "value": {**base, **value}}

    plan = plan_import(did, rkey, rec(tags=["Rock", "rock", 5, "x" * 51, *[f"t{i}" for i in range(12)]],
                                      labels={"$type": "com.atproto.label.defs#selfLabels",
                                              "values": [{"val": "gore"}]}), max_bytes=MB)
    assert plan.fields.title == "A title" and plan.audio_sha == sha(b"audio") and plan.image_cid is None
    assert plan.fields.tags == ["rock", *[f"t{i}" for i in range(9)]] and plan.fields.self_labels == ["gore"]
    assert plan.record.created_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()

    def reason(r: dict[str, Any], max_bytes: int = MB) -> str:
        with pytest.raises(Skip) as e:
            plan_import(did, rkey, r, max_bytes=max_bytes)
        return e.value.reason

    assert "only at example.com" in reason(rec(audioBlob=None, audioUrl="https://example.com/a.mp3"))
    assert "no audioBlob and no audioUrl" in reason(rec(audioBlob=None))
    assert "over this node's limit" in reason(rec(), max_bytes=4)
    assert "supporters-only" in reason(rec(supportGate={"type": "any"}))
    assert "not a valid fm.plyr.track" in reason(rec(title=""))
    assert "not a sha2-256 raw blob" in reason(rec(audioBlob={**blob, "ref": {"$link": record_cid({"a": 1})}}))
    assert "uri" in reason({**rec(), "uri": f"at://{did}/fm.plyr.track/3kaaaaaaaaaaa"})
