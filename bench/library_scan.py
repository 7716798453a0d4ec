"""The music folder's scanner against supysonic's, on the same generated folder, side by side in one run.

    .venv/bin/python bench/library_scan.py [--files 20000] [--no-supysonic]

The folder: --files short tagged files (1 s of audio), mixed MP3/FLAC/M4A/OGG, ten to an album, a cover.jpg beside
each album and the picture embedded too where the container carries one (MP3, FLAC, M4A). Encoding 20,000 files one
by one would take many minutes on a small machine, so a few template files per format are encoded once with PyAV
and every file is a remux of one of them with its own tags and cover (a few ms each). The folder is kept under
/tmp/plyrd-bench-library/ between runs (re-running is quick); `--fresh` makes it anew.

Figures, each scanner in a process of its own whose VmRSS is sampled every 20 ms:
- first scan: files/s of plyrd's `Library.scan` (an empty data directory) and of supysonic's `Scanner` (an empty
  SQLite database; supysonic from PyPI in its own venv, /tmp/bench-supysonic, made on first use). Goal: plyrd at
  least 2x supysonic.
- rescan with nothing changed: files/s, goal at least 20x plyrd's first scan.
- RSS growth over the first scan (peak minus the RSS just before it, with the media stack, PyAV and Pillow,
  already loaded as in a running node), goal under 50 MB; and RSS after each of three rescans (flat: the last
  within a few MB of the first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO

CACHE = Path("/tmp/plyrd-bench-library")
SUPYSONIC_VENV = Path("/tmp/bench-supysonic")
PER_ALBUM = 10
RESCANS = 3
GOAL_VS_SUPYSONIC = 2.0
GOAL_RESCAN = 20.0
GOAL_RSS_MB = 50.0
EXTENSIONS = ["mp3", "flac", "m4a", "ogg"]
GENRES = ["Rock", "Jazz", "Electronic", "Folk", "Hip-Hop", "Classical", "Ambient", "Pop"]


# --- the folder ---------------------------------------------------------------------------------------------------


def _templates(where: Path) -> dict[str, list[Path]]:
    """A few one-second files per format (different notes, so the audio differs), encoded once."""
    sys.path.insert(0, str(REPO / "tests"))
    from audio_samples import make_audio

    kinds = {"mp3": "mp3", "flac": "flac", "m4a": "m4a-aac", "ogg": "ogg-vorbis"}
    where.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    for ext, fmt in kinds.items():
        out[ext] = [make_audio(where / f"t{i}.{ext}", fmt, seconds=1.0, kind="music", frequency=220.0 * (1 + i / 4))
                    for i in range(4)]
    return out


def _remux(src: Path, dst: Path, ext: str, tags: dict[str, str], cover: bytes | None) -> None:
    import av
    from audio_samples import _add_cover

    container = {"mp3": "mp3", "flac": "flac", "m4a": "mp4", "ogg": "ogg"}[ext]
    options = {"id3v2_version": "3"} if ext == "mp3" else {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container, options=options) as out:
        audio_in = inp.streams.audio[0]
        audio_out = out.add_stream_from_template(audio_in)
        for key, value in tags.items():
            out.metadata[key] = value
            if ext == "ogg":
                audio_out.metadata[key] = value  # Vorbis comments live on the stream
        if cover is not None and ext != "ogg":
            _add_cover(out, cover)
        for packet in inp.demux(audio_in):
            if packet.dts is None:
                continue
            packet.stream = audio_out
            out.mux(packet)


def make_folder(files: int, *, fresh: bool = False) -> Path:
    """The generated folder for `files` files, made once and kept (a `.complete` marker says it is whole)."""
    folder = CACHE / f"files-{files}"
    if (folder / ".complete").exists() and not fresh:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sys.path.insert(0, str(REPO / "tests"))
    from audio_samples import jpeg_bytes

    started = time.perf_counter()
    templates = _templates(CACHE / "templates")
    rng = random.Random(files)
    albums = (files + PER_ALBUM - 1) // PER_ALBUM
    made = 0
    for a in range(albums):
        artist = f"Artist {a // 5:04d}"
        album = f"Album {a:05d}"
        compilation = a % 17 == 0
        cover = jpeg_bytes(300, 300, ((a * 37) % 256, (a * 91) % 256, (a * 53) % 256))
        where = folder / artist / album
        where.mkdir(parents=True, exist_ok=True)
        (where / "cover.jpg").write_bytes(cover)
        for t in range(1, PER_ALBUM + 1):
            if made == files:
                break
            ext = EXTENSIONS[(a + t) % len(EXTENSIONS)]
            track_artist = f"Guest {rng.randrange(500):03d}" if compilation else artist
            tags = {"title": f"Song {a:05d}-{t:02d}", "artist": track_artist, "album": album,
                    "album_artist": "Various Artists" if compilation else artist, "track": f"{t}/{PER_ALBUM}",
                    "disc": "1/1", "date": str(1960 + a % 60), "genre": GENRES[a % len(GENRES)]}
            _remux(templates[ext][t % 4], where / f"{t:02d} Song {t}.{ext}", ext, tags,
                   cover if t % 2 else None)  # half carry the picture, all have the folder's cover.jpg
            made += 1
        if a % 200 == 199:
            print(f"  generated {made}/{files} files", file=sys.stderr, flush=True)
    (folder / ".complete").write_text(str(made))
    print(f"  generated {made} files in {time.perf_counter() - started:.0f} s: {folder}", file=sys.stderr)
    return folder


# --- measuring ----------------------------------------------------------------------------------------------------


class RssSampler:
    """This process's VmRSS every 20 ms, in a thread; `peak` since the last `reset`."""

    def __init__(self) -> None:
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def reset(self) -> float:
        self.peak = value = self.now()
        return value

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def stop(self) -> None:
        self._stop.set()


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# --- plyrd's side (a child process) ---------------------------------------------------------------------------------


