"""Range-request throughput of serve_file against nginx and `python -m http.server`, side by side in one run.

Each server gets the same load for --seconds (after a warm-up): --clients keep-alive connections on loopback,
each asking in a loop for a 1 MiB range of a 64 MiB file (80% `bytes=a-b`, 10% `bytes=a-`, 10% `bytes=-n`) and
checking the status, Content-Range and every byte. The load generator is one asyncio process with a minimal
HTTP/1.1 client (httpx would cost more CPU than the servers on this 2-core machine).

- plyrd: the app from create_app with a bench route calling serve_file, request logging off (as nginx's).
- nginx (if installed): one worker process, sendfile on, access log off.
- http.server: it has no Range support, so it serves a separate 1 MiB file whole: the same bytes per request.

Goal: plyrd at least 80% of the baseline's throughput, with zero errors.

    .venv/bin/python bench/streaming.py [--clients 200] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, rss_mb

GOAL_RATIO = 0.8
FILE_SIZE = 64 * 1024 * 1024
RANGE = 1024 * 1024




def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.05)


# --- servers ----------------------------------------------------------------------------------------------------


def serve_plyrd(port: int, data: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from quart import Blueprint

    from plyrd.app import create_app
    from plyrd.config import load_config
    from plyrd.server import run
    from plyrd.storage import BlobStore
    from plyrd.web.streaming import serve_file

    cfg = load_config(env={}, overrides={"storage.data_dir": data, "server.port": port, "log.requests": False})
    app = create_app(cfg)
    node = app.extensions["plyrd"]
    bp = Blueprint("bench", __name__)

    @bp.get("/bench/file/<sha>")
    async def one(sha: str):  # type: ignore[no-untyped-def]
        store = BlobStore(cfg.blobs_dir, cfg.tmp_dir, node.db)
        return await serve_file(store.path_for(sha), mime="audio/flac", etag=sha)

    app.register_blueprint(bp)
    run(cfg, app)


def start_nginx(root: Path, port: int, work: Path) -> subprocess.Popen | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        return None
    conf = work / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{ root {root}; }}
    }}
}}
""")
    return subprocess.Popen([binary, "-c", str(conf), "-e", str(work / "nginx-error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- load generator ---------------------------------------------------------------------------------------------


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(what)


async def client(port: int, path: str, data: bytes, ranged: bool, stats: Stats, measuring: asyncio.Event,
                 stop: asyncio.Event, seed: int) -> None:
    rnd = random.Random(seed)
    reader = writer = None
    size = len(data)
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            if ranged:
                kind = rnd.random()
                if kind < 0.8:
                    start = rnd.randrange(0, size - RANGE)
                    spec, end = f"bytes={start}-{start + RANGE - 1}", start + RANGE
                elif kind < 0.9:
                    start = size - RANGE
                    spec, end = f"bytes={start}-", size
                else:
                    start, end = size - RANGE, size
                    spec = f"bytes=-{RANGE}"
                extra = f"Range: {spec}\r\n"
            else:
                start, end, extra = 0, size, ""
            began = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
            status = int(head[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            length = int(headers.get("content-length", "-1"))
            body = await reader.readexactly(length) if length >= 0 else await reader.read()
            ok = status == (206 if ranged else 200) and body == data[start:end]
            if ranged and headers.get("content-range") != f"bytes {start}-{end - 1}/{size}":
                ok = False
            if measuring.is_set() and not stop.is_set():
                if ok:
                    stats.requests += 1
                    stats.bytes += len(body)
                    stats.latencies.append(time.perf_counter() - began)
                else:
                    stats.error(f"status {status}, {len(body)} bytes, {headers.get('content-range')}")
            if headers.get("connection", "").lower() == "close" or head[0].startswith("HTTP/1.0"):
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            if measuring.is_set() and not stop.is_set():
                stats.error(repr(e))
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def load(port: int, path: str, data: bytes, ranged: bool, clients: int, warmup: float,
               seconds: float) -> tuple[Stats, float]:
    stats, measuring, stop = Stats(), asyncio.Event(), asyncio.Event()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(client(port, path, data, ranged, stats, measuring, stop, seed=i)))
        await asyncio.sleep(warmup / 4 / clients)  # ramp up: do not overflow a listen backlog of 100
    await asyncio.sleep(warmup * 3 / 4)
    measuring.set()
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - started
    await asyncio.wait(tasks, timeout=30)
    return stats, elapsed


def run_load(args: argparse.Namespace) -> None:
    """The load generator, in its own process: prints one JSON line of results."""
    data = Path(args.load[2]).read_bytes()
    stats, elapsed = asyncio.run(load(int(args.load[0]), args.load[1], data, args.load[3] == "ranged",
                                      args.clients, args.warmup, args.seconds))
    lat = sorted(stats.latencies) or [float("nan")]
    print(json.dumps({
        "requests": stats.requests, "bytes": stats.bytes, "errors": stats.errors, "seconds": elapsed,
        "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "first_errors": stats.first_errors,
    }))


def measure(name: str, pid: int, port: int, path: str, file: Path, ranged: bool,
            args: argparse.Namespace) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), path, str(file), "ranged" if ranged else "whole",
         "--clients", str(args.clients), "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
        capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["name"] = name
    result["rss"] = rss_mb(pid)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA"), help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_plyrd(int(args.serve[0]), args.serve[1])
        return
    if args.load:
        run_load(args)
        return

    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = os.urandom(FILE_SIZE)
        sha = hashlib.sha256(data).hexdigest()
        blob = tmp / "data" / "blobs" / sha[:2] / sha[2:4] / sha
        blob.parent.mkdir(parents=True)
        blob.write_bytes(data)
        www = tmp / "www"
        www.mkdir()
        (www / "track.flac").write_bytes(data)
        whole = tmp / "range.bin"  # what each ranged request returns, as one file for http.server
        whole.write_bytes(data[:RANGE])
        (www / "range.bin").write_bytes(data[:RANGE])

        procs: list[subprocess.Popen] = []
        try:
            port = free_port()
            plyrd = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(tmp / "data")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(plyrd)
            wait_http(f"http://127.0.0.1:{port}/health")
            results.append(measure("plyrd serve_file", plyrd.pid, port, f"/bench/file/{sha}", blob, True, args))

            port = free_port()
            nginx = start_nginx(www, port, tmp)
            if nginx is not None:
                procs.append(nginx)
                wait_http(f"http://127.0.0.1:{port}/range.bin")
                worker = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True, text=True).stdout
                wpid = int(worker.split()[0]) if worker.strip() else nginx.pid
                results.append(measure("nginx (1 worker)", wpid, port, "/track.flac", blob, True, args))

            port = free_port()
            httpd = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                      "--directory", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(httpd)
            wait_http(f"http://127.0.0.1:{port}/range.bin")
            results.append(measure("http.server (whole 1 MiB)", httpd.pid, port, "/range.bin", whole, False, args))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()

    print(f"{args.clients} clients, 1 MiB ranges of a 64 MiB file, {args.seconds:.0f} s each, loopback")
    print(f"  {'server':28} {'MB/s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS MB':>7}")
    for r in results:
        print(f"  {r['name']:28} {r['bytes'] / r['seconds'] / 1e6:8.0f} {r['requests'] / r['seconds']:8.0f} "
              f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7d} {r['rss']:7.1f}")
        for e in r["first_errors"]:
            print(f"      error: {e}")
    ours = results[0]["bytes"] / results[0]["seconds"]
    for base in results[1:]:
        ratio = ours / (base["bytes"] / base["seconds"])
        print(f"  plyrd / {base['name']}: {ratio:.0%}"
              f" (goal >= {GOAL_RATIO:.0%}: {'met' if ratio >= GOAL_RATIO else 'MISSED'})")
    print(f"  plyrd errors: {results[0]['errors']} (goal 0: {'met' if results[0]['errors'] == 0 else 'MISSED'})")


if __name__ == "__main__":
    main()
