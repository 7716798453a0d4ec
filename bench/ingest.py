"""Ingest figures from a real firehose: decode-and-filter rate on one core, end-to-end rate, RSS over 100,000 events,
and the lag from createRecord on the PDS to the subscriber's handler.

Starts the test harness's PDS (tests/pds), writes --commits single-record commits from several accounts in the mix
of a relay's firehose (mostly Bluesky likes, posts, reposts and follows; a few fm.plyr.* records), and captures the
PDS's own com.atproto.sync.subscribeRepos frames. Then:

  decode      plyrd.ingest.firehose.decode over the captured frames, in a loop on one core, with the node's wanted
              collections (plyrd.network.events.NetworkEvents): commit events decoded and filtered per second.
              Goal: >= 3,000/s (a relay's whole firehose on one core of a Pi 4). Also with every collection wanted
              (the worst case: every record block decoded) and Jetstream's JSON of the same events.
  end-to-end  a Subscriber (websocket, decode, batches, cursor in a real plyrd.db, a handler that keeps nothing)
              replaying the PDS's backlog from cursor 0: events/s and CPU seconds of this process.
  rss         the same Subscriber reading --rss-events (100,000) frames from a local firehose replay (a separate
              process cycling the captured frames with new seqs): VmRSS sampled every 10 %; goal: flat.
  lag         createRecord on the PDS -> the event in the subscriber's handler (p50/p99), and createRecord or
              deleteRecord of a like -> the like count changed on a `plyrd serve` node's API (goal: p99 < 2 s).
              Much of it is the reference PDS's own sequencer, which polls its database with a backoff of up to
              1 s while idle, plus the subscriber's batch window (Subscriber.batch_seconds, 0.1 s).

    .venv/bin/python bench/ingest.py [--commits 3000] [--rss-events 100000] [--lag-samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from _common import free_port, rss_mb  # noqa: E402

GOAL_RATE = 3000.0
NOW = "2026-12-05T10:00:00.000Z"
TRACK_URI = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
# Roughly a relay's mix (likes dominate, then posts, reposts, follows); fm.plyr.* are a sliver of the network.
MIX = [("app.bsky.feed.like", 45), ("app.bsky.feed.post", 25), ("app.bsky.feed.repost", 10),
       ("app.bsky.graph.follow", 10), ("fm.plyr.like", 5), ("fm.plyr.comment", 5)]


def wanted() -> frozenset[str]:
    from plyrd.network.events import NetworkEvents

    return frozenset(NetworkEvents.wanted_collections)


def record(collection: str, did: str, n: int) -> dict[str, Any]:
    subject = {"uri": TRACK_URI.replace("fm.plyr.track", "app.bsky.feed.post"), "cid": TRACK_CID}
    if collection in ("app.bsky.feed.like", "app.bsky.feed.repost"):
        return {"$type": collection, "subject": subject, "createdAt": NOW}
    if collection == "app.bsky.feed.post":
        return {"$type": collection, "text": f"post {n} " + "lorem ipsum " * random.randint(1, 20), "langs": ["en"],
                "createdAt": NOW}
    if collection == "app.bsky.graph.follow":
        return {"$type": collection, "subject": did, "createdAt": NOW}
    if collection == "fm.plyr.like":
        return {"$type": collection, "subject": {"uri": TRACK_URI, "cid": TRACK_CID}, "createdAt": NOW}
    return {"$type": collection, "subject": {"uri": TRACK_URI, "cid": TRACK_CID}, "text": f"comment {n}",
            "timestamp": n, "createdAt": NOW}


async def write_commits(pds: Any, n: int, accounts: int = 6) -> None:
    people = [pds.create_account(f"bench{i}") for i in range(accounts)]
    kinds = [c for c, weight in MIX for _ in range(weight)]
    async with httpx.AsyncClient(base_url=pds.pds_url, timeout=60) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker(account: Any) -> None:
            headers = {"Authorization": f"Bearer {account.access_jwt}"}
            while not queue.empty():
                i = queue.get_nowait()
                collection = random.choice(kinds)
                r = await http.post("/xrpc/com.atproto.repo.createRecord", headers=headers, json={
                    "repo": account.did, "collection": collection,
                    "record": record(collection, random.choice(people).did, i)})
                r.raise_for_status()

        await asyncio.gather(*(worker(p) for p in people))


async def capture(ws_base: str) -> list[bytes]:
    """Every frame the PDS has, from its first event (cursor=0) until it goes quiet."""
    from websockets.asyncio.client import connect

    frames: list[bytes] = []
    async with connect(f"{ws_base}/xrpc/com.atproto.sync.subscribeRepos?cursor=0", proxy=None,
                       max_size=5 * 1024 * 1024) as ws:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), 2.0)
            except TimeoutError:
                return frames
            assert isinstance(message, bytes)
            frames.append(message)


# --- decode on one core -------------------------------------------------------------------------------------------


def decode_rate(frames: Sequence[bytes], collections: frozenset[str], seconds: float = 3.0) -> dict[str, float]:
    from plyrd.ingest import firehose

    commits = [f for f in frames if b"#commit" in f[:16]]
    done = events = 0
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for frame in commits:
            events += len(firehose.decode(frame, collections).events)
        done += len(commits)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"rate": done / wall, "cpu_rate": done / cpu, "kept": events / done}


def jetstream_messages(frames: Sequence[bytes]) -> list[str]:
    """The captured commits as Jetstream would send them (records in JSON form, decoded once here)."""
    from plyrd.ingest import firehose
    from plyrd.ingest.events import RecordOp

    everything = frozenset(c for c, _ in MIX)
    out = []
    for frame in frames:
        for e in firehose.decode(frame, everything).events:
            if isinstance(e, RecordOp):
                commit: dict[str, Any] = {"rev": "3l3qo2vutsw2b", "operation": e.action, "collection": e.collection,
                                          "rkey": e.rkey}
                if e.record is not None:
                    commit.update(record=e.record, cid=e.cid)
                out.append(json.dumps({"did": e.did, "time_us": e.cursor, "kind": "commit", "commit": commit}))
    return out


def jetstream_rate(messages: Sequence[str], collections: frozenset[str], seconds: float = 3.0) -> float:
    from plyrd.ingest import jetstream

    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for m in messages:
            jetstream.decode(m, collections)
        done += len(messages)
    return done / (time.perf_counter() - t0)


# --- the subscriber, end to end -----------------------------------------------------------------------------------


class Discard:
    """A handler that keeps nothing (the transport's own cost); `arrived` maps a record's URI to when it came."""

    def __init__(self, collections: frozenset[str]) -> None:
        self.wanted_collections = collections
        self.events = 0
        self.arrived: dict[str, float] = {}
        self.watch: set[str] = set()

    async def handle(self, events: Sequence[Any]) -> None:
        self.events += len(events)
        if self.watch:
            now = time.perf_counter()
            for e in events:
                uri = getattr(e, "uri", None)
                if uri in self.watch:
                    self.arrived[uri] = now


async def follow(db_dir: Path, source: str, collections: frozenset[str], until_cursor: int,
                 samples: int = 0) -> dict[str, Any]:
    """Run a Subscriber from cursor 0 until it has stored `until_cursor`; RSS sampled `samples` times on the way."""
    from plyrd.db import Database
    from plyrd.ingest.cursor import CursorStore, Progress
    from plyrd.ingest.subscriber import FIREHOSE, Subscriber

    db = Database(db_dir / "plyrd.db")
    await db.open()
    await CursorStore(db, source, "firehose").save(0, Progress())
    handler = Discard(collections)
    subscriber = Subscriber(db, source, FIREHOSE, handler, save_seconds=0.1)
    stop = asyncio.Event()
    gc.collect()
    rss: list[tuple[int, float]] = [(0, rss_mb(os.getpid()))]
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(subscriber.run(stop))
    step = until_cursor // samples if samples else 0
    next_sample = step
    while (subscriber.cursor or 0) < until_cursor:
        await asyncio.sleep(0.01)
        if task.done():
            raise RuntimeError(f"subscriber stopped: {subscriber.status()}")
        if step and (subscriber.cursor or 0) >= next_sample:
            rss.append((subscriber.cursor or 0, rss_mb(os.getpid())))
            next_sample += step
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    await task
    await db.close()
    return {"seconds": wall, "cpu": cpu, "seen": subscriber.totals.seen, "kept": subscriber.totals.kept, "rss": rss}


# --- a local firehose that cycles captured frames (for the RSS run) ---------------------------------------------


def serve_frames(path: str, port: int, count: int) -> None:
    """`--serve-frames`: a subscribeRepos endpoint sending `count` frames, cycling the captured ones with seq
    rewritten to 1, 2, 3... (re-encoded with libipld), then staying open."""
    import libipld
    from websockets.asyncio.server import serve

    data = Path(path).read_bytes()
    frames: list[tuple[Any, Any]] = []
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        header, body = libipld.decode_dag_cbor_multi(data[pos + 4:pos + 4 + n])
        frames.append((header, body))
        pos += 4 + n

    async def handler(ws: Any) -> None:
        query = ws.request.path.partition("?")[2]
        start = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("cursor", "0"))
        for seq in range(start + 1, count + 1):
            header, body = frames[(seq - 1) % len(frames)]
            await ws.send(libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor({**body, "seq": seq}))
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
            print("ready", flush=True)
            await asyncio.Future()

    asyncio.run(main())


async def rss_run(frames: Sequence[bytes], events: int, scratch: Path) -> dict[str, Any]:
    path = scratch / "frames.bin"
    with path.open("wb") as f:
        for frame in frames:
            f.write(struct.pack(">I", len(frame)) + frame)
    port = free_port()
    # A separate process, so that its memory and CPU are not the subscriber's.
    server = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve-frames", str(path), "--port",
                                                  str(port), "--rss-events", str(events), stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and (await server.stdout.readline()).strip() == b"ready"
        return await follow(scratch, f"ws://127.0.0.1:{port}", wanted(), events, samples=10)
    finally:
        server.terminate()
        await server.wait()


# --- lag ----------------------------------------------------------------------------------------------------------


async def transport_lag(pds: Any, db_dir: Path, samples: int) -> list[float]:
    """createRecord returned -> the event reached the subscriber's handler, in seconds."""
    from plyrd.db import Database
    from plyrd.ingest.subscriber import FIREHOSE, Subscriber

    account = pds.create_account("benchlag")
    db = Database(db_dir / "lag.db")
    await db.open()
    handler = Discard(wanted())
    subscriber = Subscriber(db, pds.pds_url.replace("http://localhost", "ws://127.0.0.1"), FIREHOSE, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    lags = []
    try:
        await until(lambda: subscriber.connected)
        async with httpx.AsyncClient(base_url=pds.pds_url, timeout=30,
                                     headers={"Authorization": f"Bearer {account.access_jwt}"}) as http:
            for i in range(samples):
                r = await http.post("/xrpc/com.atproto.repo.createRecord", json={
                    "repo": account.did, "collection": "fm.plyr.like", "record": record("fm.plyr.like", "", i)})
                r.raise_for_status()
                sent, uri = time.perf_counter(), r.json()["uri"]
                handler.watch.add(uri)
                await until(partial(operator.contains, handler.arrived, uri))
                lags.append(handler.arrived[uri] - sent)
                await asyncio.sleep(random.uniform(0, 0.05))  # not in lockstep with the batch window
    finally:
        stop.set()
        await task
        await db.close()
    return lags


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the subscriber did not get there in time")
        await asyncio.sleep(0.002)


def visible_lag(pds: Any, samples: int, scratch: Path) -> list[float]:
    """createRecord of an fm.plyr.like on a node's track by another account (plain com.atproto.repo.createRecord)
    returned -> the track's like_count on the node's API has changed; then the same for deleteRecord. A `plyrd serve`
    process follows the PDS's firehose (ingest.enabled, ingest.firehose_url) with its own handler
    (plyrd.network.events); the API is polled every 5 ms."""
    from audio_samples import make_audio
    from conftest import node_env, start_node
    from helpers import NOW as RECORD_TIME
    from helpers import Repo, publish, sign_in

    firehose = pds.pds_url.replace("http://localhost", "ws://127.0.0.1")
    (scratch / "node").mkdir()
    served = start_node([], cwd=scratch / "node", env=node_env(pds, PLYRD_INGEST_ENABLED="true",
                                                               PLYRD_INGEST_FIREHOSE_URL=firehose))
    lags: list[float] = []
    try:
        artist = sign_in(served.url, pds.create_account("lagart"))
        song = make_audio(scratch / "lag.mp3", "mp3", seconds=2, frequency=440)
        track_id = artist.wait(artist.upload(song, title="lag").json()["upload_id"])[-1]["track_id"]
        uri, cid = publish(served, pds, track_id)
        fan = Repo(pds, pds.create_account("lagfan"))
        with httpx.Client(base_url=served.url, timeout=10) as http:
            def likes() -> int:
                count: int = http.get(f"/tracks/{track_id}").json()["like_count"]
                return count

            def measure(write: Callable[[], Any], want: int) -> Any:
                t0 = time.perf_counter()
                result = write()
                sent = time.perf_counter()
                while likes() != want:
                    if time.perf_counter() - t0 > 30:
                        raise TimeoutError(f"like_count never became {want}")
                    time.sleep(0.005)
                lags.append(time.perf_counter() - sent)
                return result

            for _ in range(max(1, samples // 2)):
                made = measure(lambda: fan.create("fm.plyr.like", {"subject": {"uri": uri, "cid": cid},
                                                                   "createdAt": RECORD_TIME}), 1)
                rkey = made["uri"].rsplit("/", 1)[1]
                measure(partial(fan.call, "deleteRecord", {"collection": "fm.plyr.like", "rkey": rkey}), 0)
                time.sleep(random.uniform(0, 0.3))  # not in lockstep with the PDS's polling or the batch window
    finally:
        served.stop()
    return lags


def seq_of(frame: bytes) -> int:
    import libipld

    seq = libipld.decode_dag_cbor_multi(frame)[1].get("seq")
    return seq if isinstance(seq, int) else 0


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    from pds_harness import PDSHarness

    collections = wanted()
    with PDSHarness() as pds, tempfile.TemporaryDirectory(prefix="plyrd-bench-ingest-") as tmp:
        scratch = Path(tmp)
        t0 = time.perf_counter()
        await write_commits(pds, args.commits)
        print(f"{args.commits} single-record commits written to the reference PDS in "
              f"{time.perf_counter() - t0:.1f} s ({', '.join(f'{c} {w}%' for c, w in MIX)})")
        ws_base = pds.pds_url.replace("http://localhost", "ws://127.0.0.1")
        frames = await capture(ws_base)
        commits = sum(1 for f in frames if b"#commit" in f[:16])
        size = sum(len(f) for f in frames) / len(frames)
        print(f"captured {len(frames)} frames from its firehose ({commits} commits, mean {size:.0f} bytes)")
        print(f"wanted collections: {', '.join(sorted(collections))}")
        print()
        print("decode and filter, one core (plyrd.ingest.firehose.decode in a loop):")
        node = decode_rate(frames, collections, args.seconds)
        ok = "ok" if node["rate"] >= GOAL_RATE else "BELOW GOAL"
        print(f"  node's collections  {node['rate']:9.0f} commits/s  (cpu {node['cpu_rate']:.0f}/s; "
              f"{node['kept']:.2f} events kept per commit)  goal >= {GOAL_RATE:.0f}/s: {ok}")
        every = frozenset(c for c, _ in MIX)
        worst = decode_rate(frames, every, args.seconds)
        print(f"  every collection    {worst['rate']:9.0f} commits/s  (every record block decoded)")
        nothing = decode_rate(frames, frozenset(), args.seconds)
        print(f"  no collection       {nothing['rate']:9.0f} commits/s  (frame decode only)")
        messages = jetstream_messages(frames)
        print(f"  jetstream JSON      {jetstream_rate(messages, collections, args.seconds):9.0f} messages/s "
              f"(the same commits as Jetstream messages, unfiltered by a server)")
        print()
        last_seq = max(seq_of(f) for f in frames)
        e2e = await follow(scratch, ws_base, collections, last_seq)
        print(f"end to end (Subscriber on the PDS's backlog from cursor 0, cursor stored in plyrd.db): "
              f"{e2e['seen'] / e2e['seconds']:.0f} events/s, {e2e['seen'] / e2e['cpu']:.0f} per CPU second of this "
              f"process ({e2e['seen']} events, {e2e['kept']} kept)")
        print()
        if args.rss_events:
            res = await rss_run(frames, args.rss_events, scratch)
            points = "  ".join(f"{n // 1000}k:{mb:.1f}" for n, mb in res["rss"])
            growth = res["rss"][-1][1] - res["rss"][1][1]
            print(f"RSS over {args.rss_events} firehose events from a local replay ({res['seen'] / res['seconds']:.0f}"
                  f" events/s, {res['kept']} kept), MB at events read:")
            print(f"  {points}")
            print(f"  growth from the first 10% to the end: {growth:+.1f} MB")
            print()
        if args.lag_samples:
            lags = await transport_lag(pds, scratch, args.lag_samples)
            print(f"lag createRecord -> handler, over the PDS's firehose ({len(lags)} samples): "
                  f"p50 {statistics.median(lags) * 1000:.0f} ms, p99 {pct(lags, 99) * 1000:.0f} ms, "
                  f"max {max(lags) * 1000:.0f} ms")
            visible = visible_lag(pds, args.lag_samples, scratch)
            print(f"lag createRecord/deleteRecord -> like_count changed on a node's API ({len(visible)} samples): "
                  f"p50 {statistics.median(visible) * 1000:.0f} ms, p99 {pct(visible, 99) * 1000:.0f} ms, "
                  f"max {max(visible) * 1000:.0f} ms (goal p99 < 2000 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=3000, help="commits written to the PDS (default 3000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per decode measurement (default 3)")
    parser.add_argument("--rss-events", type=int, default=100_000, help="events for the RSS run (0: skip)")
    parser.add_argument("--lag-samples", type=int, default=100, help="createRecord -> handler samples (0: skip)")
    parser.add_argument("--serve-frames", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_frames:
        serve_frames(args.serve_frames, args.port, args.rss_events)
        return
    random.seed(1)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
