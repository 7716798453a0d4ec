"""Playing other repos' tracks with verified bytes (plyrd.network.remote_audio) against a real node and the real PDS:
the audio blob is uploaded to the artist's PDS and named by a plain createRecord'ed fm.plyr.track, the node's rows
for the remote track are written as plyrd.network.remote_tracks adopts one. /audio answers the exact bytes, fetched
once (a replay is read from the cache: the node logs each fetch), with ranges; a PDS that sends other bytes than the
CID names, or more than the record declares, is refused with a 502 that leaves no file and no row (a small local
server poses as that PDS: the real one never lies); an artist who moved is found again through their DID; the
cache keeps to its cap, least recently played first; Subsonic's stream gives the same bytes; nothing remote is
downloadable here. A record with only an audioUrl is relayed with ranges (in process, against an https host on
loopback: the node's own client trusts only public CAs, and a stored audioUrl must be https)."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_env, node_fixture, start_node
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import anonymous, db
from pds_harness import Account
from subsonic_support import rest_listener

from plyrd.atproto.cbor import blob_cid
from plyrd.atproto.identity import IdentityResolver
from plyrd.atproto.net import make_http_client
from plyrd.db import Database
from plyrd.network.remote_audio import RemoteAudio
from plyrd.storage import BlobStore

# 1 MiB: two of the 2.8 s WAVs below (~494 kB each) fit, a third does not.
node = node_fixture("remote_audio", PLYRD_NETWORK_REMOTE_AUDIO_CACHE_MB="1")

WAV_SECONDS = 2.8


@dataclass
class Remote:
    track_id: int
    sha: str
    data: bytes


@dataclass
class FakePDS:
    """http.server in a thread posing as an artist's PDS: answers getBlob with `status` and `body`, counts calls."""

    status: int = 200
    body: bytes = b""
    pause: float = 0.0  # seconds between the body's first half and the rest
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.calls.append(self.path)
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json" if fake.status >= 400 else "audio/wav")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                half = len(fake.body) // 2
                try:
                    self.wfile.write(fake.body[:half])
                    self.wfile.flush()
                    time.sleep(fake.pause)
                    self.wfile.write(fake.body[half:])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_pds() -> Iterator[FakePDS]:
    fake = FakePDS()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def artist(pds: Any) -> Account:
    return pds.create_account("remote")


def wav(tmp: Path, name: str, frequency: float) -> bytes:
    return make_audio(tmp / f"{name}.wav", "wav", seconds=WAV_SECONDS, frequency=frequency).read_bytes()


def adopt_rows(node: ServedNode, did: str, pds_url: str, title: str, sha: str, size: int,
               record: tuple[str, str] = ("", "")) -> int:
    """The rows a remote track has once adopted (as plyrd.network.remote_tracks writes them): its artist with their
    PDS, the track (source 'remote', original_sha the blob's digest), and where its audio is."""
    uri, cid = record
    db(node, "INSERT INTO users(did, pds_url) VALUES (?, ?) ON CONFLICT(did) DO NOTHING", (did, pds_url))
    rkey = uri.rsplit("/", 1)[-1] if uri else None
    track_id = db(node, "INSERT INTO tracks(artist_did, title, original_sha, original_ext, original_mime, container,"
                  " codec, duration, sample_rate, channels, status, source, record_uri, record_cid, rkey)"
                  " VALUES (?, ?, ?, 'wav', 'audio/wav', 'wav', 'pcm_s16le', ?, 44100, 2, 'ready', 'remote', ?, ?, ?)"
                  " RETURNING id", (did, title, sha, WAV_SECONDS, uri or None, cid or None, rkey))[0][0]
    db(node, "INSERT INTO remote_tracks(track_id, audio_cid, audio_size) VALUES (?, ?, ?)",
       (track_id, blob_cid(sha), size))
    return int(track_id)