def child_plyrd(folder: Path, data: Path) -> None:
    """Scan `folder` into a fresh data directory with plyrd's Library, then rescan it three times. The library is
    built as `plyrd library scan` builds it (database, blob store, Library): no web server, no other workers."""
    sys.path.insert(0, str(REPO))
    from plyrd.config import load_config
    from plyrd.db import Database
    from plyrd.library.service import Library
    from plyrd.node import prepare_data_dir
    from plyrd.storage import BlobStore

    config = load_config(env={}, overrides={"storage.data_dir": str(data), "library.folders": [str(folder)],
                                            "library.watch": False})

    async def main() -> None:
        prepare_data_dir(config)
        db = Database(config.db_path)
        await db.open()
        try:
            library = Library(db, BlobStore(config.blobs_dir, config.tmp_dir, db), config)
            await library.start()
            bare = RssSampler.now()
            # A running node has its media stack loaded already (uploads, covers, streaming): load it before the
            # baseline, so the growth measured is the scan's own, not PyAV's and Pillow's libraries arriving.
            import plyrd.media.artwork
            import plyrd.media.probe  # noqa: F401
            _emit(side="plyrd", imports_mb=RssSampler.now() - bare)
            rss = RssSampler()
            for run in range(1 + RESCANS):
                before = rss.reset()
                started = time.perf_counter()
                report = await library.scan(trigger="cli")
                elapsed = time.perf_counter() - started
                _emit(side="plyrd", run=run, seen=report.seen, added=report.added, unchanged=report.unchanged,
                      errors=report.errors, elapsed=elapsed, rss_before=before, rss_peak=rss.peak,
                      rss_after=rss.now())
            rss.stop()
        finally:
            await db.close()

    asyncio.run(main())


# --- supysonic's side (a child process in its own venv) -------------------------------------------------------------


def child_supysonic(folder: Path, db: Path) -> None:
    from supysonic.db import init_database
    from supysonic.managers.folder import FolderManager
    from supysonic.scanner import Scanner

    init_database(f"sqlite:///{db}")
    FolderManager.add("music", str(folder))
    rss = RssSampler()
    for run in range(1 + RESCANS):
        before = rss.reset()
        scanner = Scanner(extensions=EXTENSIONS)
        scanner.queue_folder("music")
        started = time.perf_counter()
        scanner.run()  # in this thread: Scanner is a Thread, run() is its whole body
        elapsed = time.perf_counter() - started
        stats = scanner._Scanner__stats  # no public accessor in 0.7.x; the CLI prints the same counts
        _emit(side="supysonic", run=run, seen=stats.scanned, added=stats.added.tracks, unchanged=None,
              errors=len(stats.errors), elapsed=elapsed, rss_before=before, rss_peak=rss.peak, rss_after=rss.now())
    rss.stop()


