"""The Containerfile cannot be built here (no container engine); check what it promises instead."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_containerfile_is_non_root_with_volume_and_healthcheck() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]', text, re.M)
    assert "PLYRD_DATA=/data" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    assert re.search(r'^CMD \["plyrd", "serve"\]', text, re.M)
    # nothing architecture-specific
    assert not re.search(r"amd64|x86_64|aarch64|arm64", text.split("FROM", 1)[1])
    # everything it copies exists
    for src in re.findall(r"^COPY (.+) \./", text, re.M):
        for name in src.split():
            assert (ROOT / name).exists(), name