def publish_remote(node: ServedNode, pds: Any, account: Account, title: str, data: bytes,
                   pds_url: str | None = None) -> Remote:
    """`data` uploaded to `account`'s PDS as a blob, an fm.plyr.track naming it written there with a plain
    createRecord, and the node's rows for it (`pds_url`: where the node believes the artist's PDS is)."""
    auth = {"Authorization": f"Bearer {account.access_jwt}"}
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.uploadBlob", content=data,
                   headers={**auth, "Content-Type": "audio/wav"}, timeout=30)
    assert r.status_code == 200, r.text
    blob = r.json()["blob"]
    sha = hashlib.sha256(data).hexdigest()
    assert blob["ref"]["$link"] == blob_cid(sha)
    record = {"$type": "fm.plyr.track", "title": title, "artist": "Remote Artist", "fileType": "wav",
              "audioBlob": blob, "duration": 3, "createdAt": "2026-12-05T10:00:00.000Z"}
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.createRecord", headers=auth, timeout=30,
                   json={"repo": account.did, "collection": "fm.plyr.track", "record": record})
    assert r.status_code == 200, r.text
    track_id = adopt_rows(node, account.did, pds_url or pds.pds_url, title, sha, len(data),
                          (r.json()["uri"], r.json()["cid"]))
    return Remote(track_id, sha, data)


def fetches(node: ServedNode, sha: str) -> int:
    """How often the node fetched this blob from a PDS (it logs each fetch)."""
    return sum(1 for line in node.log().splitlines() if "remote audio fetched" in line and f"sha256={sha}" in line)


def leftovers(node: ServedNode, *shas: str) -> dict[str, Any]:
    """What a refused fetch must not leave: files under those names, anything in tmp/, remote_audio rows."""
    return {
        "blobs": sorted(p.name for p in (node.data / "blobs").rglob("*") if p.name in shas),
        "tmp": sorted(p.name for p in (node.data / "tmp").iterdir()),
        "rows": db(node, "SELECT sha256 FROM remote_audio WHERE sha256 IN (SELECT value FROM json_each(?))",
                   (json.dumps(list(shas)),)),
        "blob_rows": db(node, "SELECT sha256 FROM blobs WHERE sha256 IN (SELECT value FROM json_each(?))",
                        (json.dumps(list(shas)),)),
    }


NOTHING = {"blobs": [], "tmp": [], "rows": [], "blob_rows": []}


@pytest.fixture(scope="module")
def first(node: ServedNode, pds: Any, artist: Account, tmp_path_factory: pytest.TempPathFactory) -> Remote:
    return publish_remote(node, pds, artist, "first", wav(tmp_path_factory.mktemp("a"), "first", 330.0))


