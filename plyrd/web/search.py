"""Search endpoints: GET /search/ (plyr.fm's unified search) and GET /tracks/{id}/similar ("more like this")."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from .context import node
from .viewer import current_audience

bp = Blueprint("search", __name__)


@bp.get("/search/")
async def search() -> Response:
    """?q= (2-100 characters, searched literally) &type=tracks,artists,albums,tags,playlists &limit= (1-50)."""
    args = request.args
    return jsonify(await node().search.search(args.get("q"), args.get("type"), args.get("limit"),
                                              current_audience()))


@bp.get("/tracks/<int:track_id>/similar")
async def similar(track_id: int) -> Response:
    return jsonify(await node().search.similar(track_id, request.args.get("limit"), current_audience()))
