"""The app in process: health, error shapes, request ids and logging, static files."""

from __future__ import annotations

import logging

import pytest
from quart import Blueprint

from plyrd import __version__, errors
from plyrd.app import create_app


async def test_health_checks_the_database(client, app) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert await r.get_json() == {"status": "ok", "version": __version__}

    await app.extensions["plyrd"].db.close()  # the database goes away under a running app
    r = await client.get("/health")
    assert r.status_code == 503
    body = await r.get_json()
    assert body["status"] == "error" and body["detail"] == "database unavailable"


async def test_unknown_route_and_wrong_method_are_json(client) -> None:
    r = await client.get("/no/such/page")
    assert r.status_code == 404
    assert await r.get_json() == {"detail": "not found"}
    r = await client.delete("/health")
    assert r.status_code == 405
    assert await r.get_json() == {"detail": "method not allowed"}
    assert "GET" in r.headers["Allow"]


@pytest.fixture
async def failing_app(config):
    """The real app plus routes that raise, standing in for handlers that fail."""
    bp = Blueprint("failing", __name__)

    @bp.get("/raise/<kind>")
    async def boom(kind: str) -> str:
        if kind == "crash":
            raise ZeroDivisionError("secret internals")
        raise {"missing": errors.NotFound("track 7 not found"), "conflict": errors.Conflict("stale queue"),
               "upstream": errors.UpstreamError("the PDS at pds.test is not answering"),
               "large": errors.TooLarge("file over 1536 MB")}[kind]

    application = create_app(config)
    application.register_blueprint(bp)
    async with application.test_app():
        yield application


@pytest.mark.parametrize(("kind", "status", "detail"), [
    ("missing", 404, "track 7 not found"),
    ("conflict", 409, "stale queue"),
    ("upstream", 502, "the PDS at pds.test is not answering"),
    ("large", 413, "file over 1536 MB"),
])
async def test_domain_errors_map_to_status_and_detail(failing_app, kind: str, status: int, detail: str) -> None:
    r = await failing_app.test_client().get(f"/raise/{kind}")
    assert r.status_code == status
    assert await r.get_json() == {"detail": detail}


async def test_unexpected_error_is_500_with_a_logged_request_id(failing_app, caplog) -> None:
    caplog.set_level(logging.INFO)
    r = await failing_app.test_client().get("/raise/crash")
    assert r.status_code == 500
    body = await r.get_json()
    request_id = body["request_id"]
    assert r.headers["X-Request-ID"] == request_id
    assert request_id in body["detail"]
    assert "secret internals" not in str(body) and "Traceback" not in str(body)
    crash = [rec for rec in caplog.records if rec.name == "plyrd.web"]
    assert crash and crash[0].fields["request_id"] == request_id and crash[0].exc_info
    access = [rec for rec in caplog.records if rec.name == "plyrd.access"]
    assert access[-1].fields["status"] == 500 and access[-1].fields["request_id"] == request_id


async def test_request_log_line_and_request_id(client, caplog) -> None:
    caplog.set_level(logging.INFO)
    r = await client.get("/health", headers={"X-Request-ID": "proxy-id-12345"})
    assert r.headers["X-Request-ID"] == "proxy-id-12345"
    line = [rec for rec in caplog.records if rec.name == "plyrd.access"][-1]
    assert line.fields["method"] == "GET" and line.fields["path"] == "/health" and line.fields["status"] == 200
    assert line.fields["duration_ms"] >= 0 and line.fields["request_id"] == "proxy-id-12345"
    # an id that is not id-shaped is replaced, so logs cannot be forged through the header
    r = await client.get("/health", headers={"X-Request-ID": "x y <z>"})
    assert r.headers["X-Request-ID"] != "x y <z>" and len(r.headers["X-Request-ID"]) == 16


async def test_request_logging_can_be_turned_off(config, caplog) -> None:
    caplog.set_level(logging.INFO)
    application = create_app(config.replace(log__requests=False))
    async with application.test_app():
        await application.test_client().get("/health")
    assert not [rec for rec in caplog.records if rec.name == "plyrd.access"]


async def test_static_files_and_front_page(client) -> None:
    r = await client.get("/static/css/base.css")
    assert r.status_code == 200 and "--accent" in (await r.get_data(as_text=True))
    r = await client.get("/")
    assert r.status_code == 200 and "plyrd" in (await r.get_data(as_text=True))
    # a name longer than the file system's limit is simply not there
    r = await client.get("/static/" + "a" * 5000)
    assert r.status_code == 404 and (await r.get_json()) == {"detail": "not found"}


async def test_public_config(client, config) -> None:
    body = await (await client.get("/config")).get_json()
    assert body["max_upload_size_mb"] == 1536
    assert body["public_url"] == config.public_url


def test_a_started_node_has_not_loaded_the_media_stack(tmp_path) -> None:
    """PyAV, numpy and Pillow cost about 35 MB; an idle node must not load them (bench/startup.py: < 80 MB)."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from plyrd.app import create_app\n"
        "from plyrd.config import load_config\n"
        f"app = create_app(load_config(env={{}}, overrides={{'storage.data_dir': {str(tmp_path)!r}}}))\n"
        "async def main():\n"
        "    async with app.test_app():\n"
        "        assert (await app.test_client().get('/health')).status_code == 200\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('av', 'numpy', 'PIL') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
