"""The artist portal (GET /portal): profile, own tracks (unlisted and processing ones too), albums, export and
account deletion on one page. Every change goes through the JSON API from static/js/pages/portal.js; this handler
only reads what the page shows."""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request

from ..catalog import albums, feeds
from ..catalog.profiles import get_profile
from .bodies import query_int
from .context import node
from .pages import login_redirect, page_tracks, render
from .viewer import current_audience, current_viewer

bp = Blueprint("portal_page", __name__)

PAGE = feeds.MAX_LIMIT  # tracks per page of the list; ?offset= pages through the rest


@bp.get("/portal")
async def portal() -> Response:
    viewer = current_viewer()
    if viewer is None:
        return login_redirect()
    n = node()
    q = (request.args.get("q") or "").strip()
    offset = query_int("offset", default=0)
    profile = await get_profile(n.db, viewer.did)
    rows = await feeds.own(n.db, current_audience(), q=q or None, sort="recent", limit=PAGE + 1, offset=offset)
    shown = rows[:PAGE]  # one extra row read only to know whether an "older" page exists
    tracks = await page_tracks(shown)
    await _with_lyrics(tracks)
    own_albums = await albums.list_artist_albums(n.db, viewer.did, n.config.public_url, viewer_did=viewer.did)
    cfg = n.config
    return await render("portal.html", profile=profile, tracks=tracks, albums=own_albums, q=q, offset=offset,
                        page_size=PAGE, has_older=len(rows) > PAGE, max_image_mb=cfg["media.max_image_mb"])


async def _with_lyrics(tracks: list[dict[str, Any]]) -> None:
    """Each track's lyrics for its edit form: the node's own field, not part of the track JSON."""
    if not tracks:
        return
    ids = json.dumps([t["id"] for t in tracks])
    rows = await node().db.fetchall("SELECT id, lyrics FROM tracks WHERE id IN (SELECT value FROM json_each(?))",
                                    (ids,))
    found = {r["id"]: r["lyrics"] for r in rows}
    for t in tracks:
        t["lyrics"] = found.get(t["id"])
