"""Following and discovery (plyrd.network.follows): the artists you follow on Bluesky who have tracks here, and the
network feed (other nodes' tracks from them, and those the node's users liked), as JSON and as the /network page."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..catalog import feeds
from ..catalog.social import tracks_json
from ..network.follows import followed_artists
from .context import node
from .pages import FEED_PAGE, page_tracks, render
from .viewer import current_audience, current_viewer, require_viewer

bp = Blueprint("following", __name__)


@bp.get("/following/artists")
@bp.get("/discover/network")  # plyr.fm's path for the same answer
async def artists_you_follow() -> Response:
    """plyr.fm's NetworkArtistResponse list: [{did, handle, display_name, avatar_url, track_count}], the longest
    followed first. Signed-in only (whose follows?)."""
    viewer = require_viewer()
    return jsonify(await followed_artists(node().db, viewer.did, current_audience()))


@bp.get("/feeds/network")
async def network_feed() -> Response:
    """The network feed as GET /tracks/ answers its pages: {tracks, next_cursor, has_more}; ?cursor=, ?limit=
    (clamped to 1-100)."""
    n = node()
    args = request.args
    page = await feeds.network(n.db, audience=current_audience(), cursor=args.get("cursor") or None,
                               limit=feeds.clamp_limit(args.get("limit"), default=feeds.DEFAULT_LIMIT,
                                                       maximum=feeds.MAX_LIMIT))
    viewer = current_viewer()
    tracks = await tracks_json(n.db, page.rows, viewer.did if viewer else None, n.config.public_url)
    return jsonify({"tracks": tracks, "next_cursor": page.next_cursor, "has_more": page.next_cursor is not None})


@bp.get("/network")
async def network_page() -> Response:
    """The network feed's page, with the artists the viewer follows above it (signed in)."""
    n = node()
    audience = current_audience()
    cursor = request.args.get("cursor") or None
    page = await feeds.network(n.db, audience=audience, cursor=cursor, limit=FEED_PAGE)
    viewer = current_viewer()
    artists = None
    if viewer is not None and not cursor:
        artists = await followed_artists(n.db, viewer.did, audience)
    return await render("network.html", tracks=await page_tracks(page.rows), next_cursor=page.next_cursor,
                        cursor=cursor, artists=artists)
