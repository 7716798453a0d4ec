"""Serving the app with hypercorn in this process, with a graceful stop on SIGTERM and SIGINT.

On a signal hypercorn stops accepting connections, lets in-flight requests finish (up to
server.graceful_timeout), then runs the app's shutdown: workers stop, the database checkpoints and closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from . import __version__
from .config import Config

log = logging.getLogger("plyrd.server")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a busy port fails fast and port 0 gets a real number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def hypercorn_config(config: Config, sock: socket.socket) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the descriptor from here on
    hc.graceful_timeout = config["server.graceful_timeout"]
    # Without a read timeout a client that stalls mid-request holds its connection forever.
    hc.read_timeout = int(config["server.read_timeout"])
    hc.accesslog = None  # plyrd logs requests itself, with request ids
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.include_server_header = False
    hc.startup_timeout = 120  # migrations on a big database on an SD card can take a while
    return hc


async def serve(config: Config, app: Quart | None = None) -> None:
    from .app import create_app

    sock = bind_socket(config.host, config.port)
    port = sock.getsockname()[1]
    if config.port == 0:
        config = config.replace(server__port=port)
    app = app or create_app(config)
    node = app.extensions["plyrd"]
    host = f"[{config.host}]" if ":" in config.host else config.host

    @app.before_serving
    async def announce() -> None:
        print(
            f"plyrd {__version__} listening on http://{host}:{port}"
            f" (public url {config.public_url}); data in {config.data_dir}",
            file=sys.stderr,
            flush=True,
        )

    asgi: Any = app
    if config["server.behind_proxy"]:
        from hypercorn.middleware import ProxyFixMiddleware

        asgi = ProxyFixMiddleware(app, mode="legacy", trusted_hops=1)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def stopping() -> None:
        await stop.wait()
        node.draining()  # subscribeLabels streams never end by themselves; hypercorn waits for open connections

    try:
        await hypercorn_serve(asgi, hypercorn_config(config, sock), shutdown_trigger=stopping)
    finally:
        await node.stop()  # a no-op after a clean shutdown; closes the database if serving failed half-way
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(config: Config, app: Quart | None = None) -> None:
    asyncio.run(serve(config, app))
