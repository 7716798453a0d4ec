"""What the duplicate-recording check costs an upload: fingerprinting, and the search among stored fingerprints.

1. Fingerprint: the time plyrd.media.chromaprint.fingerprint takes (decode with PyAV, resample to 11025 Hz mono,
   Chromaprint), per minute of audio, for a FLAC and a 320k MP3 of music-like audio (tests/test_duplicates.py's
   melody); and for a 10-minute file, where only the first 120 s are decoded.
2. Match: a migrated plyrd.db with N stored fingerprints of other users' tracks (random items, the shape of a real
   fingerprint of 120 s: 967 items, ~120 keys; durations 2-8 minutes), then what an upload does in its one write
   transaction (plyrd.moderation.duplicates: store, candidates from the key index and by duration, load them,
   compare), timed over --rounds queries of a real fingerprint: p50 and max. A matching fingerprint of another user
   is among the stored ones, so the full path (a match found) is measured.

    .venv/bin/python bench/duplicates.py [--sizes 1000,10000 --rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_duplicates import melody, write  # noqa: E402

from plyrd.db import Database  # noqa: E402
from plyrd.db.migrations import migrate  # noqa: E402
from plyrd.media.chromaprint import Fingerprint, fingerprint, keys  # noqa: E402
from plyrd.moderation.duplicates import find_matches, store  # noqa: E402


def bench_fingerprint(tmp: Path) -> None:
    three = melody(7, seconds=180.0)
    for fmt, bitrate in (("flac", None), ("mp3", 320_000)):
        path = write(tmp / f"three.{fmt}", fmt, three, bitrate=bitrate)
        runs = []
        for _ in range(3):
            began = time.perf_counter()
            fp = fingerprint(path, max_seconds=180)
            runs.append(time.perf_counter() - began)
        print(f"fingerprint {fmt:4}: {min(runs) / 3 * 1000:6.0f} ms per minute of audio ({len(fp.items)} items, "
              f"{len(keys(fp.items))} keys for 180 s)")
    long = write(tmp / "ten.flac", "flac", np.tile(three, 4)[: 600 * 44100])
    began = time.perf_counter()
    fingerprint(long)
    print(f"fingerprint of a 10-minute FLAC (first 120 s): {(time.perf_counter() - began) * 1000:.0f} ms")


def build(db_path: Path, n: int, rng: np.random.Generator, match: Fingerprint) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO users(did, handle, created_at) VALUES ('did:plc:other', 'other.test', 0)")
    conn.execute("INSERT INTO users(did, handle, created_at) VALUES ('did:plc:new', 'new.test', 0)")
    for i in range(1, n + 1):
        sha = f"{i:064x}"
        duration = float(rng.uniform(120, 480))
        items = match.items if i == n // 2 else rng.integers(0, 2**32, 967, dtype=np.uint32)
        if i == n // 2:
            duration = 180.0
        conn.execute("INSERT INTO blobs(sha256, size, mime, refcount, created_at, touched_at)"
                     " VALUES (?, 1, 'audio/flac', 1, 0, 0)", (sha,))
        conn.execute("INSERT INTO tracks(id, artist_did, title, original_sha, original_ext, original_mime, container,"
                     " codec, duration, sample_rate, channels, lossless, status, created_at, updated_at)"
                     " VALUES (?, 'did:plc:other', ?, ?, 'flac', 'audio/flac', 'flac', 'flac', ?, 44100, 2, 1,"
                     " 'ready', 0, 0)", (i, f"track {i}", sha, duration))
        conn.execute("INSERT INTO track_fingerprints(track_id, audio_sha, duration, seconds, fp)"
                     " VALUES (?, ?, ?, 120, ?)", (i, sha, duration, items.astype("<u4").tobytes()))
        conn.executemany("INSERT OR IGNORE INTO track_fingerprint_keys(key, track_id) VALUES (?, ?)",
                         [(k, i) for k in keys(items)])
    conn.execute("COMMIT")
    conn.close()


async def bench_match(tmp: Path, n: int, rounds: int, new: Fingerprint, stored: Fingerprint) -> None:
    db_path = tmp / f"plyrd-{n}.db"
    began = time.perf_counter()
    build(db_path, n, np.random.default_rng(n), stored)
    size = db_path.stat().st_size / 1e6
    print(f"{n} fingerprints stored: built in {time.perf_counter() - began:.1f} s, plyrd.db {size:.1f} MB")
    db = Database(db_path)
    await db.open()
    try:
        sha = "f" * 64
        await db.execute("INSERT INTO blobs(sha256, size, mime, refcount, created_at, touched_at)"
                         " VALUES (?, 1, 'audio/mpeg', 1, 0, 0)", (sha,))
        await db.execute("INSERT INTO tracks(id, artist_did, title, original_sha, original_ext, original_mime,"
                         " container, codec, duration, sample_rate, channels, lossless, status, created_at,"
                         " updated_at) VALUES (?, 'did:plc:new', 'new', ?, 'mp3', 'audio/mpeg', 'mp3', 'mp3', 180,"
                         " 44100, 2, 0, 'ready', 0, 0)", (n + 1, sha))
        times, found = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            async with db.write() as conn:
                await store(conn, n + 1, sha, 180.0, new)
                matches = await find_matches(conn, n + 1, "did:plc:new", 180.0, new)
            times.append(time.perf_counter() - began)
            found = [m.track_id for m in matches]
        async with db.read() as conn:
            plan = await (await conn.execute(
                "EXPLAIN QUERY PLAN SELECT k.track_id FROM track_fingerprint_keys k JOIN tracks t ON t.id = k.track_id"
                " WHERE k.key IN (SELECT value FROM json_each(?)) AND k.track_id != ? AND t.artist_did != ?"
                " GROUP BY k.track_id", (json.dumps(keys(new.items)), n + 1, "x"))).fetchall()
        times.sort()
        print(f"  store + match per upload: p50 {statistics.median(times) * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms over {rounds}; matched {found} (planted: {n // 2})")
        print("  key query plan: " + "; ".join(row[3] for row in plan))
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plyrd-bench-dup-") as name:
        tmp = Path(name)
        bench_fingerprint(tmp)
        song = melody(11, seconds=180.0)
        stored = fingerprint(write(tmp / "song.flac", "flac", song))
        new = fingerprint(write(tmp / "song.mp3", "mp3", song, bitrate=128_000))
        for n in (int(s) for s in args.sizes.split(",")):
            asyncio.run(bench_match(tmp, n, args.rounds, new, stored))


if __name__ == "__main__":
    main()
