"""Shared fixtures: temporary data directories, an in-process app, a real `plyrd serve` subprocess, the real PDS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["pds_harness"]

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any PLYRD_* setting that could leak into a node under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLYRD_")}
    env.update(extra)
    return env


@pytest.fixture
def config(tmp_path: Path):
    from plyrd.config import load_config

    return load_config(env={}, overrides={"storage.data_dir": str(tmp_path / "data"), "server.port": free_port()})


@pytest.fixture
async def app(config) -> AsyncIterator:
    """The Quart app with its node started (before_serving ran) and stopped afterwards."""
    from plyrd.app import create_app

    application = create_app(config)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class ServedNode:
    url: str
    data: Path
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_node(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, port: int | None = None,
               wait: bool = True, log_path: Path | None = None, timeout: float = 20) -> ServedNode:
    """Run `python -m plyrd serve ...` as a separate process and wait until /health answers."""
    port = port or free_port()
    log_path = log_path or cwd / f"node-{port}.log"
    out = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "plyrd", "serve", "--port", str(port), *args],
        cwd=cwd, env=env or clean_env(), stdout=out, stderr=subprocess.STDOUT,
    )
    node = ServedNode(f"http://127.0.0.1:{port}", cwd / "plyrd-data", proc, log_path)
    if wait:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"node exited with {proc.returncode}:\n{node.log()}")
            try:
                if httpx.get(node.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"node did not answer /health within {timeout} s:\n{node.log()}")
            time.sleep(0.05)
    return node


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedNode]:
    node = start_node([], cwd=tmp_path)
    yield node
    if node.proc.poll() is None:
        node.stop()
