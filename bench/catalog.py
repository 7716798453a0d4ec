"""The catalog under load: p99 of the latest feed, a track page and a like, with 50 concurrent clients on loopback.

Goal (the catalog issue): with 100k tracks and 1M play events, p99 under 20 ms for each of GET /tracks/?limit=50
(the latest feed), GET /tracks/{id} (a track page) and POST /tracks/{id}/like, under 50 concurrent clients.
Issue 19, side by side with today's main (--against): at least 2x its requests/s in each closed-loop phase at
--clients (feed, track, like, mixed), and that p99 under 20 ms kept for feed, track and like in the paced phase; the
run ends with one line per goal, met or MISSED, with the figure it was judged by.

1. Build. A data directory migrated by plyrd's own migrations, then synthetic rows bulk-inserted with the stdlib
   sqlite3, one transaction per batch (the bulk tables' indexes are dropped first and re-created from the schema's
   own CREATE INDEX statements): ~2,000 artists, one blob row per track (fake sha256s: these endpoints never read
   the files), ready and published tracks (titles in a dozen languages, tags in track_tags, 1,000 waveform peaks
   each as uploads store them, record_uri/record_cid set), 1M play events skewed towards popular tracks, likes and
   comments. Secrets come from plyrd.keys; the listeners' developer tokens are real sessions made by plyrd's
   AuthService._create_session with app-password credentials sealed under the node's token_key.
2. Serve. `python -m plyrd serve` in its own process: log level warning, request logging off.
3. Load. Closed-loop clients (each sends its next request as soon as the last one answered) with httpx in a
   separate process (--procs to split them over more). One phase per endpoint with 1 client (the unloaded service
   time), then with --clients; a mixed phase (60% track page, 30% feed, 10% like); the same mix "paced", each client
   pausing --think-ms after each answer (people browsing rather than a stampede); and that paced phase without
   feeds. The requests:
   - feed: 70% the first page, 30% a cursor of pages 2-20 (collected before the run);
   - track page: a uniformly random track;
   - like: POST a random track's like, then DELETE it (measured as "unlike") so runs are repeatable.
   Even-numbered clients send their Bearer token on reads (is_liked, hidden tags), odd ones are anonymous.
   Client and server share this machine's cores; the CPU each used is printed. On the 2-core VM one load process
   is enough: the server saturates a core first, and --procs 2 was no faster (349 against 422 track pages/s).
4. Where the time goes: the exact SQL plyrd runs, its query plans and its cost in sqlite3 alone. The SQL is captured
   from plyrd.catalog with a stand-in for plyrd.db.Database (`Recorder`) that runs it on a real read-only sqlite3
   connection: fetchall/fetchone statements as given, a read_fn's function with the connection's trace callback on
   (its statements with their parameters written in). Then the cost of shaping and encoding a feed page's JSON (the
   app's JSON provider); a track page and a like through plyrd.db.Database, counting aiosqlite thread round trips
   (each aiosqlite connection's `_execute` wrapped: one per statement of the async API, one per read_fn or
   write_fn); an fsync'd commit on this disk. A part whose code has changed shape says "not measured".

Side by side (--against REV): every phase above runs for REV's plyrd and for this tree's, alternating REV, this
tree, REV, this tree (--rounds per tree), and the figures are printed in columns with their ratio, plus each
server's CPU per request. Each tree's server runs from its own tree (bench/_common.py: a git worktree of REV,
PYTHONPATH, the plyrd.__file__ each side imports is printed). Both serve copies of one catalog, built by the tree
whose schema is older: newer code migrates an older database at start, while older code cannot open a newer one
(side_by_side says more). Section 4 then runs for this tree only.

No PDS takes part: a like queues an fm.plyr.like write in the outbox, whose worker tries the listener's PDS (a
closed loopback port), fails at once and backs off. The rows wait, as they do while a real PDS is unreachable.

    .venv/bin/python bench/catalog.py [--tracks 100000 --plays 1000000 --clients 50 --seconds 20]
                                      [--data DIR (kept, and reused by the next run with the same sizes)]
                                      [--against REV [--rounds 2]]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    SOURCE,
    Tree,
    alternating,
    cpu_seconds,
    describe,
    free_port,
    print_log_tails,
    ratio,
    rss_mb,
    table,
)
from _common import against as against_trees

sys.path.insert(0, str(SOURCE))

GOAL_P99_MS = 20.0  # feed, track page and like, at --clients paced clients
GOAL_RATIO = 2.0  # requests/s against REV's (--against), in each closed-loop phase at --clients
CLOSED_LOOP = ("feed", "track", "like", "mixed")
ENDPOINTS = ("feed", "track", "like", "unlike")
MIX = {"track": 0.6, "feed": 0.3, "like": 0.1}
PACED_NO_FEED = {"track": 0.9, "like": 0.1}
PHASES = ("feed-1", "track-1", "like-1", "feed", "track", "like", "mixed", "paced", "paced-nofeed")
FEED_PAGES = 20
HAS_MORE = re.compile(rb'"has_more": ?true')
BATCH = 20_000
BUILD_VERSION = 1  # bump when the synthetic data changes, so a kept --data directory is rebuilt

# --- synthetic data -----------------------------------------------------------------------------------------------

WORDS = {
    "en": ["midnight", "river", "golden", "echo", "summer", "static", "heart", "city", "lights", "slow", "dance",
           "ocean", "fire", "dreams", "electric", "blue", "paper", "ghost", "signal", "home"],
    "fr": ["nuit", "rivière", "lumière", "été", "cœur", "danse", "étoile", "rêve", "fenêtre", "pluie", "mémoire"],
    "es": ["noche", "corazón", "canción", "sueño", "mañana", "fuego", "luna", "camino", "niña", "otoño"],
    "de": ["Nacht", "Straße", "Träume", "Herz", "Größe", "Licht", "Wald", "Sehnsucht", "Frühling"],
    "pt": ["saudade", "coração", "mar", "noite", "canção", "estrela", "ilusão"],
    "ja": ["夜明け", "桜", "東京", "さよなら", "星空", "雨の日", "夢", "きみの声"],
    "ko": ["사랑", "별빛", "서울", "밤", "기억", "바다", "봄날"],
    "zh": ["月光", "城市", "风", "夜曲", "梦", "回忆", "晴天"],
    "ru": ["ночь", "звезда", "сердце", "зима", "дорога", "мечта", "город"],
    "ar": ["ليل", "قمر", "حب", "بحر", "حلم", "صحراء"],
    "hi": ["रात", "सपना", "दिल", "चाँद", "बारिश"],
    "tr": ["gece", "yağmur", "şehir", "gönül", "ışık"],
}
SUFFIXES = ["", "", "", "", " (remix)", " (live)", " pt. 2", " 🌙", " ✨", " (demo)", " - edit"]
TAGS = ["electronic", "ambient", "house", "techno", "hip-hop", "jazz", "lo-fi", "rock", "indie", "folk",
        "classical", "pop", "experimental", "drum-and-bass", "synthwave", "metal", "soul", "r&b", "k-pop", "j-pop",
        "chanson", "cumbia", "shoegaze", "field-recording", "punk", "reggae", "trap", "garage", "dub", "afrobeats"]
TAGS += [f"scene-{i}" for i in range(170)]  # a long tail of small tags


def tid(micros: int, clock_id: int) -> str:
    """A TID (atproto record key) for an instant, as plyrd.atproto.tids makes them."""
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    n = (micros << 10) | (clock_id & 0x3FF)
    return "".join(alphabet[(n >> (5 * k)) & 31] for k in range(12, -1, -1))


def make_did(kind: str, i: int) -> str:
    return "did:plc:" + base64.b32encode(hashlib.sha256(f"{kind}{i}".encode()).digest()).decode().lower()[:24]


def title(rnd: random.Random) -> str:
    words = WORDS[rnd.choice(list(WORDS))]
    sep = "" if words is WORDS["ja"] or words is WORDS["zh"] else " "
    return sep.join(rnd.sample(words, rnd.randint(1, 3))) + rnd.choice(SUFFIXES)


def zipf_weights(n: int, s: float) -> list[float]:
    """Cumulative weights of ranks 1..n under a Zipf law (for random.choices)."""
    return list(itertools.accumulate(1 / (r ** s) for r in range(1, n + 1)))


def batches(rows: Iterator[tuple[Any, ...]], size: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert(conn: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> int:
    """Bulk insert, one transaction per batch (a failure loses one batch, and the journal stays small)."""
    n = 0
    for batch in batches(rows):
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        n += len(batch)
    return n


def build(data: Path, args: argparse.Namespace, fake_pds: str) -> dict[str, Any]:
    """Migrate, bulk-insert the catalog, make the listeners' sessions; returns what the run needs (bench.json)."""
    from plyrd import keys

    try:
        from plyrd.atproto.cbor import record_cid
    except ImportError:  # a tree from before atproto/records.py was split (--against builds with the older tree)
        from plyrd.atproto.records import record_cid  # type: ignore[attr-defined,no-redef]
    from plyrd.config import load_config
    from plyrd.db.migrations import migrate
    from plyrd.node import prepare_data_dir

    timings: dict[str, float] = {}
    began = time.perf_counter()
    config = load_config(env={}, overrides={"storage.data_dir": str(data)})
    prepare_data_dir(config)
    keys.resolve(config)  # writes secrets.toml, as a first `plyrd serve` would
    conn = sqlite3.connect(config.db_path, isolation_level=None)
    migrate(conn)
    schema = conn.execute("PRAGMA user_version").fetchone()[0]
    # Build-time settings only: the node opens the file in WAL with synchronous=FULL itself.
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("PRAGMA temp_store = MEMORY")
    bulk_tables = ("tracks", "track_tags", "likes", "comments", "play_events")
    indexes = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN"
        f" ({','.join('?' * len(bulk_tables))})", bulk_tables).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")  # re-created below from the same SQL: faster than inserting into them
    timings["migrate"] = time.perf_counter() - began

    rnd = random.Random(args.seed)
    now = time.time()
    n_tracks, n_users = args.tracks, args.users
    artists = [make_did("artist", i) for i in range(n_users)]
    t0 = time.perf_counter()
    insert(conn, "INSERT INTO users(did, handle, display_name, pds_url, created_at) VALUES (?, ?, ?, ?, ?)",
           ((did, f"artist{i}.bench.test", title(rnd).title(), fake_pds, now - 3 * 365 * 86400)
            for i, did in enumerate(artists)))

    # Tracks: created over the last two years, newest has the highest id; artists and plays Zipf-skewed.
    span = 2 * 365 * 86400
    created = [now - span + (i + rnd.random()) * span / n_tracks for i in range(n_tracks)]
    artist_of = rnd.choices(artists, cum_weights=zipf_weights(n_users, 0.8), k=n_tracks)
    popularity = list(range(1, n_tracks + 1))
    rnd.shuffle(popularity)  # popular tracks spread over ids, old and new
    play_tracks = rnd.choices(popularity, cum_weights=zipf_weights(n_tracks, 0.9), k=args.plays)
    play_count = [0] * (n_tracks + 1)
    for t in play_tracks:
        play_count[t] += 1
    peaks_pool = [json.dumps([round(rnd.random() ** 2, 4) for _ in range(1000)]) for _ in range(200)]
    formats = [("mp3", "audio/mpeg", "mp3", "mp3", 0, None, 320_000),
               ("flac", "audio/flac", "flac", "flac", 1, 16, 900_000),
               ("m4a", "audio/mp4", "mp4", "aac", 0, None, 256_000)]
    format_of = [formats[0], *rnd.choices(formats, weights=(3, 1, 1), k=n_tracks)]  # index 0 unused: ids from 1
    shas = [hashlib.sha256(f"bench-track-{i}".encode()).hexdigest() for i in range(n_tracks + 1)]
    tags_of: list[list[str]] = [[]]
    for _ in range(n_tracks):
        tags = sorted(set(rnd.choices(TAGS, k=rnd.randint(0, 3))))
        if rnd.random() < 0.03:
            tags.append("ai")  # hidden from discovery by default: the feed's NOT EXISTS filter has work to do
        tags_of.append(tags)

    insert(conn, "INSERT INTO blobs(sha256, size, mime, refcount, created_at, touched_at) VALUES (?, ?, ?, 1, ?, ?)",
           ((shas[i], rnd.randint(3, 60) * 1_000_000, format_of[i][1], created[i - 1], created[i - 1])
            for i in range(1, n_tracks + 1)))

    def track_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, n_tracks + 1):
            ext, mime, container, codec, lossless, depth, bitrate = format_of[i]
            artist = artist_of[i - 1]
            at = created[i - 1]
            rkey = tid(int(at * 1_000_000), i)
            yield (i, artist, title(rnd), rnd.choice([None, None, title(rnd)]),
                   rnd.choice([None, None, None, "recorded at home " + title(rnd)]), json.dumps(tags_of[i]),
                   shas[i], ext, mime, container, codec, rnd.uniform(90, 420), rnd.choice((44100, 48000)), 2, depth,
                   bitrate, lossless, rnd.choice(peaks_pool), rnd.uniform(-16, -7), rnd.uniform(-6, 4),
                   rnd.uniform(0.5, 1.0), at, at, rkey, f"at://{artist}/fm.plyr.track/{rkey}",
                   record_cid({"$type": "fm.plyr.track", "bench": i}), int(rnd.random() < 0.01), play_count[i])

    insert(conn, "INSERT INTO tracks(id, artist_did, title, album, description, tags, original_sha, original_ext,"
                 " original_mime, container, codec, duration, sample_rate, channels, bit_depth, bitrate, lossless,"
                 " peaks, loudness_lufs, track_gain_db, sample_peak, status, created_at, updated_at, rkey,"
                 " record_uri, record_cid, unlisted, play_count) VALUES"
                 " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?, ?)",
           track_rows())
    insert(conn, "INSERT INTO track_tags(tag, track_id) VALUES (?, ?)",
           ((tag, i) for i in range(1, n_tracks + 1) for tag in tags_of[i]))
    timings["users, blobs, tracks, tags"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    anon = ["anon:" + base64.urlsafe_b64encode(rnd.randbytes(18)).decode() for _ in range(50_000)]

    def play_rows() -> Iterator[tuple[Any, ...]]:
        for t in play_tracks:
            listener = rnd.choice(artists) if rnd.random() < 0.3 else rnd.choice(anon)  # signed in, or 'anon:...'
            at = created[t - 1] + rnd.random() * (now - created[t - 1])
            yield t, listener, at, rnd.choice((None, rnd.randint(30_000, 400_000)))

    insert(conn, "INSERT INTO play_events(track_id, listener, played_at, listened_ms) VALUES (?, ?, ?, ?)",
           play_rows())
    timings["play events"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    like_weights = zipf_weights(n_tracks, 0.9)

    def like_rows() -> Iterator[tuple[Any, ...]]:
        per_user = max(1, args.likes // n_users)
        for u, did in enumerate(artists):
            liked = set(rnd.choices(popularity, cum_weights=like_weights, k=per_user))
            mine = sorted(((created[t - 1] + rnd.random() * (now - created[t - 1]), t) for t in liked), reverse=True)
            for position, (at, t) in enumerate(mine):  # newest like first, as the liked list orders them
                yield did, t, tid(int(at * 1_000_000), u), position, at

    n_likes = insert(conn, "INSERT INTO likes(did, track_id, rkey, position, created_at) VALUES (?, ?, ?, ?, ?)",
                     like_rows())

    def comment_rows() -> Iterator[tuple[Any, ...]]:
        for k in range(n_tracks // 5):
            t = rnd.randint(1, n_tracks)  # uniform: stays far below the 20-per-track limit
            at = created[t - 1] + rnd.random() * (now - created[t - 1])
            yield t, rnd.choice(artists), title(rnd), rnd.randint(0, 90_000), tid(int(at * 1_000_000), k), at

    n_comments = insert(conn, "INSERT INTO comments(track_id, did, text, timestamp_ms, rkey, created_at)"
                              " VALUES (?, ?, ?, ?, ?, ?)", comment_rows())
    timings["likes, comments"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    timings["indexes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    listeners = [make_did("listener", i) for i in range(args.clients)]
    tokens = asyncio.run(make_sessions(config, listeners, fake_pds))
    timings["sessions"] = time.perf_counter() - t0
    return {"version": BUILD_VERSION, "schema": schema, "tracks": n_tracks, "plays": args.plays, "users": n_users,
            "likes": n_likes, "comments": n_comments, "seed": args.seed, "tokens": tokens, "listeners": listeners,
            "timings": timings, "build_s": time.perf_counter() - began}


async def make_sessions(config: Any, dids: list[str], fake_pds: str) -> list[str]:
    """Developer tokens through plyrd's own session code: app-password credentials sealed under token_key."""
    import httpx

    from plyrd import keys
    from plyrd.atproto.identity import IdentityResolver
    from plyrd.atproto.xrpc import PasswordTokens
    from plyrd.auth.service import AuthService
    from plyrd.db import Database

    db = Database(config.db_path)
    await db.open()
    http = httpx.AsyncClient()
    try:
        auth = AuthService(db, config, keys.resolve(config), http, IdentityResolver(http), None, "bench: no OAuth")
        tokens = []
        for i, did in enumerate(dids):
            handle = f"listener{i}.bench.test"
            creds = PasswordTokens(did=did, handle=handle, pds_url=fake_pds, access_jwt="bench-access-not-a-jwt",
                                   refresh_jwt="bench-refresh-not-a-jwt")
            token, _ = await auth._create_session(
                did=did, handle=handle, pds_url=fake_pds, kind="developer", auth_type="password",
                credentials=creds.to_dict(), scope="", name=f"bench {i}", expires_at=time.time() + 365 * 86400)
            tokens.append(token)
        return tokens
    finally:
        await http.aclose()
        await db.close()


# --- the server ---------------------------------------------------------------------------------------------------


def start_server(data: Path, port: int, log: Path, tree: Tree | None = None, cwd: Path | None = None,
                 wait: float = 60) -> subprocess.Popen[bytes]:
    """`plyrd serve` from this checkout, or (side by side) from `tree` with PYTHONPATH=tree and `cwd` outside it:
    `python -m` puts the working directory first on sys.path."""
    env = {k: v for k, v in (tree.env() if tree else os.environ).items() if not k.startswith("PLYRD_")}
    # Loopback allowed so the outbox's tries at the fake PDS fail as a transport error (retried, rows wait)
    # instead of being refused by the SSRF guard (rows marked failed).
    env.update(PLYRD_LOG_LEVEL="warning", PLYRD_LOG_REQUESTS="false", PLYRD_ATPROTO_ALLOW_PRIVATE_ADDRESSES="true")
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "plyrd", "serve", "--data", str(data), "--port", str(port)],
                                cwd=cwd or Path(__file__).parent.parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait
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


def collect_cursors(port: int) -> list[str]:
    cursors: list[str] = []
    cursor = None
    for _ in range(FEED_PAGES - 1):
        query = f"&cursor={cursor}" if cursor else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/tracks/?limit=50{query}", timeout=30) as r:
            cursor = json.loads(r.read())["next_cursor"]
        cursors.append(cursor)
    return cursors


# --- the load generator (its own process) -------------------------------------------------------------------------


async def load(cfg: dict[str, Any]) -> dict[str, Any]:
    import httpx

    lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
    errors: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
    first_errors: list[str] = []
    measuring, stop = asyncio.Event(), asyncio.Event()
    kinds, weights = list(cfg["mix"]), list(cfg["mix"].values())
    think = cfg["think_ms"] / 1000

    async def timed(http: httpx.AsyncClient, endpoint: str, method: str, url: str, headers: dict[str, str],
                    expect: Any) -> bool:
        began = time.perf_counter()
        try:
            r = await http.request(method, url, headers=headers)
            ok = r.status_code == 200 and expect(r)
            problem = f"{method} {url}: {r.status_code} {r.text[:200]}"
        except (httpx.HTTPError, ValueError, KeyError) as e:
            ok, problem = False, f"{method} {url}: {e!r}"
        took = time.perf_counter() - began
        if measuring.is_set() and not stop.is_set():
            if ok:
                lat[endpoint].append(took)
            else:
                errors[endpoint] += 1
                if len(first_errors) < 5:
                    first_errors.append(problem)
        return ok

    async def client(http: httpx.AsyncClient, index: int) -> None:
        rnd = random.Random(cfg["seed"] * 1_000_003 + index)
        token = {"Authorization": f"Bearer {cfg['tokens'][index]}"}
        reads = token if index % 2 == 0 else {}
        n = cfg["tracks"]
        while not stop.is_set():
            kind = rnd.choices(kinds, weights)[0]
            if kind == "feed":
                url = "/tracks/?limit=50"
                if rnd.random() < 0.3:
                    url += "&cursor=" + rnd.choice(cfg["cursors"])
                # Not parsed: decoding ~400 kB of JSON would cost the client more CPU than the check is worth.
                # Found wherever it is: the trees differ in key order (sorted, or as written) and spacing.
                await timed(http, "feed", "GET", url, reads, lambda r: HAS_MORE.search(r.content) is not None)
            elif kind == "track":
                t = rnd.randint(1, n)
                await timed(http, "track", "GET", f"/tracks/{t}", reads, lambda r, t=t: r.json()["id"] == t)
            else:
                t = rnd.randint(1, n)
                if await timed(http, "like", "POST", f"/tracks/{t}/like", token, lambda r: r.json()["liked"]):
                    # Always undone, even when the phase is stopping, so the next run starts from the same state.
                    await timed(http, "unlike", "DELETE", f"/tracks/{t}/like", token,
                                lambda r: r.json()["liked"] is False)
            if think:
                await asyncio.sleep(think)

    # One AsyncClient (one keep-alive connection) per client: a shared pool of 50 connections costs httpx several
    # times more CPU per request (it scans its pool), which would slow the clients rather than the server.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{cfg['port']}", limits=limits, timeout=60)
             for _ in cfg["tokens"]]
    try:
        tasks = []
        for index, http in enumerate(https):
            tasks.append(asyncio.create_task(client(http, index)))
            await asyncio.sleep(cfg["warmup"] / 4 / len(https))  # ramp up, not 50 connects at once
        await asyncio.sleep(cfg["warmup"] * 3 / 4)
        cpu0, server0 = os.times(), cpu_seconds(cfg["server_pid"])
        measuring.set()
        began = time.perf_counter()
        await asyncio.sleep(cfg["seconds"])
        stop.set()
        elapsed = time.perf_counter() - began
        cpu1, server1 = os.times(), cpu_seconds(cfg["server_pid"])
        await asyncio.wait(tasks, timeout=60)
    finally:
        for http in https:
            await http.aclose()
    return {"lat": lat, "errors": errors, "first_errors": first_errors, "seconds": elapsed,
            "client_cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), "server_cpu": server1 - server0}


def run_phase(name: str, port: int, server_pid: int, meta: dict[str, Any], cursors: list[str], mix: dict[str, float],
              clients: int, seconds: float, think_ms: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase with `clients` split over --procs load processes; merge what they measured."""
    procs = max(1, min(args.procs, clients))
    share = [list(range(clients))[p::procs] for p in range(procs)]
    running = []
    for p, indexes in enumerate(share):
        cfg = {"port": port, "server_pid": server_pid, "tokens": [meta["tokens"][i] for i in indexes],
               "tracks": meta["tracks"], "cursors": cursors, "mix": mix, "seconds": seconds, "warmup": args.warmup,
               "think_ms": think_ms, "seed": args.seed * 100 + p}
        proc = subprocess.Popen([sys.executable, __file__, "--load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(cfg))
        proc.stdin.close()
        running.append(proc)
    results = []
    for proc in running:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"load process failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    merged: dict[str, Any] = {"name": name, "clients": clients, "think_ms": think_ms, "lat": {e: [] for e in ENDPOINTS},
                              "errors": dict.fromkeys(ENDPOINTS, 0), "first_errors": [],
                              "seconds": max(r["seconds"] for r in results),
                              "client_cpu": sum(r["client_cpu"] for r in results),
                              "server_cpu": results[0]["server_cpu"]}
    for r in results:
        for e in ENDPOINTS:
            merged["lat"][e] += r["lat"][e]
            merged["errors"][e] += r["errors"][e]
        merged["first_errors"] += r["first_errors"]
    return merged


def pct(sorted_values: list[float], q: float) -> float:
    return 1000 * sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def print_phase(r: dict[str, Any]) -> None:
    cpu = f"client CPU {r['client_cpu'] / r['seconds']:.0%}, server CPU {r['server_cpu'] / r['seconds']:.0%}"
    print(f"  {r['name']} ({r['clients']} client{'s' if r['clients'] > 1 else ''}; {cpu} of one core)")
    for e in ENDPOINTS:
        lat = sorted(r["lat"][e])
        if not lat and not r["errors"][e]:
            continue
        lat = lat or [float("nan")]
        print(f"    {e:8} {len(r['lat'][e]):8d} {len(r['lat'][e]) / r['seconds']:8.0f} {pct(lat, 0.5):8.1f}"
              f" {pct(lat, 0.9):8.1f} {pct(lat, 0.99):8.1f} {1000 * lat[-1]:8.1f} {r['errors'][e]:7d}")
    for err in r["first_errors"]:
        print(f"      error: {err}")


# --- where the time goes ------------------------------------------------------------------------------------------


class Recorder:
    """Stands in for plyrd.db.Database to capture the SQL plyrd's catalog code runs, on `conn` (a real sqlite3
    connection, so a statement that depends on the one before gets its real answer).

    Both forms of plyrd's reads are caught: `fetchall`/`fetchone` note the statement with its parameters;
    `read_fn(fn, *args)` (a request's reads as one plain function, the form the request paths move to) runs `fn` on
    `conn` and notes what the connection's trace callback sees: each statement with its parameters expanded into
    the SQL (so the parameters noted are empty). `write_fn` does the same inside a transaction it rolls back (on a
    read-only connection the first write fails, once noted)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, list[Any]]] = []

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        self.calls.append((sql, list(params)))
        return self.conn.execute(sql, list(params)).fetchall()

    async def fetchone(self, sql: str, params: Any = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def _traced(self, fn: Any, *args: Any) -> Any:
        def note(sql: str) -> None:
            # not the transaction's own statements, nor the lines a trigger's statements are traced as
            if not sql.startswith("--") and sql.split(None, 1)[0].upper() not in TRANSACTION_WORDS:
                self.calls.append((sql, []))

        self.conn.set_trace_callback(note)
        try:
            return fn(self.conn, *args)
        finally:
            self.conn.set_trace_callback(None)

    async def read_fn(self, fn: Any, *args: Any) -> Any:
        return self._traced(fn, *args)

    async def write_fn(self, fn: Any, *args: Any) -> Any:
        self.conn.execute("BEGIN")
        try:
            return self._traced(fn, *args)
        finally:
            self.conn.execute("ROLLBACK")


TRANSACTION_WORDS = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def captured(make: Any, conn: sqlite3.Connection) -> list[tuple[str, list[Any]]]:
    """The statements `make(db)` runs, in order (see Recorder); fails when it runs none."""
    rec = Recorder(conn)
    try:
        asyncio.run(make(cast(Any, rec)))
    except Exception:  # NotFound and the like: the SQL was captured before it
        pass
    if not rec.calls:
        raise LookupError("no SQL captured (has the code's API changed?)")
    return rec.calls


def median_ms(fn: Any, runs: int = 30) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def guarded(what: str, fn: Any) -> None:
    """One part of "where the time goes": when this tree's code no longer has the shape it reads (a function
    renamed or turned into another form), that part says so and the others still run."""
    try:
        fn()
    except Exception as e:  # a report, not a test: say what broke and go on
        print(f"  {what}: not measured ({type(e).__name__}: {e})")


def analyse(db_path: Path, meta: dict[str, Any], cursors: list[str], listener: str) -> None:
    from quart import Quart

    from plyrd.catalog import feeds
    from plyrd.catalog.social import social_counts
    from plyrd.catalog.tracks import ANONYMOUS, open_track, track_json

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row

    def run(calls: list[tuple[str, list[Any]]]) -> list[Any]:
        return [conn.execute(sql, params).fetchall() for sql, params in calls]

    def plan(sql: str, params: list[Any]) -> str:
        return "; ".join(r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    print("\nwhere the time goes (measured in this process, warm page cache, medians; SQL a read_fn runs is captured"
          " with its parameters written into it)")

    def feed_pages() -> None:
        deep_at, deep_id = conn.execute(
            "SELECT created_at, id FROM tracks WHERE status = 'ready' AND unlisted = 0"
            " ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?", (meta["tracks"] // 2,)).fetchone()
        pages = {"page 1": None, f"page {FEED_PAGES}": cursors[-1],
                 f"page ~{meta['tracks'] // 100} (half-way)": feeds.encode_cursor(deep_at, deep_id)}
        for label, cursor in pages.items():
            feed_sql, feed_params = captured(
                lambda db, c=cursor: feeds.latest(db, audience=ANONYMOUS, cursor=c, limit=50), conn)[0]
            rows = conn.execute(feed_sql, feed_params).fetchall()
            counts = captured(lambda db, ids=[r["id"] for r in rows]: social_counts(db, ids, listener), conn)
            query_ms = median_ms(lambda s=feed_sql, p=feed_params: run([(s, p)]))
            print(f"  feed {label}, sqlite3 alone: feed query {query_ms:.2f} ms,"
                  f" like/comment/is_liked counts {median_ms(lambda c=counts: run(c)):.2f} ms")
            print(f"    plan: {plan(feed_sql, feed_params)}")

    def track_page() -> None:
        rnd = random.Random(1)
        ids = [rnd.randint(1, meta["tracks"]) for _ in range(30)]
        track_calls = [captured(lambda db, t=t: open_track(db, t, ANONYMOUS), conn) + captured(
            lambda db, t=t: social_counts(db, [t], listener), conn) for t in ids]
        each = itertools.cycle(track_calls)  # a different track each time: not one row kept hot
        print(f"  track page, sqlite3 alone: {median_ms(lambda: run(next(each))):.2f} ms for its"
              f" {len(track_calls[0])} queries; plan of the track row: {plan(*track_calls[0][0])}")

    guarded("feed pages", feed_pages)
    guarded("track page", track_page)
    guarded("feed page shaping", lambda: shaping(conn, feeds, ANONYMOUS, track_json, Quart))
    conn.close()
    like_costs(db_path, meta)


def shaping(conn: sqlite3.Connection, feeds: Any, anonymous: Any, track_json: Any, quart: Any) -> None:
    """What the feed handler does with its 50 rows, in the app's JSON encoding (plyrd's JSON provider where it has
    one, else Quart's)."""
    feed_sql, feed_params = captured(lambda db: feeds.latest(db, audience=anonymous, limit=50), conn)[0]
    rows = conn.execute(feed_sql, feed_params).fetchall()[:50]
    # Both paths given: Quart would otherwise look for a module named "bench" to find them, and fails (StopIteration
    # in flask's find_package) when what it finds is the bench/ directory as a namespace package, as it does when
    # this runs in a git worktree of plyrd or under a side-by-side run's PYTHONPATH.
    here = str(Path(__file__).parent)
    app = quart("bench", root_path=here, instance_path=here)
    try:  # the app's own JSON encoding where it has one (orjson); Quart's default otherwise
        from plyrd.web.json_provider import OrjsonProvider

        app.json = OrjsonProvider(app)
    except ImportError:
        pass
    encoder = app.json

    no_peaks = [{**dict(r), "peaks": None} for r in rows]

    def shape(keep_peaks: bool) -> bytes:
        tracks = [{**track_json(r, "http://127.0.0.1"), "like_count": 0, "comment_count": 0, "is_liked": False}
                  for r in (rows if keep_peaks else no_peaks)]
        return encoder.dumps({"tracks": tracks, "next_cursor": "x", "has_more": True},
                             separators=(",", ":")).encode()

    with_peaks, without = shape(True), shape(False)
    print(f"  feed page shaping (track_json + {type(encoder).__name__} encoding of 50 tracks):"
          f" {median_ms(lambda: shape(True)):.2f} ms"
          f" for {len(with_peaks) / 1024:.0f} KiB; without the 50 x 1,000 peaks: {median_ms(lambda: shape(False)):.2f}"
          f" ms for {len(without) / 1024:.0f} KiB")


def like_costs(db_path: Path, meta: dict[str, Any]) -> None:
    """A like is one write transaction through the node's single writer, committed with synchronous=FULL: what one
    such commit costs on this disk, and a like's round trips through plyrd.db.Database."""
    scratch = db_path.parent / "bench-commit.db"
    c = sqlite3.connect(scratch, isolation_level=None)
    try:
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("CREATE TABLE IF NOT EXISTS t (x)")

        def commit() -> None:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO t VALUES (1)")
            c.execute("COMMIT")

        commit_ms = median_ms(commit, 50)
    finally:
        c.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    guarded("through plyrd.db.Database", lambda: aiosqlite_cost(db_path, meta))
    print(f"  one fsync'd WAL commit (synchronous=FULL) on this disk: {commit_ms:.2f} ms: the single writer"
          f" commits at most ~{1000 / commit_ms:.0f} times a second, and a like and an unlike are one each")


def aiosqlite_cost(db_path: Path, meta: dict[str, Any]) -> None:
    """A track page's reads, and a like and an unlike, in plyrd's own code through plyrd.db.Database (aiosqlite), one
    at a time on an idle event loop, counting the round trips to aiosqlite's threads (each `_execute` call: one per
    statement or fetch of the async API, one per read_fn / write_fn). The track page is read as GET /tracks/{id}
    reads it: read_track and read_tracks_json in one read_fn (open_track then tracks_json where those are
    missing)."""
    from plyrd.catalog import likes, social
    from plyrd.catalog import tracks as catalog_tracks
    from plyrd.catalog.social import tracks_json
    from plyrd.catalog.tracks import ANONYMOUS, Audience, open_track
    from plyrd.db import Database

    read_track = getattr(catalog_tracks, "read_track", None)
    read_tracks_json = getattr(social, "read_tracks_json", None)

    hops = 0

    def count(conn: Any) -> None:
        forward = conn._execute

        async def counted(fn: Any, *a: Any, **kw: Any) -> Any:
            nonlocal hops
            hops += 1
            return await forward(fn, *a, **kw)

        conn._execute = counted

    async def measure() -> dict[str, tuple[float, int]]:
        nonlocal hops
        db = Database(db_path)
        await db.open()
        try:
            for conn in [db._writer, *db._all_readers]:
                count(conn)
            rnd = random.Random(2)
            did = meta["listeners"][0]
            found: dict[str, list[tuple[float, int]]] = {"track": [], "like": [], "unlike": []}

            async def page(t: int) -> None:
                if read_track and read_tracks_json:  # as the handler reads it: the row and its counts in one hop
                    await db.read_fn(lambda c: read_tracks_json(c, [read_track(c, t, ANONYMOUS)], did,
                                                                "http://127.0.0.1", peaks=True))
                else:  # the code before read_fn: the row, then its counts
                    await tracks_json(db, [await open_track(db, t, ANONYMOUS)], did, "http://127.0.0.1", peaks=True)

            async def like(t: int) -> None:
                await likes.like(db, did=did, track_id=t, audience=Audience(did))

            async def unlike(t: int) -> None:
                # sends nothing: the put had not reached the PDS
                await likes.unlike(db, did=did, track_id=t, audience=Audience(did))

            for _ in range(40):
                t = rnd.randint(1, meta["tracks"])
                for name, step in (("track", page), ("like", like), ("unlike", unlike)):
                    hops, began = 0, time.perf_counter()
                    await step(t)
                    found[name].append((time.perf_counter() - began, hops))
            return {k: (1000 * statistics.median(x for x, _ in v), int(statistics.median(h for _, h in v)))
                    for k, v in found.items()}
        finally:
            await db.close()

    got = asyncio.run(measure())
    print(f"  through plyrd.db.Database (aiosqlite), no HTTP, idle loop: track page queries and shaping"
          f" {got['track'][0]:.2f} ms in {got['track'][1]} thread round trips; like {got['like'][0]:.2f} ms in"
          f" {got['like'][1]} and unlike {got['unlike'][0]:.2f} ms in {got['unlike'][1]}, all with the write lock"
          " held. Under load every round trip also waits for a turn of the busy event loop")


# --- side by side with another revision (--against) ---------------------------------------------------------------


def plyrd_module_file() -> str:
    import plyrd

    return plyrd.__file__


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_idle(servers: dict[str, subprocess.Popen[bytes]], limit: float = 900) -> float:
    """Wait until every server has used under 10% of a core for 3 s in a row: each node builds its search index at
    start (the copies have none), and no phase should share the machine with that. Returns the seconds waited."""
    began = time.monotonic()
    quiet = dict.fromkeys(servers, 0)
    last = {k: cpu_seconds(p.pid) for k, p in servers.items()}
    while min(quiet.values()) < 3 and time.monotonic() - began < limit:
        time.sleep(1)
        for k, p in servers.items():
            now = cpu_seconds(p.pid)
            quiet[k] = quiet[k] + 1 if now - last[k] < 0.1 else 0
            last[k] = now
    return time.monotonic() - began


def size_args(args: argparse.Namespace) -> list[str]:
    return [f"--{k}={getattr(args, k)}" for k in ("tracks", "plays", "users", "likes", "clients", "seed")]


def side_by_side(args: argparse.Namespace) -> None:
    """Every phase for REV's plyrd and this tree's, alternating, on copies of one catalog; figures side by side.

    One catalog for both. It is built by the tree whose schema is older, in a process that imports that tree's plyrd
    (its migrations, its session code), because newer code opens (migrates) an older database while older code cannot
    open a newer one. Each tree's server gets its own copy of that directory and migrates it at start (the tree with
    the older schema finds nothing to do); the copies are thrown away, and a kept --data directory stays at the
    schema it was built with. Both servers run the whole time, from their own trees (PYTHONPATH, working directory
    outside both); a phase runs against one while the other idles, and each phase runs --rounds times per tree,
    REV first, then this tree, and again. Latencies and counts are pooled over the rounds; the req/s of each round is
    printed too, as a measure of the noise. "Where the time goes" runs afterwards for this tree only, in this
    process, on this tree's copy (its code asks this tree's API)."""
    with against_trees(args.against) as (old, this, scratch):
        trees = [old, this]
        print(f"side by side with {old.label}: {args.rounds} rounds of each phase, alternating")
        describe(trees, scratch)
        builder = old if old.schema < this.schema else this
        base = (args.data or scratch / "base").resolve()
        older = "the older schema" if old.schema != this.schema else "both trees' schema"
        print(f"catalog: built by {builder.label}'s plyrd ({older}, {builder.schema}); each tree's server"
              f" migrates its own copy", flush=True)
        if subprocess.run([sys.executable, __file__, "--build-only", f"--data={base}", *size_args(args)], cwd=scratch,
                          env=builder.env()).returncode:
            raise SystemExit(f"building the catalog with {builder.label}'s plyrd failed")
        meta = json.loads((base / "bench.json").read_text())
        with sqlite3.connect(base / "plyrd.db") as conn:
            schema = conn.execute("PRAGMA user_version").fetchone()[0]
        if schema > builder.schema:
            raise SystemExit(f"{base} is at schema {schema}, newer than {builder.label} can open; pass another --data")
        datas = []
        t0 = time.perf_counter()
        for i, _ in enumerate(trees):
            datas.append(scratch / f"data-{i}")
            shutil.copytree(base, datas[i], ignore=shutil.ignore_patterns("search.*", "bench-*.log", "bench-commit*"))
        print(f"  copied for each tree in {time.perf_counter() - t0:.0f} s", flush=True)

        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {t.label: {} for t in trees}
        cursors: dict[str, list[str]] = {}
        try:
            for tree, data in zip(trees, datas, strict=True):
                port = free_port()
                servers[tree.label] = (start_server(data, port, data / "bench-node.log", tree, scratch, 600), port)
            waited = wait_idle({label: s for label, (s, _) in servers.items()})
            print(f"  both servers up and idle (search indexes built) after {waited:.0f} s", flush=True)
            for tree in trees:
                cursors[tree.label] = collect_cursors(servers[tree.label][1])
            plan = phase_plan(args)
            for key, name, mix, clients, seconds, think in plan:
                print(f"  phase: {name}, {clients} client(s), {seconds:.0f} s, {args.rounds} x each tree ...",
                      flush=True)
                for _, tree in alternating(args.rounds, trees):
                    server, port = servers[tree.label]
                    runs[tree.label].setdefault(key, []).append(
                        run_phase(name, port, server.pid, meta, cursors[tree.label], mix, clients, seconds, think,
                                  args))
            server_rss = {label: rss_mb(s.pid) for label, (s, _) in servers.items()}
        except BaseException:
            print_log_tails({t.label: d / "bench-node.log" for t, d in zip(trees, datas, strict=True)})
            raise
        finally:
            for server, _ in servers.values():
                stop_server(server)

        print(f"\nplyrd catalog side by side: {meta['tracks']:,} tracks, {meta['plays']:,} play events,"
              f" {meta['likes']:,} likes; {args.clients} clients on loopback; {os.cpu_count()} cores shared by client,"
              f" server and whatever else runs; {args.rounds} rounds per tree, alternating")
        print(f"  A = {old.label} ({old.commit}), B = this tree ({this.commit}); server RSS at the end:"
              f" A {server_rss[old.label]:.0f} MB, B {server_rss[this.label]:.0f} MB")
        print("  req/s and p50/p99 ms pooled over the rounds; B/A: req/s above 1 and p50/p99 below 1 mean B is faster")
        print_side_by_side(plan, runs[old.label], runs[this.label])
        print_goals(plan, runs[old.label], runs[this.label], args)
        for tree in trees:
            for r in (r for rs in runs[tree.label].values() for r in rs):
                for err in r["first_errors"][:2]:
                    print(f"  {tree.label} {r['name']}: error: {err}")
        print(f"\n(where the time goes: this tree only, {this.commit})")
        analyse(datas[1] / "plyrd.db", meta, cursors[this.label], meta["listeners"][0])
        if args.data:
            print(f"\nkept {base} (schema {schema}; the copies served and their node logs are gone)")


def print_side_by_side(plan: list[Any], a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> None:
    rows = []
    for key, *_ in plan:
        for e in ENDPOINTS:
            got = []
            for runs in (a[key], b[key]):
                lat = sorted(x for r in runs for x in r["lat"][e])
                errors = sum(r["errors"][e] for r in runs)
                seconds = sum(r["seconds"] for r in runs)
                rates = " ".join(f"{len(r['lat'][e]) / r['seconds']:.0f}" for r in runs)
                p99s = " ".join(f"{pct(sorted(r['lat'][e]), 0.99):.0f}" if r["lat"][e] else "-" for r in runs)
                got.append((len(lat) / seconds, pct(lat, 0.5) if lat else float("nan"),
                            pct(lat, 0.99) if lat else float("nan"), errors, rates, p99s))
            if not any(g[0] or g[3] for g in got):
                continue
            (ra, a50, a99, ae, arates, ap99s), (rb, b50, b99, be, brates, bp99s) = got
            rows.append([key, e, f"{ra:.0f}", f"{a50:.1f}", f"{a99:.1f}", str(ae), f"{rb:.0f}", f"{b50:.1f}",
                         f"{b99:.1f}", str(be), ratio(rb, ra), ratio(b50, a50), ratio(b99, a99), arates, brates,
                         ap99s, bp99s])
    table(["phase", "endpoint", "A req/s", "A p50", "A p99", "A err", "B req/s", "B p50", "B p99", "B err",
           "B/A req/s", "B/A p50", "B/A p99", "A req/s by round", "B req/s by round", "A p99 by round",
           "B p99 by round"], rows)
    print("\n  server CPU per request (ms; the work done, whatever else the machine was doing) and CPU used")
    rows = []
    for key, *_ in plan:
        got = []
        for runs in (a[key], b[key]):
            n = sum(len(v) for r in runs for v in r["lat"].values())
            cpu = sum(r["server_cpu"] for r in runs)
            seconds = sum(r["seconds"] for r in runs)
            client = sum(r["client_cpu"] for r in runs)
            got.append((1000 * cpu / n if n else float("nan"), cpu / seconds, client / seconds))
        (ca, sa, ka), (cb, sb, kb) = got
        rows.append([key, f"{ca:.2f}", f"{cb:.2f}", ratio(cb, ca), f"{sa:.0%}", f"{sb:.0%}", f"{ka:.0%}", f"{kb:.0%}"])
    table(["phase", "A ms/req", "B ms/req", "B/A", "A server CPU", "B server CPU", "A client CPU", "B client CPU"],
          rows)


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_goals(plan: list[Any], a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]],
                args: argparse.Namespace) -> None:
    """Issue 19's goals for this bench, each with the figure it is judged by: B's requests/s (every endpoint's,
    unlikes too) at least GOAL_RATIO x A's in each closed-loop phase at --clients, and B's p99 of feed, track page and
    like under GOAL_P99_MS in the paced phase."""
    def rate(runs: list[dict[str, Any]]) -> float:
        return sum(len(v) for r in runs for v in r["lat"].values()) / sum(r["seconds"] for r in runs)

    def p99(runs: list[dict[str, Any]], e: str) -> float:
        lat = sorted(x for r in runs for x in r["lat"][e])
        return pct(lat, 0.99) if lat else float("nan")

    keys = [p[0] for p in plan]
    print("\ngoals (issue 19; B = this tree, A = REV)")
    for key in (k for k in CLOSED_LOOP if k in keys):
        ra, rb = rate(a[key]), rate(b[key])
        print(f"  req/s >= {GOAL_RATIO:.0f}x A, {key} at {args.clients} closed-loop clients: B/A {ratio(rb, ra)}"
              f" ({rb:.0f} against {ra:.0f}): {met(rb >= GOAL_RATIO * ra)}")
    if "paced" in keys:
        for e in ("feed", "track", "like"):
            pa, pb = p99(a["paced"], e), p99(b["paced"], e)
            print(f"  p99 < {GOAL_P99_MS:.0f} ms, {e} at {args.clients} paced clients ({args.think_ms:.0f} ms"
                  f" pauses): B {pb:.1f} ms (A {pa:.1f}): {met(pb < GOAL_P99_MS)}")
    errors = sum(sum(r["errors"].values()) for runs in b.values() for r in runs)
    print(f"  no errors: B {errors}: {met(errors == 0)}")


# --- main ---------------------------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    marker = data / "bench.json"
    wanted = {"version": BUILD_VERSION, "tracks": args.tracks, "plays": args.plays, "users": args.users,
              "seed": args.seed}
    if marker.exists():
        meta = json.loads(marker.read_text())
        if all(meta.get(k) == v for k, v in wanted.items()) and len(meta["tokens"]) >= args.clients:
            # A kept directory: drop what earlier runs left (likes an interrupted run did not undo would meet a 409).
            conn = sqlite3.connect(data / "plyrd.db", isolation_level=None)
            marks = ",".join("?" * len(meta["listeners"]))
            conn.execute(f"DELETE FROM likes WHERE did IN ({marks})", meta["listeners"])
            conn.execute(f"DELETE FROM outbox WHERE did IN ({marks})", meta["listeners"])  # the last run's
            conn.close()
            print(f"reusing the catalog in {data} (built in {meta['build_s']:.0f} s)")
            return meta
        raise SystemExit(f"{data} holds a catalog of other sizes; pass another --data or delete it")
    if data.exists() and any(data.iterdir()):
        raise SystemExit(f"{data} is not empty and holds no bench catalog")
    fake_pds = f"http://127.0.0.1:{free_port()}"  # nothing listens there: PDS writes fail fast and wait
    print(f"building {args.tracks:,} tracks, {args.plays:,} play events, {args.users:,} artists in {data} ...",
          flush=True)
    meta = build(data, args, fake_pds)
    marker.write_text(json.dumps(meta))
    size = sum(p.stat().st_size for p in data.glob("plyrd.db*")) / 1e6
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in meta["timings"].items())
    print(f"  built in {meta['build_s']:.1f} s ({parts}); database {size:,.0f} MB,"
          f" {meta['likes']:,} likes, {meta['comments']:,} comments, {args.clients} developer tokens")
    return meta


def phase_plan(args: argparse.Namespace) -> list[tuple[str, str, dict[str, float], int, float, float]]:
    """(key, name, mix, clients, seconds, think ms) of each phase to run, in order."""
    one = min(5.0, args.seconds / 4)
    plan = [(f"{e}-1", f"{e}, unloaded", {e: 1.0}, 1, one, 0.0) for e in ("feed", "track", "like")]
    plan += [(e, e, {e: 1.0}, args.clients, args.seconds, 0.0) for e in ("feed", "track", "like")]
    plan.append(("mixed", "mixed 60% track / 30% feed / 10% like", MIX, args.clients, args.seconds, 0.0))
    pause = f"{args.think_ms:.0f} ms pause after each answer"
    plan.append(("paced", f"mixed, paced: {pause}", MIX, args.clients, args.seconds, args.think_ms))
    # The same without feed pages: how much of the paced tail the feed's event-loop time causes.
    plan.append(("paced-nofeed", f"90% track / 10% like, paced: {pause}", PACED_NO_FEED, args.clients,
                 args.seconds, args.think_ms))
    only = set(args.only.split(",")) if args.only else set(PHASES)
    return [p for p in plan if p[0] in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000, help="artists (they also play, like and comment)")
    parser.add_argument("--likes", type=int, default=200_000, help="likes by the artists, about")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each loaded phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--think-ms", type=float, default=1000.0,
                        help="pause of each client between requests in the paced phase (the others have none)")
    parser.add_argument("--only", help=f"comma-separated phases to run, of: {', '.join(PHASES)}")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="data directory to build (or reuse) and keep")
    parser.add_argument("--against", metavar="REV",
                        help="run every phase side by side with the plyrd of git revision REV (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: runs of each phase per tree")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(json.loads(sys.stdin.read())))))
        return
    if args.build_only:  # --against: the catalog built by one tree's plyrd, in this process (see side_by_side)
        print(f"  building with plyrd from {plyrd_module_file()}", flush=True)
        prepare(args, args.data.resolve())
        return
    if args.against:
        side_by_side(args)
        return

    tmp = None if args.data else tempfile.mkdtemp(prefix="plyrd-catalog-")
    data = (args.data or Path(cast(str, tmp)) / "data").resolve()
    try:
        meta = prepare(args, data)
        port = free_port()
        log = data / "bench-node.log"
        server = start_server(data, port, log)
        phases: list[dict[str, Any]] = []
        try:
            cursors = collect_cursors(port)
            for key, name, mix, clients, seconds, think in phase_plan(args):
                print(f"  phase: {name}, {clients} client(s), {seconds:.0f} s ...", flush=True)
                phases.append(run_phase(name, port, server.pid, meta, cursors, mix, clients, seconds, think, args))
                phases[-1]["key"] = key
            server_rss = rss_mb(server.pid)
        finally:
            stop_server(server)

        print(f"\nplyrd catalog: {meta['tracks']:,} tracks, {meta['plays']:,} play events, {meta['likes']:,} likes;"
              f" clients on loopback;"
              f" {os.cpu_count()} cores shared by client and server; server RSS {server_rss:.0f} MB")
        print(f"    {'endpoint':8} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
              f" {'max ms':>8} {'errors':>7}")
        for r in phases:
            print_phase(r)

        with sqlite3.connect(data / "plyrd.db") as conn:
            waiting = conn.execute("SELECT count(*), coalesce(max(attempts), 0) FROM outbox WHERE state = 'pending'"
                                   " AND collection = 'fm.plyr.like'").fetchone()
        print(f"  outbox: {waiting[0]} fm.plyr.like writes waiting (up to {waiting[1]} tries each) for a PDS that"
              " is not there; with a real PDS the worker would send them, with a little more server CPU")

        errors = sum(sum(r["errors"].values()) for r in phases)
        print(f"\ngoal: p99 < {GOAL_P99_MS:.0f} ms for each endpoint with {args.clients} clients, zero errors")
        for r in phases:
            for e in ("feed", "track", "like"):
                lat = sorted(r["lat"][e])
                if lat and r["clients"] == args.clients:
                    p99 = pct(lat, 0.99)
                    print(f"  {r['key']:6} {e:6} p99 {p99:8.1f} ms: {'met' if p99 < GOAL_P99_MS else 'MISSED'}")
        print(f"  errors: {errors} ({'met' if errors == 0 else 'MISSED'})")
        for r in phases:
            n = sum(len(v) for v in r["lat"].values())
            if n and r["clients"] == args.clients and not r["think_ms"]:
                # Little's law: when every client always has a request in flight, latency = clients / throughput.
                print(f"  {r['key']}: {r['clients']} in flight / {n / r['seconds']:.0f} req/s ="
                      f" {1000 * r['clients'] * r['seconds'] / n:.0f} ms mean; a 20 ms p99 would need"
                      f" > {r['clients'] / (GOAL_P99_MS / 1000):.0f} req/s")
        analyse(data / "plyrd.db", meta, cursors, meta["listeners"][0])
        if args.data:
            print(f"\nkept {data} (node log: {log})")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