def test_plays_the_exact_bytes_once_fetched(node: ServedNode, first: Remote) -> None:
    web = anonymous(node)
    track = web.get(f"/tracks/{first.track_id}").json()
    assert track["source"] == "remote" and track["file_id"] == first.sha
    r = web.get(f"/audio/{first.sha}")
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == first.sha and r.content == first.data
    assert r.headers["etag"] == f'"{first.sha}"' and "immutable" in r.headers["cache-control"]
    assert r.headers["content-type"] == "audio/wav"
    assert fetches(node, first.sha) == 1
    assert db(node, "SELECT size FROM remote_audio WHERE sha256 = ?", (first.sha,)) == [(len(first.data),)]
    assert db(node, "SELECT refcount FROM blobs WHERE sha256 = ?", (first.sha,)) == [(1,)]  # the cache's reference

    # Again, and a range of it: from the cache, the PDS not asked again.
    again = web.get(f"/audio/{first.sha}")
    assert again.status_code == 200 and again.content == first.data
    part = web.get(f"/audio/{first.sha}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == first.data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(first.data)}"
    assert fetches(node, first.sha) == 1


def test_not_downloadable_here(node: ServedNode, first: Remote) -> None:
    r = anonymous(node).get(f"/audio/{first.sha}/download")
    assert r.status_code == 403 and "download it where its artist publishes it" in r.json()["detail"]


def test_other_bytes_than_the_cid_names_are_refused(node: ServedNode, fake_pds: FakePDS, tmp_path: Path) -> None:
    claimed = wav(tmp_path, "claimed", 500.0)
    sent = wav(tmp_path, "sent", 510.0)
    assert len(claimed) == len(sent) and claimed != sent
    fake_pds.body = sent
    sha = hashlib.sha256(claimed).hexdigest()
    adopt_rows(node, "did:plc:liarliarliarliarliarliar", fake_pds.url, "liar", sha, len(claimed))
    r = anonymous(node).get(f"/audio/{sha}")
    assert r.status_code == 502, r.text
    assert "refused" in r.json()["detail"] and sha in r.json()["detail"]
    assert len(fake_pds.calls) == 1 and f"cid={blob_cid(sha)}" in fake_pds.calls[0]
    assert leftovers(node, sha, hashlib.sha256(sent).hexdigest()) == NOTHING


def test_more_bytes_than_the_record_declares_are_refused(node: ServedNode, fake_pds: FakePDS, tmp_path: Path) -> None:
    data = wav(tmp_path, "long", 520.0)
    fake_pds.body = data
    sha = hashlib.sha256(data).hexdigest()
    track_id = adopt_rows(node, "did:plc:bigbigbigbigbigbigbigbigb", fake_pds.url, "too long", sha, len(data))
    db(node, "UPDATE remote_tracks SET audio_size = ? WHERE track_id = ?", (len(data) - 1, track_id))
    r = anonymous(node).get(f"/audio/{sha}")
    assert r.status_code == 502, r.text
    assert "more than" in r.json()["detail"]
    assert leftovers(node, sha) == NOTHING


def test_concurrent_plays_share_one_fetch(node: ServedNode, fake_pds: FakePDS, tmp_path: Path) -> None:
    data = wav(tmp_path, "shared", 530.0)
    fake_pds.body, fake_pds.pause = data, 0.5
    sha = hashlib.sha256(data).hexdigest()
    adopt_rows(node, "did:plc:sharedsharedsharedshared", fake_pds.url, "shared", sha, len(data))
    results: list[bytes] = []

    def play() -> None:
        results.append(anonymous(node).get(f"/audio/{sha}").content)

    players = [threading.Thread(target=play) for _ in range(4)]
    for t in players:
        t.start()
    for t in players:
        t.join()
    assert results == [data] * 4
    assert len(fake_pds.calls) == 1 and fetches(node, sha) == 1


def test_a_listener_who_leaves_mid_fetch_leaves_nothing(node: ServedNode, fake_pds: FakePDS,
                                                        tmp_path: Path) -> None:
    data = wav(tmp_path, "left", 540.0)
    fake_pds.body, fake_pds.pause = data, 2.0
    sha = hashlib.sha256(data).hexdigest()
    adopt_rows(node, "did:plc:leftleftleftleftleftleftl", fake_pds.url, "left", sha, len(data))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{node.url}/audio/{sha}", timeout=0.5)
    time.sleep(2.5)  # the PDS has finished sending by now: a fetch that went on would have stored it
    assert len(fake_pds.calls) == 1
    assert leftovers(node, sha) == NOTHING


def test_a_moved_artist_is_found_through_their_did(node: ServedNode, pds: Any, fake_pds: FakePDS,
                                                   tmp_path: Path) -> None:
    # The node knows the artist at a PDS they left: it answers as a PDS does for a repo it does not hold.
    fake_pds.status, fake_pds.body = 400, b'{"error":"RepoNotFound","message":"Could not find repo"}'
    mover = pds.create_account("mover")
    moved = publish_remote(node, pds, mover, "moved", wav(tmp_path, "moved", 600.0), pds_url=fake_pds.url)
    r = anonymous(node).get(f"/audio/{moved.sha}")
    assert r.status_code == 200, r.text
    assert r.content == moved.data
    assert len(fake_pds.calls) == 1
    assert db(node, "SELECT pds_url FROM users WHERE did = ?", (mover.did,)) == [(pds.pds_url,)]


def test_subsonic_stream_gives_the_same_bytes(node: ServedNode, pds: Any, artist: Account, tmp_path: Path) -> None:
    second = publish_remote(node, pds, artist, "second", wav(tmp_path, "second", 440.0))
    listener = rest_listener(node.url, pds.create_account("listener"))
    r = listener.raw("stream", id=f"tr-{second.track_id}")
    assert r.status_code == 200, r.text
    assert r.content == second.data
    assert fetches(node, second.sha) == 1
    assert listener.raw("stream", id=f"tr-{second.track_id}").content == second.data
    assert fetches(node, second.sha) == 1
    # transcoded from the cached file
    mp3 = listener.raw("stream", id=f"tr-{second.track_id}", format="mp3", maxBitRate="128")
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg", mp3.text
    assert len(mp3.content) > 10_000 and mp3.content.startswith((b"ID3", b"\xff\xfb"))
    assert fetches(node, second.sha) == 1
    # download: error 50, the file is its artist's PDS's
    body = listener.answer("download", id=f"tr-{second.track_id}")
    assert body["status"] == "failed" and body["error"]["code"] == 50, body


def test_audio_urls_are_checked_again_before_they_are_fetched(node: ServedNode, pds: Any, first: Remote,
                                                              fake_pds: FakePDS) -> None:
    # A record with only an audioUrl: Subsonic relays it through the guarded client, but only an https URL (this
    # one could not have been stored by the node's own adoption, which checks the same way).
    fake_pds.body = b"not audio"
    did = "did:plc:urlurlurlurlurlurlurlurlu"
    db(node, "INSERT INTO users(did, pds_url) VALUES (?, ?)", (did, fake_pds.url))
    track_id = db(node, "INSERT INTO tracks(artist_did, title, original_sha, original_ext, original_mime, container,"
                  " codec, duration, sample_rate, channels, status, source) VALUES (?, 'by url', NULL, 'mp3',"
                  " 'audio/mpeg', 'mp3', 'mp3', 3, 44100, 2, 'ready', 'remote') RETURNING id", (did,))[0][0]
    db(node, "INSERT INTO remote_tracks(track_id, audio_url) VALUES (?, ?)", (track_id, fake_pds.url + "/a.mp3"))
    listener = rest_listener(node.url, pds.create_account("urllisten"))
    body = listener.answer("stream", id=f"tr-{track_id}")
    assert body["status"] == "failed" and "https" in body["error"]["message"], body
    # The web player's relay of it (same origin, for Web Audio) checks the same way.
    web = anonymous(node)
    r = web.get(f"/audio/remote/{track_id}")
    assert r.status_code == 502 and "https" in r.json()["detail"], r.text
    assert fake_pds.calls == []
    # Only audioUrl tracks are relayed: one with a file here is served at /audio/<file_id>, and unknown ids are 404.
    assert web.get(f"/audio/remote/{first.track_id}").status_code == 404
    assert web.get("/audio/remote/999999").status_code == 404


def test_an_unavailable_track_does_not_play(node: ServedNode, fake_pds: FakePDS, tmp_path: Path) -> None:
    data = wav(tmp_path, "gone", 550.0)
    fake_pds.body = data
    sha = hashlib.sha256(data).hexdigest()
    track_id = adopt_rows(node, "did:plc:gonegonegonegonegonegoneg", fake_pds.url, "gone", sha, len(data))
    db(node, "UPDATE tracks SET status = 'unavailable' WHERE id = ?", (track_id,))
    r = anonymous(node).get(f"/audio/{sha}")
    assert r.status_code == 404 and "no longer available" in r.json()["detail"]
    assert fake_pds.calls == []


def test_least_recently_played_goes_first(node: ServedNode, pds: Any, artist: Account, first: Remote,
                                          tmp_path: Path) -> None:
    web = anonymous(node)
    second, third = (publish_remote(node, pds, artist, name, wav(tmp_path, name, f))
                     for name, f in (("lru-b", 700.0), ("lru-c", 760.0)))
    # Whatever earlier tests left was played long ago; then `first` and `second` play: they are what the cache holds.
    db(node, "UPDATE remote_audio SET last_played_at = ?", (time.time() - 7200,))
    for track in (first, second):
        assert web.get(f"/audio/{track.sha}").content == track.data
    assert sorted(r[0] for r in db(node, "SELECT sha256 FROM remote_audio")) == sorted([first.sha, second.sha])
    fetched_first = fetches(node, first.sha)

    # `first` played an hour ago, `second` half an hour ago; now `first` plays again, so `second` is the oldest.
    now = time.time()
    db(node, "UPDATE remote_audio SET last_played_at = ? WHERE sha256 = ?", (now - 3600, first.sha))
    db(node, "UPDATE remote_audio SET last_played_at = ? WHERE sha256 = ?", (now - 1800, second.sha))
    assert web.get(f"/audio/{first.sha}").content == first.data
    assert db(node, "SELECT last_played_at > ? FROM remote_audio WHERE sha256 = ?", (now - 60, first.sha)) == [(1,)]

    # A third does not fit beside them (1 MiB): `second` goes, its row, its reference and its file.
    assert web.get(f"/audio/{third.sha}").content == third.data
    assert sorted(r[0] for r in db(node, "SELECT sha256 FROM remote_audio")) == sorted([first.sha, third.sha])
    assert db(node, "SELECT count(*) FROM blobs WHERE sha256 = ?", (second.sha,)) == [(0,)]
    assert not any(p.name == second.sha for p in (node.data / "blobs").rglob("*"))
    assert fetches(node, first.sha) == fetched_first
    # Evicted audio plays again: fetched anew.
    assert web.get(f"/audio/{second.sha}").content == second.data
    assert fetches(node, second.sha) == 2


def test_a_smaller_cap_applies_at_start_and_zero_keeps_nothing(pds: Any, artist: Account, tmp_path: Path) -> None:
    env = {"PLYRD_NETWORK_REMOTE_AUDIO_CACHE_MB": "1"}
    served = start_node([], cwd=tmp_path, env=node_env(pds, **env))
    try:
        track = publish_remote(served, pds, artist, "kept", wav(tmp_path, "kept", 800.0))
        assert anonymous(served).get(f"/audio/{track.sha}").content == track.data
        assert db(served, "SELECT sha256 FROM remote_audio") == [(track.sha,)]
    finally:
        served.stop()
    # The same data with the cap at 0: the cache is emptied at start; a play fetches, serves, and keeps nothing.
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_NETWORK_REMOTE_AUDIO_CACHE_MB="0"),
                        log_path=tmp_path / "second.log")
    try:
        assert leftovers(served, track.sha) == NOTHING
        web = anonymous(served)
        for expected in (track.data, track.data[100:200]):
            r = web.get(f"/audio/{track.sha}", headers={"Range": "bytes=100-199"} if len(expected) == 100 else {})
            assert r.content == expected, r.text
            deadline = time.monotonic() + 5
            while leftovers(served, track.sha) != NOTHING and time.monotonic() < deadline:
                time.sleep(0.05)  # released right after the response opened its file
            assert leftovers(served, track.sha) == NOTHING
        assert fetches(served, track.sha) == 2
    finally:
        served.stop()


