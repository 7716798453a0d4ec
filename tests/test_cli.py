"""The `plyrd` command as a user runs it: real processes, real files, real signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
from conftest import clean_env, free_port, start_node

from plyrd import __version__
from plyrd.config import read_toml
from plyrd.db import latest_version


def plyrd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plyrd", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_version_and_help(tmp_path: Path) -> None:
    r = plyrd("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"plyrd {__version__}"
    r = plyrd("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("serve", "init", "migrate", "backup", "PLYRD_<SECTION>_<KEY>", "plyrd.db"):
        assert word in r.stdout
    r = plyrd("backup", "--help", cwd=tmp_path)
    assert "online backup API" in r.stdout


def test_serve_on_an_empty_directory(served) -> None:
    r = httpx.get(served.url + "/health")
    assert r.json() == {"status": "ok", "version": __version__}
    assert (served.data / "plyrd.db").is_file() and (served.data / "blobs").is_dir()
    assert stat.S_IMODE((served.data / "secrets.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE(served.data.stat().st_mode) == 0o700
    log = served.log()
    assert f"listening on {served.url.removeprefix('http://')}" in log.replace("http://", "")
    assert str(served.data) in log
    assert "path=/health status=200" in log


def test_init_then_serve_with_that_config(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "music"
    r = plyrd("init", "--data", str(data), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg_path = data / "config.toml"
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    text = cfg_path.read_text()
    assert "# Who may upload" in text  # commented, not a bare dump
    values = read_toml(cfg_path)
    for name in ("cookie_key", "token_key", "oauth_client_key", "labeler_key"):
        assert values[f"secrets.{name}"]
    assert values["storage.data_dir"] == str(data)

    # a second init must not destroy the secrets
    r = plyrd("init", "--data", str(data), cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr and cfg_path.read_text() == text

    cfg_path.write_text(text.replace("port = 8000", f"port = {port}"))
    proc = subprocess.Popen([sys.executable, "-m", "plyrd", "serve", "--config", str(cfg_path)], cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise AssertionError("node did not start with the init config")
        # secrets came from config.toml, so none were generated beside it
        assert not (data / "secrets.toml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_broken_config_stops_startup_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[server]\nprot = 8000\n")
    r = plyrd("serve", "--config", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"plyrd: {bad}: unknown key server.prot (known in [server]: " \
        "host, port, public_url, behind_proxy, hsts, graceful_timeout, read_timeout)"
    assert "Traceback" not in r.stderr

    r = plyrd("serve", cwd=tmp_path, env=clean_env(PLYRD_LOG_LEVEL="chatty"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "log.level" in r.stderr


def test_port_in_use_is_a_clear_error(served, tmp_path: Path) -> None:
    port = served.url.rsplit(":", 1)[1]
    r = plyrd("serve", "--port", port, "--data", str(tmp_path / "other"), cwd=tmp_path)
    assert r.returncode == 2
    assert "another node running on that port" in r.stderr and "Traceback" not in r.stderr


SLOW_NODE = textwrap.dedent("""
    import asyncio, sys
    from quart import Blueprint
    from plyrd.app import create_app
    from plyrd.config import load_config
    from plyrd.logs import setup_logging
    from plyrd.server import run

    bp = Blueprint("slow", __name__)

    @bp.get("/slow")
    async def slow():
        await asyncio.sleep(1.5)
        return {"finished": True}

    config = load_config(overrides={"storage.data_dir": sys.argv[1], "server.port": int(sys.argv[2])})
    setup_logging()
    app = create_app(config)
    app.register_blueprint(bp)

    async def ticking(stop):
        while not stop.is_set():
            await asyncio.sleep(0.05)
        print("worker ticking stopped cleanly", file=sys.stderr, flush=True)

    @app.before_serving
    async def extra_worker():
        app.extensions["plyrd"].workers.start("ticking", ticking)

    run(config, app)
""")


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "slow_node.py"
    script.write_text(SLOW_NODE)
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(port)], cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)

    result: dict[str, object] = {}

    def call() -> None:
        result["response"] = httpx.get(url + "/slow", timeout=10)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)  # the request is now in flight
    proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert proc.wait(20) == 0
    output = proc.stdout.read() if proc.stdout else ""
    response = result["response"]
    assert isinstance(response, httpx.Response) and response.json() == {"finished": True}
    assert "worker ticking stopped cleanly" in output
    assert "node stopped" in output
    # the database was checkpointed and closed: no WAL content left behind
    wal = data / "plyrd.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    conn = sqlite3.connect(data / "plyrd.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_sigint_stops_the_node_too(served) -> None:
    assert served.stop(signal.SIGINT) == 0
    assert "node stopped" in served.log()


def test_migrate_command(tmp_path: Path) -> None:
    r = plyrd("migrate", "--data", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 0 and f"upgraded from version 0 to {latest_version()}" in r.stdout
    r = plyrd("migrate", "--data", str(tmp_path / "d"), cwd=tmp_path)
    assert r.returncode == 0 and "up to date" in r.stdout


def test_backup_while_serving(tmp_path: Path) -> None:
    node = start_node([], cwd=tmp_path)
    try:
        # blobs as the store keeps them: sharded by hash
        blob = node.data / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
        blob.parent.mkdir(parents=True)
        blob.write_bytes(os.urandom(100_000))
        # a second writer keeps writing while the backup runs
        stop = threading.Event()

        def keep_writing() -> None:
            conn = sqlite3.connect(node.data / "plyrd.db", timeout=10, isolation_level=None)
            i = 0
            while not stop.is_set():
                conn.execute("INSERT INTO users(did, handle) VALUES (?, ?)", (f"did:plc:w{i}", f"w{i}.test"))
                i += 1
            conn.close()

        writer = threading.Thread(target=keep_writing)
        writer.start()
        time.sleep(0.2)
        dest = tmp_path / "backup"
        r = plyrd("backup", str(dest), "--data", str(node.data), cwd=tmp_path)
        stop.set()
        writer.join()
        assert r.returncode == 0, r.stderr
        assert "1 new blobs" in r.stdout
        conn = sqlite3.connect(dest / "plyrd.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
        conn.close()
        assert (dest / "blobs" / blob.relative_to(node.data / "blobs")).read_bytes() == blob.read_bytes()
        assert stat.S_IMODE((dest / "secrets.toml").stat().st_mode) == 0o600

        # again into the same place: only what is new is copied
        r = plyrd("backup", str(dest), "--data", str(node.data), cwd=tmp_path)
        assert r.returncode == 0 and "0 new blobs" in r.stdout and "1 already there" in r.stdout

        # the copy is a working data directory
        restored = start_node(["--data", str(dest)], cwd=tmp_path)
        assert httpx.get(restored.url + "/health").json()["status"] == "ok"
        assert restored.stop() == 0
    finally:
        node.stop()

    r = plyrd("backup", str(node.data / "inside"), "--data", str(node.data), cwd=tmp_path)
    assert r.returncode == 2 and "outside the data directory" in r.stderr
    r = plyrd("backup", str(tmp_path / "b2"), "--data", str(tmp_path / "nothing-here"), cwd=tmp_path)
    assert r.returncode == 2 and "no database" in r.stderr