def supysonic_python() -> Path:
    python = SUPYSONIC_VENV / "bin" / "python"
    if not python.exists() or subprocess.run([python, "-c", "import supysonic"], capture_output=True).returncode:
        print("  installing supysonic into", SUPYSONIC_VENV, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SUPYSONIC_VENV)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "supysonic"], check=True)
    return python


# --- the run --------------------------------------------------------------------------------------------------------


def _run_child(cmd: list[Any], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{cmd[1:3]} failed with {done.returncode}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join(line(r) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--fresh", action="store_true", help="generate the folder again")
    parser.add_argument("--no-supysonic", action="store_true")
    parser.add_argument("--child-plyrd", nargs=2, metavar=("FOLDER", "DATA"), help=argparse.SUPPRESS)
    parser.add_argument("--child-supysonic", nargs=2, metavar=("FOLDER", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_plyrd:
        child_plyrd(Path(args.child_plyrd[0]), Path(args.child_plyrd[1]))
        return
    if args.child_supysonic:
        child_supysonic(Path(args.child_supysonic[0]), Path(args.child_supysonic[1]))
        return

    folder = make_folder(args.files, fresh=args.fresh)
    work = CACHE / "runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    me = Path(__file__).resolve()
    results: dict[str, list[dict[str, Any]]] = {}
    if not args.no_supysonic:
        print("  supysonic scanning...", file=sys.stderr, flush=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        results["supysonic"] = _run_child([supysonic_python(), me, "--child-supysonic", folder,
                                           work / "supysonic.db"], env=env)
    print("  plyrd scanning...", file=sys.stderr, flush=True)
    plyrd_rows = _run_child([sys.executable, me, "--child-plyrd", folder, work / "plyrd-data"])
    results["plyrd"] = [r for r in plyrd_rows if "run" in r]
    imports_mb = next((r["imports_mb"] for r in plyrd_rows if "imports_mb" in r), float("nan"))

    def rate(r: dict[str, Any]) -> float:
        return r["seen"] / r["elapsed"] if r["elapsed"] else float("inf")

    rows = [["", *[f"{side}" for side in results]]]
    rows.append(["files seen (first scan)", *[str(v[0]["seen"]) for v in results.values()]])
    rows.append(["first scan, s", *[f"{v[0]['elapsed']:.1f}" for v in results.values()]])
    rows.append(["first scan, files/s", *[f"{rate(v[0]):.0f}" for v in results.values()]])
    for i in range(1, 1 + RESCANS):
        rows.append([f"rescan {i} (unchanged), files/s", *[f"{rate(v[i]):.0f}" for v in results.values()]])
    rows.append(["RSS growth over first scan, MB",
                 *[f"{v[0]['rss_peak'] - v[0]['rss_before']:.1f}" for v in results.values()]])
    rows.append(["RSS after rescans 1/2/3, MB",
                 *["/".join(f"{r['rss_after']:.0f}" for r in v[1:]) for v in results.values()]])
    print(f"\n{args.files} files in {folder}\n")
    print(_table(rows))

    p = results["plyrd"]
    first, rescan = rate(p[0]), min(rate(r) for r in p[1:])
    growth = p[0]["rss_peak"] - p[0]["rss_before"]
    drift = p[-1]["rss_after"] - p[1]["rss_after"]
    print()
    if "supysonic" in results:
        ratio = first / rate(results["supysonic"][0])
        print(f"first scan vs supysonic: {ratio:.1f}x (goal {GOAL_VS_SUPYSONIC:.0f}x) "
              f"{'ok' if ratio >= GOAL_VS_SUPYSONIC else 'MISSED'}")
    print(f"unchanged rescan vs first scan: {rescan / first:.0f}x (goal {GOAL_RESCAN:.0f}x) "
          f"{'ok' if rescan / first >= GOAL_RESCAN else 'MISSED'}")
    print(f"RSS growth over the first scan: {growth:.1f} MB (goal < {GOAL_RSS_MB:.0f} MB) "
          f"{'ok' if growth < GOAL_RSS_MB else 'MISSED'}; loading PyAV and Pillow before it: {imports_mb:.1f} MB")
    print(f"RSS across three rescans: {drift:+.1f} MB from the first to the last "
          f"{'ok (flat)' if abs(drift) < 5 else 'NOT flat'}")


if __name__ == "__main__":
    main()
