"""create_app(config): the Quart application for one node."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from quart import Quart

from . import __version__
from .config import Config
from .errors import NotFound
from .node import Node
from .web import (
    account,
    admin_api,
    artists,
    auth,
    avatars,
    boundary,
    compression,
    errors,
    media,
    meta,
    pages,
    requests,
    security_headers,
    subsonic_password,
    sync,
    tracks,
    upload_stream,
    viewer,
)
from .web import admin as admin_pages
from .web import following as following_web
from .web import library as library_web
from .web import moderation as moderation_web
from .web import search as search_web
from .web import share as share_web
from .web import social as social_web
from .web import subsonic as subsonic_web
from .web import upload_tags as upload_tags_web
from .web.json_provider import OrjsonProvider
from .web.labeler import bp as labeler_bp
from .web.lists import albums_bp, lists_bp
from .web.portal_page import bp as portal_bp
from .web.pwa import bp as pwa_bp


def static_dir() -> Path:
    """static/ inside the installed package (a wheel), else the repository's top-level static/ (a checkout)."""
    packaged = Path(__file__).parent / "static"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "static"


def guard_static(app: Quart) -> None:
    """A static path whose name the file system cannot even look up (a part over 255 bytes, ENAMETOOLONG) is no such
    file: a 404 like any other, not an OSError answering 500."""
    send = app.view_functions["static"]

    async def static(filename: str) -> Any:
        try:
            return await send(filename)
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise NotFound("not found") from None
            raise

    app.view_functions["static"] = static


def create_app(config: Config, *, node: Node | None = None) -> Quart:
    node = node or Node(config)
    app = Quart(
        "plyrd",
        static_folder=str(static_dir()),
        static_url_path="/static",
        template_folder=str(Path(__file__).parent / "templates"),
    )
    app.config.update(
        PLYRD_VERSION=__version__,
        # Uploads stream through their own handler with their own limit; everything else is small JSON.
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.json = OrjsonProvider(app)  # before anything (templates' tojson) takes the provider's dumps
    app.extensions["plyrd"] = node
    guard_static(app)
    boundary.register(app)  # first: its int converter must exist before any route is added

    requests.register(app, log_requests=config["log.requests"])
    compression.register(app)
    security_headers.register(app, config)
    errors.register(app)
    viewer.register(app)
    app.register_blueprint(meta.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(tracks.bp)
    app.register_blueprint(upload_tags_web.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(social_web.bp)
    app.register_blueprint(albums_bp)
    app.register_blueprint(lists_bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(artists.bp)
    app.register_blueprint(search_web.bp)
    app.register_blueprint(subsonic_web.bp)
    app.register_blueprint(subsonic_password.bp)
    app.register_blueprint(library_web.bp)
    app.register_blueprint(following_web.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(share_web.bp)
    app.register_blueprint(avatars.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(moderation_web.bp)
    app.register_blueprint(admin_pages.bp)
    app.register_blueprint(labeler_bp)
    app.register_blueprint(pwa_bp)  # /sw.js and /offline: the installable web app
    upload_stream.install(app)

    @app.before_serving
    async def start_node() -> None:
        await node.start()

    @app.after_serving
    async def stop_node() -> None:
        await node.stop()

    return app
