"""Memory of a node receiving a big upload: read_multipart (paced body) against Quart's own body iteration.

Starts this file as a node (`--serve`: the app from create_app plus two bench routes), streams a generated
multipart body of --mb MiB with httpx as fast as loopback allows, samples the node's VmRSS every 20 ms and prints
the growth over its idle RSS. Goal: growth under 32 MB for 1 GiB through read_multipart.

    .venv/bin/python bench/upload_memory.py [--mb 1024] [--no-naive]

The "naive" route iterates `request.body` with no MAX_CONTENT_LENGTH bound (what a handler gets without
upload_stream): Quart then buffers whatever the client sends faster than the handler writes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, rss_mb

GOAL_MB = 32.0
MiB = 1024 * 1024
BOUNDARY = "benchboundary0123456789"




def serve(port: int, data: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from quart import Blueprint, jsonify, request

    from plyrd.app import create_app
    from plyrd.config import load_config
    from plyrd.server import run
    from plyrd.storage import BlobStore
    from plyrd.web import upload_stream

    cfg = load_config(env={}, overrides={"storage.data_dir": data, "server.port": port, "log.requests": False})
    app = create_app(cfg)
    app.config["MAX_CONTENT_LENGTH"] = None  # only for the naive route's sake; the paced route ignores it
    upload_stream.install(app)
    node = app.extensions["plyrd"]
    bp = Blueprint("bench", __name__)

    @bp.post("/bench/upload")
    @upload_stream.streamed_body
    async def upload():  # type: ignore[no-untyped-def]
        store = BlobStore(cfg.blobs_dir, cfg.tmp_dir, node.db)
        form = await upload_stream.read_multipart(request, store=store, max_file_bytes=4096 * MiB)
        f = form.files["file"]
        return jsonify({"size": f.size, "sha256": f.sha256})

    @bp.post("/bench/naive")
    async def naive():  # type: ignore[no-untyped-def]
        import asyncio

        size = 0
        h = hashlib.sha256()
        with open(os.path.join(data, "naive.bin"), "wb") as out:  # noqa: ASYNC230 - the point is a plain handler
            async for chunk in request.body:
                size += len(chunk)
                await asyncio.to_thread(h.update, chunk)
                await asyncio.to_thread(out.write, chunk)
        os.unlink(os.path.join(data, "naive.bin"))
        return jsonify({"size": size})

    app.register_blueprint(bp)
    run(cfg, app)


def body(total: int) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.flac\"\r\n"
           "Content-Type: audio/flac\r\n\r\n").encode()
    block = os.urandom(MiB)
    sent = 0
    while sent < total:
        piece = block[: min(MiB, total - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def measure(url: str, pid: int, path: str, total: int) -> tuple[float, float, float, int]:
    import httpx

    idle = rss_mb(pid)
    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    r = httpx.post(url + path, content=body(total), timeout=120,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return idle, peak, seconds, r.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="upload size in MiB")
    parser.add_argument("--no-naive", action="store_true", help="skip the unpaced comparison")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return

    import httpx

    total = args.mb * MiB
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), f"{tmp}/data"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            measure(url, proc.pid, "/bench/upload", 64 * MiB)  # warm up: first imports, thread pool, page cache
            print(f"upload of {args.mb} MiB over loopback (node pid {proc.pid})")
            idle, peak, secs, status = measure(url, proc.pid, "/bench/upload", total)
            growth = peak - idle
            print(f"  read_multipart: status {status}, {secs:.1f} s ({args.mb / secs:.0f} MiB/s), "
                  f"RSS idle {idle:.1f} MB, peak {peak:.1f} MB, growth {growth:.1f} MB "
                  f"(goal < {GOAL_MB:.0f} MB: {'met' if growth < GOAL_MB and status == 200 else 'MISSED'})")
            if not args.no_naive:
                idle, peak, secs, status = measure(url, proc.pid, "/bench/naive", total)
                print(f"  naive body:     status {status}, {secs:.1f} s ({args.mb / secs:.0f} MiB/s), "
                      f"RSS idle {idle:.1f} MB, peak {peak:.1f} MB, growth {peak - idle:.1f} MB")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
