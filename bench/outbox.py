"""Outbox throughput against the real reference PDS, and its overhead over calling putRecord directly.

Starts the test harness's PDS (tests/pds, npm packages installed on first use), creates one fresh account per
measurement, and writes N fm.plyr.like records (default 500) four ways:

  direct       N putRecord calls, one after another, from the same PDSSession class the outbox uses
  outbox/1     enqueue_put per like (each in its own local transaction, as a request handler would) while
               the outbox drains, sending putRecord row by row (apply_writes=False)
  drain/1      the same rows all queued first, then drained row by row: the worker's own cost per record
               (claim, send, bookkeeping) against `direct`, without enqueueing overlapping the sends
  outbox       enqueue while draining, with batching (applyWrites, up to 100 rows a call): the default
  outbox/down  the default, with the PDS stopped for the first second of the run (queue, retry, drain)

For each: records/s end to end (first enqueue, or the worker's start for drain/1, to the last row confirmed),
and the cost a request handler pays to enqueue (p50/p99 of one local transaction).

    .venv/bin/python bench/outbox.py [--records 500]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pds_harness import PDSHarness  # noqa: E402

from plyrd.atproto import records as r  # noqa: E402
from plyrd.atproto import tids  # noqa: E402
from plyrd.atproto.outbox import Outbox, enqueue_put, outbox_counts  # noqa: E402
from plyrd.atproto.xrpc import PasswordSession, PasswordTokens  # noqa: E402
from plyrd.db import Database  # noqa: E402

TRACK_URI = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


def session_for(harness: PDSHarness, http: httpx.AsyncClient) -> PasswordSession:
    account = harness.create_account("bench")
    return PasswordSession(http, PasswordTokens(did=account.did, handle=account.handle, pds_url=harness.pds_url,
                                                access_jwt=account.access_jwt, refresh_jwt=account.refresh_jwt))


def like() -> dict:
    return r.like_record(TRACK_URI, TRACK_CID, datetime.now(UTC))


async def count_on_pds(harness: PDSHarness, did: str) -> int:
    total, cursor = 0, None
    async with httpx.AsyncClient(timeout=30) as h:
        while True:
            params = {"repo": did, "collection": "fm.plyr.like", "limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await h.get(f"{harness.pds_url}/xrpc/com.atproto.repo.listRecords", params=params)).json()
            total += len(page["records"])
            cursor = page.get("cursor")
            if not cursor or not page["records"]:
                return total


async def direct(harness: PDSHarness, http: httpx.AsyncClient, n: int) -> dict:
    session = session_for(harness, http)
    t0 = time.perf_counter()
    for _ in range(n):
        await session.put_record("fm.plyr.like", tids.new_tid(), like())
    seconds = time.perf_counter() - t0
    assert await count_on_pds(harness, session.did) == n
    return {"seconds": seconds}


async def through_outbox(harness: PDSHarness, http: httpx.AsyncClient, n: int, tmp: Path, *, batched: bool,
                         outage: float = 0.0, prefill: bool = False) -> dict:
    session = session_for(harness, http)
    db = Database(tmp / f"bench-{time.monotonic_ns()}.db")
    await db.open()

    async def sessions(did: str) -> PasswordSession | None:
        return session if did == session.did else None

    outbox = Outbox(db, sessions, lambda sha: tmp / sha, apply_writes=batched, backoff_base=0.25, backoff_max=1.0)
    stop = asyncio.Event()
    if outage:
        await asyncio.to_thread(harness.stop_pds)
    worker = None if prefill else asyncio.create_task(outbox.run(stop))
    enqueue_ms: list[float] = []
    t0 = time.perf_counter()
    restart = asyncio.create_task(_restart_after(harness, outage)) if outage else None
    for _ in range(n):
        e0 = time.perf_counter()
        async with db.write() as conn:
            await enqueue_put(conn, did=session.did, collection="fm.plyr.like", rkey=tids.new_tid(), record=like())
        enqueue_ms.append((time.perf_counter() - e0) * 1000)
        await asyncio.sleep(0)  # a server would interleave requests with the worker; so do we
    if worker is None:
        t0 = time.perf_counter()
        worker = asyncio.create_task(outbox.run(stop))
    while True:
        counts = await outbox_counts(db)
        if counts["pending"] == counts["sending"] == 0:
            break
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - t0
    if restart is not None:
        await restart
    stop.set()
    await worker
    await db.close()
    assert counts["failed"] == 0 and await count_on_pds(harness, session.did) == n
    enqueue_ms.sort()
    return {
        "seconds": seconds,
        "enqueue_p50_ms": statistics.median(enqueue_ms),
        "enqueue_p99_ms": enqueue_ms[int(len(enqueue_ms) * 0.99) - 1],
        "requests": outbox.stats["batches"] if batched else n,
        "retries": outbox.stats["retries"],
    }


async def _restart_after(harness: PDSHarness, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(harness.start_pds)


async def main(n: int) -> None:
    logging.getLogger("plyrd").setLevel(logging.ERROR)  # the outage run's retry warnings are expected
    with PDSHarness() as harness, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with httpx.AsyncClient(timeout=60) as http:
            await direct(harness, http, 20)  # warm-up: connections, the PDS's caches
            results = {
                "direct": await direct(harness, http, n),
                "outbox/1": await through_outbox(harness, http, n, tmp, batched=False),
                "drain/1": await through_outbox(harness, http, n, tmp, batched=False, prefill=True),
                "outbox": await through_outbox(harness, http, n, tmp, batched=True),
                "outbox/down": await through_outbox(harness, http, n, tmp, batched=True, outage=1.0),
            }
    base = results["direct"]["seconds"]
    print(f"{n} fm.plyr.like records to the reference PDS on loopback")
    print(f"{'':12} {'records/s':>10} {'total s':>8} {'vs direct':>10} {'enqueue p50/p99 ms':>19} {'requests':>9}")
    for name, res in results.items():
        rate = n / res["seconds"]
        enqueue = f"{res['enqueue_p50_ms']:.2f} / {res['enqueue_p99_ms']:.2f}" if "enqueue_p50_ms" in res else "-"
        requests = res.get("requests", n)
        print(f"{name:12} {rate:10.0f} {res['seconds']:8.2f} {res['seconds'] / base:9.2f}x {enqueue:>19} "
              f"{requests:>9}")
    per_record = (results["drain/1"]["seconds"] - base) / n * 1000
    print(f"outbox overhead over direct putRecord (drain/1 - direct): {per_record:+.2f} ms per record")
    print(f"outage run: {results['outbox/down']['retries']} retries while the PDS was down for 1 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500)
    asyncio.run(main(parser.parse_args().records))
