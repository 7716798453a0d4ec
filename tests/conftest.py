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
from typing import Any

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


CHROMIUM = Path("/usr/bin/chromium")
# Flags from the machine notes: no sandbox (root), no GPU, and none of Chromium's own network chatter.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-features=MediaRouter", "--mute-audio"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright: one per test module (the sync API must not outlive the
    module into the suite's asyncio tests). Missing Chromium fails with the command that fixes it, never a skip."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with "
                    "`apt-get update && apt-get install -y chromium` (the README's test command does this as root).",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def node_env(pds: Any, **extra: str) -> dict[str, str]:
    """The environment of a node that resolves identities through the test PDS and its PLC (both on loopback)."""
    return clean_env(
        PLYRD_ATPROTO_PLC_URL=pds.plc_url,
        PLYRD_ATPROTO_HANDLE_RESOLVER_URL=pds.pds_url,
        PLYRD_ATPROTO_ALLOW_PRIVATE_ADDRESSES="true",
        **extra,
    )


def node_fixture(name: str, **extra: str) -> Any:
    """A module-scoped `node` fixture: one node process for the module's tests, talking to the session's PDS.

        node = node_fixture("pages")
    """

    @pytest.fixture(scope="module")
    def node(pds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
        served = start_node([], cwd=tmp_path_factory.mktemp(name), env=node_env(pds, **extra))
        yield served
        served.stop()

    return node


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Any]:
    """A migrated plyrd.db of its own, opened as the node opens it (one writer, readers)."""
    from plyrd.db import Database

    database = Database(tmp_path / "plyrd.db")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedNode]:
    node = start_node([], cwd=tmp_path)
    yield node
    if node.proc.poll() is None:
        node.stop()
