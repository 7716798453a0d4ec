"""FLAC -> MP3 320k CBR 44.1 kHz on one core: plyrd's transcode against the ffmpeg command line, side by side.

Goal: plyrd at least 0.9x the speed of `ffmpeg -threads 1 -i in.flac -codec:a libmp3lame -b:a 320k -ar 44100 out.mp3`.
Both run pinned to the same single core (os.sched_setaffinity, inherited by the ffmpeg child), alternating, best of
--runs. Also prints plyrd's fallback encoder (PyAV's bundled LAME), probe time and analysis time per minute of audio.
Needs ffmpeg on PATH for the comparison (Debian: apt-get install -y ffmpeg); without it, plyrd's figures alone.

    .venv/bin/python bench/transcode.py [--seconds 180] [--runs 3] [--cpu 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from audio_samples import make_audio  # noqa: E402

from plyrd.media.analysis import analyse  # noqa: E402
from plyrd.media.probe import probe  # noqa: E402
from plyrd.media.transcode import lame_library, transcode_to_mp3  # noqa: E402

GOAL_RATIO = 0.9


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def check_mp3(path: Path, seconds: float) -> str:
    info = probe(path)
    ok = info.bitrate == 320_000 and info.sample_rate == 44100 and abs(info.duration - seconds) <= 0.1
    return f"{info.bitrate // 1000}k {info.sample_rate} Hz {info.duration:.2f} s {'ok' if ok else 'WRONG'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the generated FLAC")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin everything to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})  # children (ffmpeg) inherit it
    ffmpeg = shutil.which("ffmpeg")

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = make_audio(d / "in.flac", "flac", seconds=args.seconds, kind="music", tags={"title": "Bench"})
        minutes = args.seconds / 60
        print(
            f"{args.seconds:.0f} s stereo 44.1 kHz 16-bit FLAC ({src.stat().st_size / 1e6:.1f} MB), pinned to "
            f"CPU {args.cpu}, best of {args.runs}"
        )

        def plyrd_auto() -> object:
            return transcode_to_mp3(src, d / "plyrd.mp3")

        def plyrd_pyav() -> object:
            return transcode_to_mp3(src, d / "pyav.mp3", encoder="pyav")

        def ffmpeg_cli() -> object:
            assert ffmpeg is not None
            cmd = [
                ffmpeg,
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-threads",
                "1",
                "-i",
                str(src),
                "-codec:a",
                "libmp3lame",
                "-b:a",
                "320k",
                "-ar",
                "44100",
                str(d / "ffmpeg.mp3"),
            ]
            return subprocess.run(cmd, check=True)

        # Warm up (file cache, library loading), then alternate so drift hits both sides alike.
        plyrd_auto()
        if ffmpeg:
            ffmpeg_cli()
        t_plyrd, t_ffmpeg = [], []
        for _ in range(args.runs):
            t_plyrd.append(best_of(1, plyrd_auto))
            if ffmpeg:
                t_ffmpeg.append(best_of(1, ffmpeg_cli))
        t_pyav = best_of(1, plyrd_pyav)

        encoder = "system libmp3lame via ctypes" if lame_library() else "PyAV's bundled LAME (no system libmp3lame)"
        plyrd_x = args.seconds / min(t_plyrd)
        print(
            f"  plyrd transcode_to_mp3 ({encoder}): {min(t_plyrd):.2f} s = {plyrd_x:.0f}x realtime  "
            f"[{check_mp3(d / 'plyrd.mp3', args.seconds)}]"
        )
        print(
            f"  plyrd with encoder='pyav' (fallback): {t_pyav:.2f} s = {args.seconds / t_pyav:.0f}x realtime  "
            f"[{check_mp3(d / 'pyav.mp3', args.seconds)}]"
        )
        if ffmpeg:
            version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
            ffmpeg_x = args.seconds / min(t_ffmpeg)
            print(
                f"  ffmpeg command line ({version}): {min(t_ffmpeg):.2f} s = {ffmpeg_x:.0f}x realtime  "
                f"[{check_mp3(d / 'ffmpeg.mp3', args.seconds)}]"
            )
            ratio = plyrd_x / ffmpeg_x
            verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
            print(f"  plyrd / ffmpeg speed: {ratio:.2f}x  (goal >= {GOAL_RATIO}: {verdict})")
        else:
            print("  ffmpeg not found on PATH: no comparison (Debian: apt-get install -y ffmpeg)")

        t_probe = best_of(args.runs, lambda: probe(src))
        t_an = best_of(args.runs, lambda: analyse(src))
        t_tp = best_of(args.runs, lambda: analyse(src, true_peak=True))
        t_mp3 = best_of(args.runs, lambda: analyse(d / "plyrd.mp3"))
        print(f"  probe (with the start/end decode check): {t_probe * 1000:.1f} ms")
        print(
            f"  analyse (1000 peaks + EBU R128), FLAC: {t_an / minutes * 1000:.0f} ms per minute of audio; "
            f"with true peak {t_tp / minutes * 1000:.0f} ms; MP3 source {t_mp3 / minutes * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
