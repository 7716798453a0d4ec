"""The signed-in user's Subsonic password (plyrd.subsonic.passwords), from settings:

    GET    /auth/subsonic-password   whether there is one, when it was made and last used, and what to type in an app
    POST   /auth/subsonic-password   make one (or a new one, ending the old): answers the password, once
    DELETE /auth/subsonic-password   revoke it

Only a browser session may make or revoke one (as with developer tokens): a developer token must not be able to
mint itself a password. Cookie requests carry X-CSRF-Token (plyrd.web.viewer).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify

from ..catalog.social import iso
from ..subsonic.passwords import SubsonicPasswords
from .context import node
from .viewer import Viewer, require_viewer

bp = Blueprint("subsonic_password", __name__)

NO_STORE = {"Cache-Control": "no-store"}


def _passwords() -> SubsonicPasswords:
    n = node()
    return SubsonicPasswords(n.db, n.auth.sealer)


def _connect(viewer: Viewer) -> dict[str, Any]:
    """What to type in a Subsonic app: the server address and the username (the handle; the DID works too)."""
    return {"server": node().config.public_url, "username": viewer.session.handle or viewer.did}


@bp.get("/auth/subsonic-password")
async def status() -> tuple[Response, int, dict[str, str]]:
    viewer = require_viewer()
    stored = await _passwords().stored(viewer.did)
    return jsonify({
        **_connect(viewer),
        "exists": stored is not None,
        "created_at": iso(stored.created_at) if stored else None,
        "last_used_at": iso(stored.last_used_at) if stored else None,
    }), 200, NO_STORE


@bp.post("/auth/subsonic-password")
async def create() -> tuple[Response, int, dict[str, str]]:
    viewer = require_viewer(browser=True)
    password = await _passwords().create(viewer.did)
    return jsonify({**_connect(viewer), "password": password}), 201, NO_STORE


@bp.delete("/auth/subsonic-password")
async def revoke() -> tuple[str, int]:
    viewer = require_viewer(browser=True)
    await _passwords().revoke(viewer.did)
    return "", 204
