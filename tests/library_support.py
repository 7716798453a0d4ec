"""Scanning a node's music folder from a test: `plyrd library scan` beside the running node, as its admin would
run it. It waits for a scan the node is running (the start-up scan), so once it returns every file is in."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from conftest import ServedNode, clean_env


def scan_library(node: ServedNode, *, tracks: int) -> None:
    """Scan the node's folders; every file must have become a track (`tracks` of them), none unreadable."""
    done = subprocess.run([sys.executable, "-m", "plyrd", "library", "scan", "--data", str(node.data)],
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and " 0 unreadable" in done.stdout, (done.stdout, done.stderr)
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        found = conn.execute("SELECT count(*) FROM tracks WHERE source = 'library'").fetchone()[0]
    finally:
        conn.close()
    assert found == tracks, (found, done.stdout)