# ---- an audioUrl relayed (in process: the node's own client trusts only public CAs, and an https URL is required) --


def _self_signed_loopback(tmp_path: Path) -> Path:
    """A certificate (and key) for the IP address 127.0.0.1, its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "loopback.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pem


class AudioHost:
    """An https host on 127.0.0.1 serving one file at /a.mp3 with ranges (as storage services do), a redirect to it
    at /hop, and the Range headers it was sent."""

    def __init__(self, pem: Path, data: bytes) -> None:
        self.ranges: list[str | None] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/hop":
                    self.send_response(302)
                    self.send_header("Location", "/a.mp3")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                host.ranges.append(self.headers.get("Range"))
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                start, end = (int(m[1]), int(m[2] or len(data) - 1)) if m else (0, len(data) - 1)
                self.send_response(206 if m else 200)
                self.send_header("Content-Type", "text/html")  # a host's type is not trusted for the node's origin
                self.send_header("Content-Length", str(end + 1 - start))
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                self.wfile.write(data[start:end + 1])

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_an_audio_url_is_relayed_with_ranges(tmp_path: Path) -> None:
    data = bytes(range(256)) * 400
    pem = _self_signed_loopback(tmp_path)
    audio_host = AudioHost(pem, data)
    database = Database(tmp_path / "plyrd.db")
    await database.open()
    try:
        async with database.write() as conn:
            await conn.execute("INSERT INTO users(did) VALUES ('did:plc:urlurlurlurlurlurlurlurlu')")
            await conn.execute(
                "INSERT INTO tracks(id, artist_did, title, original_sha, original_ext, original_mime, container, codec,"
                " duration, sample_rate, channels, status, source) VALUES (1, 'did:plc:urlurlurlurlurlurlurlurlu',"
                " 'by url', NULL, 'mp3', 'audio/mpeg', 'mp3', 'mp3', 3, 44100, 2, 'ready', 'remote')")
            await conn.execute("INSERT INTO remote_tracks(track_id, audio_url) VALUES (1, ?)",
                               (audio_host.url + "/hop",))
        row = await database.fetchone("SELECT * FROM tracks WHERE id = 1")
        client = make_http_client(allow_private=True, user_agent="test",
                                  ssl_context=ssl.create_default_context(cafile=str(pem)))
        store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", database)
        remote = RemoteAudio(database, store, client, IdentityResolver(client), 0)

        async def body(range_header: str | None = None) -> tuple[Any, bytes]:
            up = await remote.open_url(row, range_header)
            try:
                return up, b"".join([chunk async for chunk in up.chunks()])
            finally:
                await up.aclose()

        whole, got = await body()
        assert got == data and not whole.partial and whole.size == len(data)
        assert whole.mime == "audio/mpeg"  # the record's type, not the host's text/html
        part, got = await body("bytes=1000-1999")
        assert got == data[1000:2000] and part.partial and part.content_range == f"bytes 1000-1999/{len(data)}"
        # Only one plain range is passed on: anything else asks for the whole file.
        _, got = await body("bytes=0-1,5-6")
        assert got == data
        assert audio_host.ranges == [None, "bytes=1000-1999", None]
        await client.aclose()
    finally:
        audio_host.close()
        await database.close()
