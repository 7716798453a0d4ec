"""serve_file over real HTTP (a hypercorn subprocess running the app from create_app plus a test-only route) and
through the test client: full bodies, ranges of every form, 416s, validators, HEAD and download names.

Run as a script (`python tests/test_streaming.py PORT DATA_DIR`) it is that server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from quart import Quart

from plyrd.config import Config

SIZE = 3 * 256 * 1024 + 12345  # several CHUNK_SIZE reads plus a tail
DATA = os.urandom(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()


def build_app(config: Config) -> Quart:
    """The node's app with a test-only blueprint serving files from the data directory's blobs/ with serve_file."""
    from quart import Blueprint, request

    from plyrd.app import create_app
    from plyrd.storage import BlobStore
    from plyrd.web.streaming import serve_file

    app = create_app(config)
    node = app.extensions["plyrd"]
    bp = Blueprint("test_streaming", __name__)

    @bp.get("/t/file/<sha>")
    async def serve(sha: str):  # type: ignore[no-untyped-def]
        store = BlobStore(config.blobs_dir, config.tmp_dir, node.db)
        return await serve_file(store.path_for(sha), mime="audio/flac", etag=sha,
                                download_name=request.args.get("name"),
                                immutable=request.args.get("mutable") is None)

    app.register_blueprint(bp)
    return app


def place(data_dir: Path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    path = data_dir / "blobs" / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha


def start_test_server(script: Path, tmp: Path, timeout: float = 20) -> tuple[subprocess.Popen, str]:
    from conftest import clean_env, free_port

    port = free_port()
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(tmp / "data")],
                            env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError((tmp / "server.log").read_text())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("test server did not start:\n" + (tmp / "server.log").read_text())
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("streaming")
    place(tmp / "data", DATA)
    place(tmp / "data", b"")
    proc, url = start_test_server(Path(__file__), tmp)
    yield url, tmp
    proc.terminate()
    proc.wait(20)


@pytest.fixture
def http(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as client:
        yield client


def get(http: httpx.Client, headers: dict[str, str] | None = None, *, sha: str = SHA, params: dict | None = None,
        method: str = "GET") -> httpx.Response:
    return http.request(method, f"/t/file/{sha}", headers=headers or {}, params=params)


def test_full_body(http: httpx.Client) -> None:
    r = get(http)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{SHA}"'
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"] == "audio/flac"
    assert "content-range" not in r.headers and "content-disposition" not in r.headers


@pytest.mark.parametrize(("spec", "start", "end"), [
    ("bytes=0-0", 0, 1),
    ("bytes=100-299", 100, 300),
    ("bytes=262140-262150", 262140, 262151),  # across a chunk boundary
    (f"bytes=1000-{SIZE + 5000}", 1000, SIZE),  # an end past the file is clamped
    ("bytes=100-", 100, SIZE),  # open-ended
    (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
    ("bytes=-500", SIZE - 500, SIZE),  # suffix (Quart's send_file answers 500 here)
    (f"bytes=-{SIZE * 2}", 0, SIZE),  # a suffix longer than the file is the whole file
    ("BYTES = 5-9", 5, 10),
])
def test_single_ranges(http: httpx.Client, spec: str, start: int, end: int) -> None:
    r = get(http, {"Range": spec})
    assert r.status_code == 206, r.text
    assert r.content == DATA[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert r.headers["content-length"] == str(end - start)
    assert r.headers["accept-ranges"] == "bytes" and r.headers["etag"] == f'"{SHA}"'


@pytest.mark.parametrize("spec", [
    f"bytes={SIZE}-",  # starts at the end
    f"bytes={SIZE + 10}-{SIZE + 20}",
    "bytes=-0",
    "bytes=5-2",  # malformed: ends before it starts
    "bytes=abc",
    "bytes=1-2-3",
    "bytes=-",
    "bytes=",
    "bytes",
    "bytes=1-2,",
])
def test_unsatisfiable_or_malformed_ranges_answer_416(http: httpx.Client, spec: str) -> None:
    r = get(http, {"Range": spec})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["accept-ranges"] == "bytes"
    assert "detail" in r.json()


def test_any_range_of_an_empty_file_is_416(http: httpx.Client) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert get(http, sha=empty).content == b""
    r = get(http, {"Range": "bytes=0-"}, sha=empty)
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"


def test_multi_range_answers_the_whole_file(http: httpx.Client) -> None:
    r = get(http, {"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == DATA and "content-range" not in r.headers


def test_other_units_are_ignored(http: httpx.Client) -> None:
    r = get(http, {"Range": "items=0-5"})
    assert r.status_code == 200 and r.content == DATA


def test_if_range(http: httpx.Client) -> None:
    match = get(http, {"Range": "bytes=10-19", "If-Range": f'"{SHA}"'})
    assert match.status_code == 206 and match.content == DATA[10:20]
    for other in ('"someothertag"', f'W/"{SHA}"', "Wed, 21 Oct 2015 07:28:00 GMT"):
        r = get(http, {"Range": "bytes=10-19", "If-Range": other})
        assert r.status_code == 200 and r.content == DATA, other
    # a stale If-Range also overrides an unsatisfiable range: the client gets the whole (new) file
    assert get(http, {"Range": f"bytes={SIZE}-", "If-Range": '"old"'}).status_code == 200


def test_if_none_match(http: httpx.Client) -> None:
    for value in (f'"{SHA}"', f'W/"{SHA}"', f'"x", "{SHA}"', "*"):
        r = get(http, {"If-None-Match": value})
        assert r.status_code == 304, value
        assert r.content == b""
        assert r.headers["etag"] == f'"{SHA}"' and r.headers["cache-control"].startswith("public")
        assert "content-type" not in r.headers
    # checked before Range
    assert get(http, {"If-None-Match": f'"{SHA}"', "Range": "bytes=0-1"}).status_code == 304
    assert get(http, {"If-None-Match": '"other"'}).status_code == 200


def test_head(http: httpx.Client) -> None:
    r = get(http, method="HEAD")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(SIZE) and r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{SHA}"'
    r = get(http, {"Range": "bytes=-500"}, method="HEAD")
    assert r.status_code == 206 and r.content == b""
    assert r.headers["content-length"] == "500"
    assert r.headers["content-range"] == f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}"
    r = get(http, {"Range": f"bytes={SIZE}-"}, method="HEAD")
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{SIZE}"


def test_download_name(http: httpx.Client) -> None:
    name = 'Björk – "Jóga" 01/02.flac'
    r = get(http, params={"name": name})
    assert r.status_code == 200 and r.content == DATA
    cd = r.headers["content-disposition"]
    assert cd.startswith('attachment; filename="')
    ascii_part = cd.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_part.isascii() and "Bjork" in ascii_part and "/" not in ascii_part
    assert cd.endswith("filename*=UTF-8''" + quote(name, safe=""))
    plain = get(http, params={"name": "track.mp3"}).headers["content-disposition"]
    assert plain == "attachment; filename=\"track.mp3\"; filename*=UTF-8''track.mp3"


def test_mutable_cache_control_and_missing_file(http: httpx.Client) -> None:
    assert get(http, params={"mutable": "1"}).headers["cache-control"] == "public, no-cache"
    r = get(http, sha="0" * 64)
    assert r.status_code == 404 and r.json() == {"detail": "file not found"}


def test_many_concurrent_ranges_are_exact(server: tuple[str, Path]) -> None:
    import asyncio

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server[0], timeout=30,
                                     limits=httpx.Limits(max_connections=50)) as client:
            async def one(i: int) -> None:
                start = (i * 7919) % SIZE
                end = min(SIZE, start + 300_000)
                r = await client.get(f"/t/file/{SHA}", headers={"Range": f"bytes={start}-{end - 1}"})
                assert r.status_code == 206 and r.content == DATA[start:end]
            await asyncio.gather(*(one(i) for i in range(100)))

    asyncio.run(run())


async def test_with_the_test_client(config: Config) -> None:
    """The same handler in-process (no socket): the Quart test client sees the same statuses and bytes."""
    app = build_app(config)
    async with app.test_app():
        sha = place(config.data_dir, DATA[:1000])
        client = app.test_client()
        r = await client.get(f"/t/file/{sha}", headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and await r.get_data() == DATA[990:1000]
        r = await client.get(f"/t/file/{sha}")
        assert r.status_code == 200 and await r.get_data() == DATA[:1000]



@pytest.mark.parametrize("nowait", [True, False])
async def test_cached_and_threaded_reads_agree(config: Config, monkeypatch: pytest.MonkeyPatch, nowait: bool) -> None:
    """Both read paths (page cache on the loop, and the thread used when the cache misses) give the same bytes."""
    from plyrd.web import streaming

    monkeypatch.setattr(streaming, "_NOWAIT", nowait and streaming._NOWAIT)
    reads: list[str] = []
    real = streaming._read_cached

    def spy(fd: int, n: int, pos: int) -> bytes | None:
        data = real(fd, n, pos)
        reads.append("cache" if data is not None else "thread")
        return data

    monkeypatch.setattr(streaming, "_read_cached", spy)
    app = build_app(config)
    async with app.test_app():
        sha = place(config.data_dir, DATA)
        client = app.test_client()
        r = await client.get(f"/t/file/{sha}", headers={"Range": "bytes=1000-"})
        assert r.status_code == 206 and await r.get_data() == DATA[1000:]
    if nowait and hasattr(os, "RWF_NOWAIT"):
        assert "cache" in reads  # the file was just written: it is in the page cache
    elif not nowait:
        assert reads == []


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from plyrd.config import load_config
    from plyrd.server import run

    port, data = int(sys.argv[1]), sys.argv[2]
    cfg = load_config(env={}, overrides={"storage.data_dir": data, "server.port": port, "log.requests": False})
    run(cfg, build_app(cfg))
