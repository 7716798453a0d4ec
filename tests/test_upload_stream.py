"""read_multipart through a real hypercorn subprocess (the app from create_app plus a test-only upload route),
driven by httpx and raw sockets: fields and files, limits (413 before the body is read), malformed bodies,
client disconnects, and memory that stays flat however big the upload.

Run as a script (`python tests/test_upload_stream.py PORT DATA_DIR`) it is that server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from quart import Quart

from plyrd.config import Config

MiB = 1024 * 1024
BOUNDARY = "plyrdtestboundary7MA4YWxkTrZu0gW"


def build_app(config: Config) -> Quart:
    from quart import Blueprint, jsonify, request

    from plyrd.app import create_app
    from plyrd.storage import BlobStore
    from plyrd.web import upload_stream

    app = create_app(config)
    upload_stream.install(app)
    node = app.extensions["plyrd"]
    bp = Blueprint("test_upload", __name__)

    @bp.post("/t/upload")
    @upload_stream.streamed_body
    async def upload():  # type: ignore[no-untyped-def]
        store = BlobStore(config.blobs_dir, config.tmp_dir, node.db)
        form = await upload_stream.read_multipart(
            request, store=store, max_file_bytes=int(request.args.get("max_file", 64 * MiB)),
            max_field_bytes=int(request.args.get("max_field", 1024)))
        return jsonify({
            "fields": form.fields,
            "files": {k: {"sha256": f.sha256, "size": f.size, "filename": f.filename,
                          "content_type": f.content_type} for k, f in form.files.items()},
        })

    @bp.post("/t/plain")
    async def plain():  # type: ignore[no-untyped-def]
        # Not marked: read_multipart refuses to run without the paced body.
        store = BlobStore(config.blobs_dir, config.tmp_dir, node.db)
        await upload_stream.read_multipart(request, store=store, max_file_bytes=MiB)
        return jsonify({})

    app.register_blueprint(bp)
    return app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    from test_streaming import start_test_server

    tmp = tmp_path_factory.mktemp("upload")
    proc, url = start_test_server(Path(__file__), tmp)
    yield url, tmp / "data", proc.pid
    proc.terminate()
    proc.wait(20)


def tmp_files(data: Path) -> list[Path]:
    return [p for p in (data / "tmp").rglob("*") if p.is_file()]


def blob_files(data: Path) -> list[Path]:
    return [p for p in (data / "blobs").rglob("*") if p.is_file()]


def wait_until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def part_head(name: str, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode()


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    out = b""
    for k, v in fields.items():
        out += part_head(k) + v.encode() + b"\r\n"
    for k, (fn, data, ct) in files.items():
        out += part_head(k, fn, ct) + data + b"\r\n"
    return out + closing()


def generated_file(size: int, counter: list[int], head: bytes, tail: bytes, chunk: int = MiB) -> Iterator[bytes]:
    """A multipart body produced on the fly, counting what the client has handed to the socket."""
    yield head
    block = os.urandom(chunk)
    sent = 0
    while sent < size:
        piece = block[: min(chunk, size - sent)]
        sent += len(piece)
        counter[0] += len(piece)
        yield piece
    yield tail


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_fields_and_a_file(server: tuple[str, Path, int]) -> None:
    url, data, _ = server
    audio = os.urandom(3 * MiB + 17)
    body = multipart({"title": "Jóga", "tags": '["electronic"]'},
                     {"file": ("../music/01 Jóga.flac", audio, "audio/flac")})
    r = httpx.post(url + "/t/upload", content=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["fields"] == {"title": "Jóga", "tags": '["electronic"]'}
    f = got["files"]["file"]
    sha = hashlib.sha256(audio).hexdigest()
    assert f == {"sha256": sha, "size": len(audio), "filename": "01 Jóga.flac", "content_type": "audio/flac"}
    stored = data / "blobs" / sha[:2] / sha[2:4] / sha
    assert stored.read_bytes() == audio
    assert tmp_files(data) == []


def test_httpx_multipart_encoder_and_edge_parts(server: tuple[str, Path, int]) -> None:
    """httpx's own encoder (its boundary, CRLFs), an empty file and an empty field."""
    url, data, _ = server
    r = httpx.post(url + "/t/upload", data={"empty": "", "n": "1"},
                   files={"a": ("a.bin", b"\r\n--not-a-boundary\r\n" * 1000, "application/octet-stream"),
                          "b": ("empty.bin", b"", "application/octet-stream")}, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["fields"] == {"empty": "", "n": "1"}
    assert got["files"]["a"]["size"] == len(b"\r\n--not-a-boundary\r\n") * 1000
    assert got["files"]["b"]["size"] == 0
    assert tmp_files(data) == []


def test_oversize_file_is_413_before_the_body_is_read(server: tuple[str, Path, int]) -> None:
    url, data, _ = server
    before = set(blob_files(data))
    counter = [0]
    total = 300 * MiB
    body = generated_file(total, counter, part_head("file", "big.wav", "audio/wav"), b"\r\n" + closing())
    # httpx keeps reading after the server stops reading (and closes), so it sees the 413 (30 of 30 runs here).
    r = httpx.post(url + "/t/upload?max_file=2097152", content=body, timeout=30,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 413
    assert r.json() == {"detail": "file is larger than the limit of 2097152 bytes"}
    assert counter[0] < 64 * MiB, f"the client sent {counter[0] / MiB:.0f} MiB before the server stopped it"
    assert wait_until(lambda: tmp_files(data) == [])
    assert set(blob_files(data)) == before


def test_oversize_content_length_is_413_at_once(server: tuple[str, Path, int]) -> None:
    url, data, _ = server
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall((f"POST /t/upload?max_file=1048576 HTTP/1.1\r\nHost: x\r\nContent-Length: {10**12}\r\n"
                   f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode())
        answer = s.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413")
    assert tmp_files(data) == []


def test_oversize_field_is_413(server: tuple[str, Path, int]) -> None:
    url, _, _ = server
    r = httpx.post(url + "/t/upload?max_field=100", content=multipart({"title": "x" * 101}, {}),
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 413 and "longer than 100 bytes" in r.json()["detail"]


@pytest.mark.parametrize(("content_type", "body", "status"), [
    (f"multipart/form-data; boundary={BOUNDARY}", b"this is not multipart at all" * 1000, 400),
    (f"multipart/form-data; boundary={BOUNDARY}", b"no boundary, short", 400),
    ("multipart/form-data", multipart({"a": "b"}, {}), 400),  # no boundary parameter
    ("multipart/form-data; boundary=", multipart({"a": "b"}, {}), 400),
    ("application/json", b'{"a": 1}', 415),
    (None, b"", 415),
    # a part without Content-Disposition, and one without a name
    (f"multipart/form-data; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nX-Other: 1\r\n\r\nvalue\r\n--{BOUNDARY}--\r\n".encode(), 400),
    (f"multipart/form-data; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--{BOUNDARY}--\r\n".encode(), 400),
    # the same field twice
    (f"multipart/form-data; boundary={BOUNDARY}", multipart({"a": "1"}, {})[:-len(closing())]
     + part_head("a") + b"2\r\n" + closing(), 400),
    # a field that is not UTF-8
    (f"multipart/form-data; boundary={BOUNDARY}", part_head("a") + b"\xff\xfe\r\n" + closing(), 400),
])
def test_malformed_bodies(server: tuple[str, Path, int], content_type: str | None, body: bytes, status: int) -> None:
    url, data, _ = server
    headers = {"Content-Type": content_type} if content_type else {}
    r = httpx.post(url + "/t/upload", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"detail"}
    assert tmp_files(data) == []


def test_truncated_body_is_400_and_leaves_nothing(server: tuple[str, Path, int]) -> None:
    url, data, _ = server
    before = set(blob_files(data))
    body = part_head("file", "cut.flac", "audio/flac") + os.urandom(2 * MiB)  # no closing boundary
    r = httpx.post(url + "/t/upload", content=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 400 and "ends before the closing boundary" in r.json()["detail"]
    assert tmp_files(data) == [] and set(blob_files(data)) == before


def test_disconnect_mid_upload_leaves_nothing(server: tuple[str, Path, int]) -> None:
    url, data, _ = server
    before = set(blob_files(data))
    port = int(url.rsplit(":", 1)[1])
    head = part_head("file", "gone.flac", "audio/flac")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"POST /t/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {50 * MiB}\r\n"
                   f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode() + head)
        block = os.urandom(MiB)
        for _ in range(5):
            s.sendall(block)
        # the handler is writing the file now: a temporary file exists
        assert wait_until(lambda: tmp_files(data) != [])
    # the socket is closed: the handler is cancelled and the temporary file removed
    assert wait_until(lambda: tmp_files(data) == []), tmp_files(data)
    assert set(blob_files(data)) == before
    assert httpx.get(url + "/health").status_code == 200


def test_unmarked_route_refuses(server: tuple[str, Path, int]) -> None:
    url, _, _ = server
    r = httpx.post(url + "/t/plain", content=multipart({"a": "b"}, {}),
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 500  # a programming error, logged with the request id


def test_memory_stays_flat_for_a_big_upload(server: tuple[str, Path, int]) -> None:
    """200 MiB streamed as fast as loopback allows: the server's RSS must not follow the body."""
    url, data, pid = server
    counter = [0]
    total = 200 * MiB
    base = rss_mb(pid)
    peak = [base]

    def body() -> Iterator[bytes]:
        for piece in generated_file(total, counter, part_head("file", "big.flac", "audio/flac"),
                                    b"\r\n" + closing()):
            if counter[0] % (8 * MiB) == 0:
                peak[0] = max(peak[0], rss_mb(pid))
            yield piece

    r = httpx.post(url + "/t/upload?max_file=" + str(total), content=body(), timeout=60,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert r.status_code == 200, r.text
    assert r.json()["files"]["file"]["size"] == total
    peak[0] = max(peak[0], rss_mb(pid))
    assert peak[0] - base < 48, f"RSS grew {peak[0] - base:.1f} MB for a {total // MiB} MiB upload"
    assert tmp_files(data) == []



async def test_with_the_test_client(config: Config) -> None:
    """The Quart test client goes through the same ASGI connection class, so handlers are testable in-process."""
    app = build_app(config)
    async with app.test_app():
        client = app.test_client()
        audio = os.urandom(300_000)
        r = await client.post("/t/upload", data=multipart({"title": "t"}, {"file": ("a.mp3", audio, "audio/mpeg")}),
                              headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert r.status_code == 200
        got = await r.get_json()
        assert got["fields"] == {"title": "t"} and got["files"]["file"]["sha256"] == hashlib.sha256(audio).hexdigest()
        r = await client.post("/t/upload?max_file=1000", data=multipart({}, {"file": ("a.mp3", audio, "audio/mpeg")}),
                              headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert r.status_code == 413
        assert tmp_files(config.data_dir) == []


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from plyrd.config import load_config
    from plyrd.server import run

    port, data_dir = int(sys.argv[1]), sys.argv[2]
    cfg = load_config(env={}, overrides={"storage.data_dir": data_dir, "server.port": port, "log.requests": False})
    run(cfg, build_app(cfg))


def test_a_refused_upload_closes_its_connection_so_keep_alive_clients_do_not_stumble(served) -> None:
    """Refused before its body was read, an upload answers `Connection: close`; the client's next request then goes
    on a fresh connection instead of one the server is about to drop."""
    import httpx

    with httpx.Client(base_url=served.url) as client:
        for _ in range(5):
            r = client.post("/tracks/", files={"file": ("a.mp3", b"x" * 2_000_000)})  # not signed in: 401 at once
            assert r.status_code == 401
            assert r.headers.get("connection") == "close"
            assert client.get("/health").status_code == 200
