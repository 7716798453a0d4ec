"""Artist profiles in plyr.fm's shapes: /artists/me, /artists/{did}, /artists/by-handle/{handle}, batch."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..catalog.plays import public_analytics
from ..catalog.profiles import get_profile, profiles, update_profile
from .bodies import json_body, json_value
from .context import node
from .viewer import current_audience, require_viewer

bp = Blueprint("artists", __name__)


@bp.get("/artists/me")
async def me() -> Response:
    return jsonify(await get_profile(node().db, require_viewer().did))


@bp.route("/artists/me", methods=["PUT", "PATCH"])
async def update_me() -> Response:
    viewer = require_viewer()
    return jsonify(await update_profile(node().db, viewer.did, await json_body()))


@bp.post("/artists/")
async def upsert() -> Response:
    viewer = require_viewer()
    return jsonify(await update_profile(node().db, viewer.did, await json_body()))


@bp.post("/artists/batch")
async def batch() -> Response:
    """plyr.fm's body (a JSON array of DIDs) and answer (DID -> profile, unknown DIDs left out)."""
    return jsonify(await profiles(node().db, await json_value()))


@bp.get("/artists/by-handle/<handle>")
async def by_handle(handle: str) -> Response:
    return jsonify(await get_profile(node().db, handle))


@bp.get("/artists/<did>")
async def by_did(did: str) -> Response:
    return jsonify(await get_profile(node().db, did))


@bp.get("/artists/<did>/analytics")
async def analytics(did: str) -> Response:
    """plyr.fm's public analytics of any artist (zeros for one the node does not know)."""
    return jsonify(await public_analytics(node().db, did, current_audience()))
