"""Artist profiles in plyr.fm's shapes: /artists/me, /artists/{did}, /artists/by-handle/{handle}, batch."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..catalog.profiles import get_profile, profiles, update_profile
from .bodies import json_body
from .context import node
from .viewer import require_viewer

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
    body = await json_body()
    return jsonify({"artists": await profiles(node().db, body.get("dids"))})


@bp.get("/artists/by-handle/<handle>")
async def by_handle(handle: str) -> Response:
    return jsonify(await get_profile(node().db, handle))


@bp.get("/artists/<did>")
async def by_did(did: str) -> Response:
    return jsonify(await get_profile(node().db, did))
