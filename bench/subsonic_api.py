"""The Subsonic API under load: p50/p99 and req/s of getAlbumList2, search3, getAlbum, getRandomSongs and getArtists
with 1 and 20 concurrent clients.

Issue 14 asks for the p99 of getAlbumList2 / search3 / getAlbum at 20 concurrent clients on 10,000 tracks: what a
household of Subsonic apps (Symfonium, DSub, Feishin...) browsing and syncing at once asks of one node. Issue 19
adds getRandomSongs and its goals, run side by side with today's main (--against): at least 2x its requests/s at 20
clients, p99 under 50 ms at 20 clients, and search3's p50 under 3 ms with one client; the run ends with a line per
goal saying met or MISSED, with the figure it was judged by.

1. Build. The catalog bench/catalog.py builds (its `build`: plyrd's own migrations, then synthetic artists, tracks
   with tags, play events, likes, comments, and developer tokens made by plyrd's session code), at 10,000 tracks
   by default, plus albums: about 60% of each artist's tracks grouped into albums of 4 to 12 (the rest are the
   artist's "Singles"), as uploads with an `album` field make them.
2. Serve. `python -m plyrd serve` in its own process (log level warning, request logging off), waited for until idle
   (it builds its search index at start: search3 reads it).
3. Load. Closed-loop clients (each sends its next request as soon as the last one answered), one httpx connection
   each, in a separate process; every request is a JSON /rest call with a developer token as `apiKey`. One phase per
   request kind with 1 client (the unloaded service time), then with --clients:
   - list-newest, list-alpha: getAlbumList2 type=newest / alphabeticalByName, size=50; 70% the first page, 30% a
     page further down (offset up to 1,000), as an app scrolling its album grid;
   - list-frequent, list-random: getAlbumList2 type=frequent / random, size=50 (the home screen's rows);
   - search3: a word from the catalog's titles (a dozen languages), the default 20 artists/albums/songs;
   - getAlbum: a uniformly random album (real albums and Singles, collected with getAlbumList2 before the run);
   - getRandomSongs: size=50, no genre or year (apps ask for 10 to 50 at a time; 50 is the heaviest of those);
   - getArtists: every artist with albums, by letter (an app's artist tab; not in issue 19's list).
   A request counts when it answers HTTP 200 with status "ok". Client and server share this machine's cores; the
   CPU each used is printed.
4. Goals: issue 19's, one line each with the figure judged (met or MISSED).
5. Where the time goes: each request's SQL as this tree's plyrd.subsonic.catalog runs it, on a sqlite3 connection
   in this process (`_Timed` stands in for plyrd.db.Database: a statement at a time, or a read_fn's function as one
   step); a request whose code has changed shape says "not measured" and the others still run.

Side by side (--against REV): as bench/catalog.py does it (bench/_common.py): REV's plyrd in a temporary worktree and
this tree's, each serving its own copy of one catalog built by the tree with the older schema; every phase runs
--rounds times per tree, alternating REV, this tree, REV, this tree; the figures are printed in columns with their
ratio. Where the time goes runs for this tree only, on its copy.

    .venv/bin/python bench/subsonic_api.py [--tracks 10000 --clients 20 --seconds 10] [--only search3,getAlbum]
                                           [--data DIR (kept, and reused by the next run with the same sizes)]
                                           [--against REV [--rounds 2]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import catalog as cat  # the catalog build, the server and its helpers (it puts the tree under test on sys.path)
from _common import against as against_trees
from _common import alternating, cpu_seconds, describe, free_port, print_log_tails, ratio, rss_mb, table

BUILD_VERSION = 1  # bump when the synthetic data changes, so a kept --data directory is rebuilt
MARKER = "bench-subsonic.json"
ENDPOINTS = ("list-newest", "list-alpha", "list-frequent", "list-random", "search3", "getAlbum", "getRandomSongs",
             "getArtists")
RANDOM_SONGS = 50  # getRandomSongs' size: apps ask for 10-50
GOAL_RATIO = 2.0  # requests/s against REV's (--against), each request at --clients
GOAL_P99_MS = 50.0  # each request at --clients
GOAL_SEARCH_P50_MS = 3.0  # search3 with one client
LIST_TYPES = {"list-newest": "newest", "list-alpha": "alphabeticalByName", "list-frequent": "frequent",
              "list-random": "random"}
QUERIES = sorted({w for words in cat.WORDS.values() for w in words})
OK = b'{"subsonic-response":{"status":"ok"'  # as the answer starts, with any spaces taken out (trees differ)


# --- the catalog --------------------------------------------------------------------------------------------------


def add_albums(db_path: Path, seed: int) -> int:
    """Group about 60% of each artist's tracks, in upload order, into albums of 4-12 tracks. Returns the count."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        by_artist: dict[str, list[tuple[int, float]]] = {}
        for track_id, did, created in conn.execute("SELECT id, artist_did, created_at FROM tracks ORDER BY id"):
            by_artist.setdefault(did, []).append((track_id, created))
        albums, members = [], []
        for did, tracks in by_artist.items():
            i = 0
            while i < len(tracks):
                n = rnd.randint(4, 12)
                group = tracks[i:i + n]
                i += n
                if len(group) < 4 or rnd.random() > 0.6:
                    continue  # these stay singles
                album_id = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
                name = cat.title(rnd)
                albums.append((album_id, did, f"{len(albums)}-{album_id[:8]}", name, group[0][1], group[-1][1]))
                members += [(album_id, position, track_id) for position, (track_id, _) in enumerate(group)]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO albums(id, artist_did, slug, title, created_at, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?)", albums)
        conn.executemany("INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, ?, ?)", members)
        conn.execute("COMMIT")
        return len(albums)
    finally:
        conn.close()


