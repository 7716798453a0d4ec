"""Cold start to first /health answer, and idle memory, of a served node.

Goals (issue 2, to keep as features grow): start-to-/health under 1.5 s, idle RSS under 80 MB.
Each run starts `python -m plyrd serve` on a fresh, empty data directory (migrations, secrets and all),
polls /health every 10 ms, then lets the node idle for 2 s after 20 requests and reads VmRSS from /proc.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, rss_mb

GOAL_START_S = 1.5
GOAL_RSS_MB = 80.0




def one_run() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/health"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "plyrd", "serve", "--port", str(port), "--data", f"{tmp}/data"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError("node exited during start-up") from None
                    time.sleep(0.01)
            start_s = time.perf_counter() - started
            for _ in range(20):
                urllib.request.urlopen(url, timeout=1).read()
            time.sleep(2)
            return start_s, rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    one_run()  # warm the OS file cache so "cold" means a cold process, not a cold disk
    results = [one_run() for _ in range(args.runs)]
    starts = [r[0] for r in results]
    rss = [r[1] for r in results]
    print(f"plyrd startup, {args.runs} runs on an empty data directory")
    print(f"  start to /health: median {statistics.median(starts):.3f} s, max {max(starts):.3f} s"
          f"  (goal < {GOAL_START_S} s: {'met' if max(starts) < GOAL_START_S else 'MISSED'})")
    print(f"  idle RSS:         median {statistics.median(rss):.1f} MB, max {max(rss):.1f} MB"
          f"  (goal < {GOAL_RSS_MB} MB: {'met' if max(rss) < GOAL_RSS_MB else 'MISSED'})")


if __name__ == "__main__":
    main()
