"""Subsonic `stream` with transcoding: time to first byte, how many live 128 kbit/s MP3 transcodes this machine
sustains, and a cached replay beside them.

Goals (issue 14): first byte under 300 ms (p99) with 20 concurrent streams; at least 40 concurrent 128 kbit/s MP3
transcodes each delivered faster than 1.2x realtime.

1. Build. A data directory migrated by plyrd's own migrations; --tracks FLAC files of --minutes each (stereo 44.1 kHz
   16-bit "music" from tests/audio_samples.py, made with PyAV) stored as blobs the way the store lays them out, one
   artist, ready tracks; a listener's developer token made by plyrd's own session code (bench/catalog.py's).
2. Serve. `python -m plyrd serve` in its own process: log level warning, request logging off,
   subsonic.max_transcodes raised to --slots so the sustained phase finds the machine's limit, not the bound's.
3. Load, from this process with a minimal asyncio HTTP/1.1 client (httpx would take CPU from the server):
   - "first byte, live": --clients clients in a loop for --seconds: `stream?format=mp3&maxBitRate=128` of a random
     track at a random timeOffset (1-60 s: an offset is never cached, so every request is a fresh encode), time to
     the first body byte, then read 256 KiB (what a player buffers before it starts; about 16 s of audio) and hang
     up. A closed loop: a storm of starts, the worst case for first bytes.
   - "first byte, cached": the same with timeOffset 0 after one full play of each track cached its transcode: a
     file read through serve_file.
   - "sustained": N streams at once (N = --step, 2 x --step... up to --max-streams), each a client that reads as a
     player at 1.2x realtime would (it takes what is there, and never more than 1.2x realtime ahead of its start), for
     --hold seconds. A stream is sustained when it received at least 1.2x realtime over the hold (after a 2 s start
     allowance). Reported: the largest N at which every stream was sustained, and the server's CPU.

    .venv/bin/python bench/subsonic_stream.py [--tracks 4 --minutes 3 --clients 20 --seconds 10 --hold 30 --step 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import cpu_seconds, free_port, rss_mb
from catalog import make_sessions, wait_idle

KBPS = 128
REALTIME = 1.2
TTFB_GOAL_MS = 300
STREAMS_GOAL = 40
FIRST_READ = 256 * 1024
BYTES_PER_SECOND = KBPS * 1000 / 8


# --- build ----------------------------------------------------------------------------------------------------------


def build(data: Path, tracks: int, minutes: float) -> tuple[list[int], str]:
    """The data directory: FLAC tracks as blobs and rows, and a developer token. Returns (track ids, token)."""
    from audio_samples import make_audio

    from plyrd import keys
    from plyrd.config import load_config
    from plyrd.db.migrations import migrate
    from plyrd.media.probe import probe
    from plyrd.node import prepare_data_dir

    config = load_config(env={}, overrides={"storage.data_dir": str(data)})
    prepare_data_dir(config)
    keys.resolve(config)
    conn = sqlite3.connect(config.db_path, isolation_level=None)
    migrate(conn)
    artist, listener, fake_pds = "did:plc:benchartist0000000000000", "did:plc:benchlistener00000000000", \
        "http://127.0.0.1:9"
    conn.execute("INSERT INTO users(did, handle, pds_url) VALUES (?, ?, ?), (?, ?, ?)",
                 (artist, "artist.bench.test", fake_pds, listener, "listener0.bench.test", fake_pds))
    ids = []
    work = Path(tempfile.mkdtemp(prefix="bench-flac-"))
    try:
        for i in range(tracks):
            src = make_audio(work / f"t{i}.flac", "flac", seconds=minutes * 60, kind="music",
                             frequency=220.0 + 55 * i)
            info = probe(src)
            sha = hashlib.sha256(src.read_bytes()).hexdigest()
            dest = config.blobs_dir / sha[:2] / sha[2:4] / sha
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.move(src, dest)
            os.chmod(dest, 0o600)
            conn.execute("INSERT INTO blobs(sha256, size, mime, refcount) VALUES (?, ?, 'audio/flac', 1)",
                         (sha, dest.stat().st_size))
            cur = conn.execute(
                "INSERT INTO tracks(artist_did, title, original_sha, original_ext, original_mime, container, codec,"
                " duration, sample_rate, channels, bit_depth, bitrate, lossless, status) VALUES"
                " (?, ?, ?, 'flac', 'audio/flac', ?, ?, ?, ?, ?, ?, ?, 1, 'ready')",
                (artist, f"Bench {i}", sha, info.container, info.codec, info.duration, info.sample_rate,
                 info.channels, info.bit_depth, info.bitrate))
            ids.append(int(cur.lastrowid or 0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    conn.close()
    token = asyncio.run(make_sessions(config, [listener], fake_pds))[0]
    return ids, token


def start_server(data: Path, port: int, log: Path, slots: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLYRD_")}
    env.update(PLYRD_LOG_LEVEL="warning", PLYRD_LOG_REQUESTS="false", PLYRD_SUBSONIC_MAX_TRANSCODES=str(slots))
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "plyrd", "serve", "--data", str(data), "--port", str(port)],
                                cwd=Path(__file__).parent.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the node did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.05)


# --- the client -----------------------------------------------------------------------------------------------------


@dataclass
class Opened:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    first_byte: float  # seconds from sending the request to the first body byte
    first: bytes
    chunked: bool


async def open_stream(port: int, path: str) -> Opened:
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    first = await read_some(reader, chunked)
    return Opened(reader, writer, status, headers, time.perf_counter() - began, first, chunked)


async def read_some(reader: asyncio.StreamReader, chunked: bool) -> bytes:
    """The next piece of body ('' at its end), unwrapping chunked framing."""
    if not chunked:
        return await reader.read(64 * 1024)
    size = int((await reader.readline()).split(b";")[0], 16)
    if size == 0:
        return b""
    data = await reader.readexactly(size)
    await reader.readexactly(2)
    return data


def stream_path(token: str, track: int, offset: float) -> str:
    return f"/rest/stream?apiKey={token}&f=json&id=tr-{track}&format=mp3&maxBitRate={KBPS}&timeOffset={offset:g}"


@dataclass
class Stats:
    ttfb: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    streams: int = 0


async def first_byte_client(port: int, token: str, tracks: list[int], cached: bool, stats: Stats,
                            stop: asyncio.Event, seed: int) -> None:
    rnd = random.Random(seed)
    while not stop.is_set():
        offset = 0.0 if cached else round(rnd.uniform(1, 60), 1)
        try:
            s = await open_stream(port, stream_path(token, rnd.choice(tracks), offset))
            if s.status != 200 or not s.first or s.headers.get("content-type") != "audio/mpeg":
                stats.errors.append(f"status {s.status} {s.headers.get('content-type')} {s.first[:200]!r}")
            elif not stop.is_set():
                stats.ttfb.append(s.first_byte)
                stats.streams += 1
            got = len(s.first)
            while got < FIRST_READ and (data := await read_some(s.reader, s.chunked)):
                got += len(data)
            s.writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            stats.errors.append(repr(e))
            await asyncio.sleep(0.05)


async def first_byte_phase(port: int, token: str, tracks: list[int], clients: int, seconds: float,
                           cached: bool) -> Stats:
    stats, stop = Stats(), asyncio.Event()
    tasks = [asyncio.create_task(first_byte_client(port, token, tracks, cached, stats, stop, i))
             for i in range(clients)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    return stats


async def paced_client(port: int, token: str, track: int, offset: float, hold: float, start: asyncio.Event,
                       results: list[float], errors: list[str]) -> None:
    """Read as a player at REALTIME speed would; append the realtime factor delivered over `hold` seconds."""
    await start.wait()
    try:
        s = await open_stream(port, stream_path(token, track, offset))
        if s.status != 200:
            errors.append(f"status {s.status}: {s.first[:200]!r}")
            s.writer.close()
            return
        began = time.perf_counter()
        got = len(s.first)
        while (elapsed := time.perf_counter() - began) < hold:
            allowed = (elapsed + 2.0) * REALTIME * BYTES_PER_SECOND  # never more than a player would have asked
            if got >= allowed:
                await asyncio.sleep(0.05)
                continue
            data = await read_some(s.reader, s.chunked)
            if not data:
                break
            got += len(data)
        s.writer.close()
        results.append(got / BYTES_PER_SECOND / (hold + 2.0))
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        errors.append(repr(e))


async def sustained_phase(port: int, token: str, tracks: list[int], n: int, hold: float,
                          minutes: float) -> tuple[list[float], list[str]]:
    rnd = random.Random(n)
    start, results, errors = asyncio.Event(), [], []
    tasks = [asyncio.create_task(paced_client(port, token, rnd.choice(tracks),
                                              round(rnd.uniform(1, max(2.0, minutes * 60 - hold * REALTIME - 10)), 1),
                                              hold, start, results, errors)) for _ in range(n)]
    start.set()
    await asyncio.wait(tasks, timeout=hold + 60)
    return results, errors


def warm_cache(port: int, token: str, tracks: list[int]) -> None:
    for track in tracks:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{stream_path(token, track, 0)}", timeout=120) as r:
            r.read()
    time.sleep(1)  # the cache row is written just after the last byte


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each first-byte phase")
    parser.add_argument("--hold", type=float, default=30.0, help="length of each sustained step")
    parser.add_argument("--max-streams", type=int, default=120)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--slots", type=int, default=400, help="subsonic.max_transcodes for the bench's node")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-subsonic-stream-"))
    server = None
    try:
        t0 = time.perf_counter()
        tracks, token = build(work / "data", args.tracks, args.minutes)
        print(f"built {args.tracks} FLAC tracks of {args.minutes:g} min in {time.perf_counter() - t0:.1f} s "
              f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}: other work shares this machine)")
        port = free_port()
        server = start_server(work / "data", port, work / "node.log", args.slots)
        pid = server.pid
        print(f"node idle: RSS {rss_mb(pid):.0f} MB")

        def phase_ttfb(name: str, cached: bool) -> None:
            cpu0, t = cpu_seconds(pid), time.perf_counter()
            stats = asyncio.run(first_byte_phase(port, token, tracks, args.clients, args.seconds, cached))
            elapsed = time.perf_counter() - t
            ms = [x * 1000 for x in stats.ttfb]
            met = "met" if pct(ms, 0.99) < TTFB_GOAL_MS else "MISSED"
            verdict = "" if cached else f"  goal p99 < {TTFB_GOAL_MS} ms: {met}"
            print(f"{name:<20} {args.clients} clients: {stats.streams} streams, first byte p50 {pct(ms, 0.5):.1f} ms"
                  f" p99 {pct(ms, 0.99):.1f} ms max {max(ms, default=float('nan')):.1f} ms; server CPU"
                  f" {(cpu_seconds(pid) - cpu0) / elapsed:.2f} cores, RSS {rss_mb(pid):.0f} MB;"
                  f" errors {len(stats.errors)}{verdict}")
            for e in stats.errors[:3]:
                print("   error:", e)

        phase_ttfb("first byte, live", cached=False)
        best = 0
        wait_idle({"node": server})
        print(f"sustained: streams each read at {REALTIME}x realtime for {args.hold:g} s (128 kbit/s MP3 from FLAC)")
        for n in range(args.step, args.max_streams + 1, args.step):
            cpu0, t = cpu_seconds(pid), time.perf_counter()
            results, errors = asyncio.run(sustained_phase(port, token, tracks, n, args.hold, args.minutes))
            cores = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t)
            ok = sum(1 for r in results if r >= REALTIME * 0.99)
            print(f"  {n:>4} streams: sustained {ok}/{n}, realtime factor min {min(results, default=0):.2f}"
                  f" median {statistics.median(results) if results else 0:.2f}; server CPU {cores:.2f} cores,"
                  f" RSS {rss_mb(pid):.0f} MB; errors {len(errors)}")
            for e in errors[:2]:
                print("     error:", e)
            if ok == n and not errors:
                best = n
            else:
                break
            wait_idle({"node": server})
        print(f"concurrent 128 kbit/s MP3 transcodes sustained above {REALTIME}x realtime: {best}"
              f"  goal >= {STREAMS_GOAL}: {'met' if best >= STREAMS_GOAL else 'MISSED'}")
        # Last: a storm of replays that hang up after 256 KiB leaves the server's RSS high (serve_file's too).
        wait_idle({"node": server})
        warm_cache(port, token, tracks)
        print(f"cache warmed (one full play of each track): RSS {rss_mb(pid):.0f} MB")
        phase_ttfb("first byte, cached", cached=True)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