def prepare(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    marker = data / MARKER
    wanted = {"version": BUILD_VERSION, "tracks": args.tracks, "plays": args.plays, "users": args.users,
              "seed": args.seed}
    if marker.exists():
        meta = json.loads(marker.read_text())
        if all(meta.get(k) == v for k, v in wanted.items()) and len(meta["tokens"]) >= args.clients:
            print(f"reusing the catalog in {data} (built in {meta['build_s']:.0f} s)")
            return meta
        raise SystemExit(f"{data} holds a catalog of other sizes; pass another --data or delete it")
    if data.exists() and any(data.iterdir()):
        raise SystemExit(f"{data} is not empty and holds no bench catalog")
    fake_pds = f"http://127.0.0.1:{free_port()}"  # nothing listens there: PDS writes fail fast and wait
    print(f"building {args.tracks:,} tracks, {args.plays:,} play events, {args.users:,} artists in {data} ...",
          flush=True)
    began = time.perf_counter()
    meta = cat.build(data, args, fake_pds)
    meta["albums"] = add_albums(data / "plyrd.db", args.seed)
    meta["version"] = BUILD_VERSION
    meta["build_s"] = time.perf_counter() - began
    marker.write_text(json.dumps(meta))
    print(f"  built in {meta['build_s']:.1f} s: {meta['albums']:,} albums, {meta['likes']:,} likes,"
          f" {args.clients} developer tokens", flush=True)
    return meta


def collect_albums(port: int, token: str, limit: int = 5000) -> list[str]:
    """Album ids as a client finds them: getAlbumList2 alphabeticalByName, page by page."""
    ids: list[str] = []
    while len(ids) < limit:
        query = urllib.parse.urlencode({"apiKey": token, "f": "json", "type": "alphabeticalByName", "size": 500,
                                        "offset": len(ids)})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/rest/getAlbumList2?{query}", timeout=60) as r:
            page = json.loads(r.read())["subsonic-response"]["albumList2"].get("album", [])
        if not page:
            break
        ids += [a["id"] for a in page]
    if not ids:
        raise RuntimeError("getAlbumList2 lists no albums")
    return ids


# --- the load generator (its own process) -------------------------------------------------------------------------


async def load(cfg: dict[str, Any]) -> dict[str, Any]:
    import httpx

    lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
    errors: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
    first_errors: list[str] = []
    measuring, stop = asyncio.Event(), asyncio.Event()

    def request(kind: str, rnd: random.Random) -> tuple[str, dict[str, Any]]:
        if kind in LIST_TYPES:
            params: dict[str, Any] = {"type": LIST_TYPES[kind], "size": 50}
            if kind in ("list-newest", "list-alpha") and rnd.random() < 0.3:
                params["offset"] = 50 * rnd.randint(1, 20)
            return "getAlbumList2", params
        if kind == "search3":
            return "search3", {"query": rnd.choice(QUERIES)}
        if kind == "getRandomSongs":
            return "getRandomSongs", {"size": RANDOM_SONGS}
        if kind == "getArtists":
            return "getArtists", {}
        return "getAlbum", {"id": rnd.choice(cfg["albums"])}

    async def client(http: httpx.AsyncClient, index: int) -> None:
        rnd = random.Random(cfg["seed"] * 1_000_003 + index)
        auth = {"apiKey": cfg["tokens"][index], "f": "json", "c": "bench"}
        while not stop.is_set():
            kind = cfg["kind"]
            method, params = request(kind, rnd)
            began = time.perf_counter()
            try:
                r = await http.get(f"/rest/{method}", params={**auth, **params})
                ok = r.status_code == 200 and r.content[:64].replace(b" ", b"").startswith(OK)
                problem = f"{method} {params}: {r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                ok, problem = False, f"{method} {params}: {e!r}"
            took = time.perf_counter() - began
            if measuring.is_set() and not stop.is_set():
                if ok:
                    lat[kind].append(took)
                else:
                    errors[kind] += 1
                    if len(first_errors) < 5:
                        first_errors.append(problem)

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{cfg['port']}", limits=limits, timeout=60)
             for _ in cfg["tokens"]]
    try:
        tasks = []
        for index, http in enumerate(https):
            tasks.append(asyncio.create_task(client(http, index)))
            await asyncio.sleep(cfg["warmup"] / 4 / len(https))  # ramp up
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
    return {"lat": lat[cfg["kind"]], "errors": errors[cfg["kind"]], "first_errors": first_errors,
            "seconds": elapsed, "client_cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "server_cpu": server1 - server0}


def run_phase(kind: str, clients: int, seconds: float, port: int, server_pid: int, meta: dict[str, Any],
              albums: list[str], args: argparse.Namespace) -> dict[str, Any]:
    cfg = {"port": port, "server_pid": server_pid, "tokens": meta["tokens"][:clients], "albums": albums,
           "kind": kind, "seconds": seconds, "warmup": args.warmup, "seed": args.seed}
    done = subprocess.run([sys.executable, __file__, "--load"], input=json.dumps(cfg), capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"load process failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(kind=kind, clients=clients)
    return result


def phase_plan(args: argparse.Namespace) -> list[tuple[str, str, int, float]]:
    """(key, kind, clients, seconds) of each phase, in order: every kind unloaded, then every kind loaded."""
    only = set(args.only.split(",")) if args.only else set(ENDPOINTS)
    kinds = [k for k in ENDPOINTS if k in only]
    one = min(3.0, args.seconds / 2)
    return [(f"{k}-1", k, 1, one) for k in kinds] + [(k, k, args.clients, args.seconds) for k in kinds]


# --- reporting ----------------------------------------------------------------------------------------------------


def figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """req/s, p50, p90, p99, max (ms) and errors, pooled over runs."""
    lat = sorted(x for r in runs for x in r["lat"])
    seconds = sum(r["seconds"] for r in runs)
    if not lat:
        lat = [float("nan")]
    n = sum(len(r["lat"]) for r in runs)
    return {"n": n, "rate": n / seconds, "p50": cat.pct(lat, 0.5), "p90": cat.pct(lat, 0.9),
            "p99": cat.pct(lat, 0.99), "max": 1000 * lat[-1], "errors": sum(r["errors"] for r in runs),
            "server_ms": 1000 * sum(r["server_cpu"] for r in runs) / n if n else float("nan"),
            "server_cpu": sum(r["server_cpu"] for r in runs) / seconds,
            "client_cpu": sum(r["client_cpu"] for r in runs) / seconds}


def print_single(plan: list[tuple[str, str, int, float]], results: dict[str, dict[str, Any]]) -> None:
    rows = []
    for key, kind, clients, _ in plan:
        f = figures([results[key]])
        rows.append([kind, str(clients), str(f["n"]), f"{f['rate']:.0f}", f"{f['p50']:.1f}", f"{f['p90']:.1f}",
                     f"{f['p99']:.1f}", f"{f['max']:.1f}", str(f["errors"]), f"{f['server_ms']:.2f}",
                     f"{f['server_cpu']:.0%}", f"{f['client_cpu']:.0%}"])
    table(["request", "clients", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
           "server CPU ms/req", "server CPU", "client CPU"], rows)
    for key, *_ in plan:
        for err in results[key]["first_errors"][:2]:
            print(f"  {key}: error: {err}")


def print_side_by_side(plan: list[tuple[str, str, int, float]], a: dict[str, list[dict[str, Any]]],
                       b: dict[str, list[dict[str, Any]]]) -> None:
    rows = []
    for key, kind, clients, _ in plan:
        fa, fb = figures(a[key]), figures(b[key])
        by_round = [" ".join(f"{len(r['lat']) / r['seconds']:.0f}" for r in runs) for runs in (a[key], b[key])]
        rows.append([kind, str(clients), f"{fa['rate']:.0f}", f"{fa['p50']:.1f}", f"{fa['p99']:.1f}",
                     str(fa["errors"]), f"{fb['rate']:.0f}", f"{fb['p50']:.1f}", f"{fb['p99']:.1f}",
                     str(fb["errors"]), ratio(fb["rate"], fa["rate"]), ratio(fb["p50"], fa["p50"]),
                     ratio(fb["p99"], fa["p99"]), f"{fa['server_ms']:.2f}", f"{fb['server_ms']:.2f}", *by_round])
    table(["request", "clients", "A req/s", "A p50", "A p99", "A err", "B req/s", "B p50", "B p99", "B err",
           "B/A req/s", "B/A p50", "B/A p99", "A CPU ms/req", "B CPU ms/req", "A req/s by round",
           "B req/s by round"], rows)
    for runs in (*a.values(), *b.values()):
        for r in runs:
            for err in r["first_errors"][:1]:
                print(f"  {r['kind']}: error: {err}")


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_goals(plan: list[tuple[str, str, int, float]], b: dict[str, list[dict[str, Any]]],
                a: dict[str, list[dict[str, Any]]] | None, clients: int) -> None:
    """Issue 19's goals, each with the figure it is judged by (B: this tree; A: REV, side by side only)."""
    print("\ngoals (issue 19" + ("; B = this tree, A = REV)" if a else ")"))
    for key, kind, n, _ in plan:
        if n != clients:
            continue
        fb = figures(b[key])
        line = (f"  {kind:15} at {clients} clients: p99 < {GOAL_P99_MS:.0f} ms: B {fb['p99']:.1f} ms:"
                f" {met(fb['p99'] < GOAL_P99_MS)}")
        if a:
            fa = figures(a[key])
            line += (f"; req/s >= {GOAL_RATIO:.0f}x A: B/A {ratio(fb['rate'], fa['rate'])} ({fb['rate']:.0f} against"
                     f" {fa['rate']:.0f}): {met(fb['rate'] >= GOAL_RATIO * fa['rate'])}")
        print(line)
    if "search3-1" in b:
        p50 = figures(b["search3-1"])["p50"]
        print(f"  search3 with 1 client: p50 < {GOAL_SEARCH_P50_MS:.0f} ms: B {p50:.1f} ms:"
              f" {met(p50 < GOAL_SEARCH_P50_MS)}")
    errors = sum(r["errors"] for runs in b.values() for r in runs)
    print(f"  no errors: B {errors}: {met(errors == 0)}")


# --- where the time goes ------------------------------------------------------------------------------------------


class _Timed:
    """A stand-in for plyrd.db.Database that runs each statement on one sqlite3 connection and notes its time: a
    request's statements in sqlite3 alone, each fed what the one before answered (a page's albums come from the
    page the first statement picked). A `read_fn(fn, *args)` (a request's reads as one plain function) runs `fn`
    on the same connection and is noted as one step, with the number of statements its trace callback saw."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.times: list[float] = []
        self.statements: list[int] = []  # per step: 1 for fetchall/fetchone, what a read_fn ran

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        began = time.perf_counter()
        rows = self.conn.execute(sql, list(params)).fetchall()
        self.times.append(1000 * (time.perf_counter() - began))
        self.statements.append(1)
        return rows

    async def fetchone(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def read_fn(self, fn: Any, *args: Any) -> Any:
        seen: list[str] = []
        self.conn.set_trace_callback(seen.append)
        began = time.perf_counter()
        try:
            return fn(self.conn, *args)
        finally:
            self.times.append(1000 * (time.perf_counter() - began))
            self.conn.set_trace_callback(None)
            self.statements.append(sum(1 for sql in seen if not sql.startswith("--")))

    def steps(self) -> str:
        return " + ".join(f"{t:.2f}" if n == 1 else f"{t:.2f} (a read_fn of {n} statements)"
                          for t, n in zip(self.times, self.statements, strict=True))


def analyse(db_path: Path, meta: dict[str, Any], albums: list[str]) -> None:
    """The SQL plyrd.subsonic.catalog runs for each request, run by this tree's code on a real sqlite3 connection
    (so a statement that depends on the one before gets its real answer), the median of runs 2 to 6 and the first
    run: what one request costs before any Python shaping. The songs of getAlbum are left out (one indexed read of
    the album's tracks)."""
    from plyrd.catalog.tracks import Audience
    from plyrd.subsonic import catalog as sc

    audience = Audience(meta["listeners"][0], is_admin=False)
    real = next((a for a in albums if not a.startswith("al-singles-")), albums[0])
    single = next((a for a in albums if a.startswith("al-singles-")), albums[0])
    kinds = [*LIST_TYPES.values(), "recent", "starred", "highest", "byYear", "byGenre"]
    cases: dict[str, Any] = {
        f"getAlbumList2 {t} {o}": (lambda db, t=t, o=o: sc.album_list(db, {
            "type": t, "size": "50", "offset": str(o), "fromYear": "1990", "toYear": "2030", "genre": "rock"},
            audience)) for t in kinds for o in (0, 500)}
    cases["getAlbum, its row (an album)"] = lambda db: sc.albums_by_id(db, audience, [real])
    cases["getAlbum, its row (Singles)"] = lambda db: sc.albums_by_id(db, audience, [single])
    cases["search3 (substring part)"] = lambda db: sc.search(db, {"query": "night"}, audience, None)
    cases[f"getRandomSongs size={RANDOM_SONGS}"] = lambda db: sc.random_songs(db, {"size": str(RANDOM_SONGS)}, audience)
    cases["getArtists"] = lambda db: sc.artists(db, audience)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    print("\nwhere the time goes: each request's SQL in sqlite3 alone (ms, median of runs 2-6, and the first run;"
          " this tree's code)")
    try:
        for name, make in cases.items():
            # One stand-in for all six runs: answers the code keeps per database (plyrd.subsonic.snapshot) are
            # computed by the first run and found by the others, as on a node between two catalog changes.
            timed = _Timed(conn)
            runs: list[tuple[float, int, str]] = []
            for _ in range(6):
                timed.times, timed.statements = [], []
                try:
                    asyncio.run(make(timed))
                except Exception as e:  # the code's shape changed: say so rather than fail
                    print(f"  {name}: not measured ({type(e).__name__}: {e})")
                    break
                runs.append((sum(timed.times), sum(timed.statements), timed.steps()))
            if len(runs) < 6:
                continue
            total, statements, steps = sorted(runs[1:])[2]
            print(f"  {name:40} {total:7.2f} ms in {statements} statement(s): {steps}; first run {runs[0][0]:.1f} ms")
    finally:
        conn.close()


# --- main ---------------------------------------------------------------------------------------------------------


def size_args(args: argparse.Namespace) -> list[str]:
    return [f"--{k}={getattr(args, k)}" for k in ("tracks", "plays", "users", "likes", "clients", "seed")]


def side_by_side(args: argparse.Namespace) -> None:
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
        meta = json.loads((base / MARKER).read_text())
        with sqlite3.connect(base / "plyrd.db") as conn:
            schema = conn.execute("PRAGMA user_version").fetchone()[0]
        if schema > builder.schema:  # a kept --data directory a newer tree built or migrated: REV cannot open it
            raise SystemExit(f"{base} is at schema {schema}, newer than {builder.label} can open; pass another --data")
        datas = []
        for i, _ in enumerate(trees):
            datas.append(scratch / f"data-{i}")
            shutil.copytree(base, datas[i], ignore=shutil.ignore_patterns("search.*", "bench-*.log"))
        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {t.label: {} for t in trees}
        albums: dict[str, list[str]] = {}
        plan = phase_plan(args)
        try:
            for tree, data in zip(trees, datas, strict=True):
                port = free_port()
                servers[tree.label] = (cat.start_server(data, port, data / "bench-node.log", tree, scratch, 600), port)
            waited = cat.wait_idle({label: s for label, (s, _) in servers.items()})
            print(f"  both servers up and idle (search indexes built) after {waited:.0f} s", flush=True)
            for tree in trees:
                albums[tree.label] = collect_albums(servers[tree.label][1], meta["tokens"][0])
            for key, kind, clients, seconds in plan:
                print(f"  phase: {kind}, {clients} client(s), {seconds:.0f} s, {args.rounds} x each tree ...",
                      flush=True)
                for _, tree in alternating(args.rounds, trees):
                    server, port = servers[tree.label]
                    runs[tree.label].setdefault(key, []).append(
                        run_phase(kind, clients, seconds, port, server.pid, meta, albums[tree.label], args))
            server_rss = {label: rss_mb(s.pid) for label, (s, _) in servers.items()}
        except BaseException:
            print_log_tails({t.label: d / "bench-node.log" for t, d in zip(trees, datas, strict=True)})
            raise
        finally:
            for server, _ in servers.values():
                cat.stop_server(server)
        print(f"\nplyrd Subsonic API side by side: {meta['tracks']:,} tracks, {meta['albums']:,} albums (and each"
              f" artist's Singles); {os.cpu_count()} cores shared by client, server and whatever else runs;"
              f" {args.rounds} rounds per tree, alternating")
        print(f"  A = {old.label} ({old.commit}), B = this tree ({this.commit}); server RSS at the end:"
              f" A {server_rss[old.label]:.0f} MB, B {server_rss[this.label]:.0f} MB")
        print("  req/s and p50/p99 ms pooled over the rounds; B/A: req/s above 1 and p50/p99 below 1 mean B is faster")
        print_side_by_side(plan, runs[old.label], runs[this.label])
        print_goals(plan, runs[this.label], runs[old.label], args.clients)
        analyse(datas[1] / "plyrd.db", meta, albums[this.label])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--plays", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=500, help="artists (they also play, like and comment)")
    parser.add_argument("--likes", type=int, default=20_000, help="likes by the artists, about")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of each loaded phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--only", help=f"comma-separated requests to run, of: {', '.join(ENDPOINTS)}")
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
    if args.build_only:  # --against: the catalog built by one tree's plyrd, in this process
        print(f"  building with plyrd from {cat.plyrd_module_file()}", flush=True)
        prepare(args, args.data.resolve())
        return
    if args.against:
        side_by_side(args)
        return

    tmp = None if args.data else tempfile.mkdtemp(prefix="plyrd-subsonic-")
    data = (args.data or Path(tmp or ".") / "data").resolve()
    try:
        meta = prepare(args, data)
        port = free_port()
        log = data / "bench-node.log"
        server = cat.start_server(data, port, log)
        plan = phase_plan(args)
        results: dict[str, dict[str, Any]] = {}
        try:
            waited = cat.wait_idle({"node": server})
            print(f"  server up and idle (search index built) after {waited:.0f} s", flush=True)
            albums = collect_albums(port, meta["tokens"][0])
            for key, kind, clients, seconds in plan:
                print(f"  phase: {kind}, {clients} client(s), {seconds:.0f} s ...", flush=True)
                results[key] = run_phase(kind, clients, seconds, port, server.pid, meta, albums, args)
            server_rss = rss_mb(server.pid)
        finally:
            cat.stop_server(server)
        print(f"\nplyrd Subsonic API: {meta['tracks']:,} tracks, {meta['albums']:,} albums (and each artist's"
              f" Singles: {len(albums):,} albums listed), {meta['users']:,} artists; closed-loop clients on loopback;"
              f" {os.cpu_count()} cores shared by client and server; server RSS {server_rss:.0f} MB")
        print_single(plan, results)
        print_goals(plan, {k: [r] for k, r in results.items()}, None, args.clients)
        analyse(data / "plyrd.db", meta, albums)
        if args.data:
            print(f"\nkept {data} (node log: {log})")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
