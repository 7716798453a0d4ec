"""plyr.fm's /moderation routes: a listener's report (plyrd.moderation.reports) and the node's flagged artwork.

`POST /moderation/reports` takes plyr.fm's body `{target_type, target_id, reason, description?, target_name?,
target_url?}` from a signed-in person, 10 an hour each (plyr.fm's rate). The subject must be one the reporter may
see, so a report answers 404 for what is hidden from them exactly as opening it would: it cannot probe.

`GET /moderation/sensitive-images` is plyr.fm's `{image_ids, urls}`: the artwork the node's admins flagged (a
sensitive value in a track's operator_labels), for clients that blur by this list. Image ids are the blob names
after /images/; urls are the artwork URLs the track JSON gives.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response, jsonify

from ..catalog.labels import SENSITIVE_LABELS
from ..catalog.tracks import TRACK_SELECT, Audience, Where, artwork_urls, visible
from ..db import Database
from ..moderation import reports
from .bodies import json_body
from .context import node
from .limits import limited
from .viewer import current_audience, current_viewer, require_viewer

bp = Blueprint("moderation", __name__)

# What an anonymous caller gets is the same for everyone, so shared caches may keep it a little (plyr.fm's header);
# a signed-in caller's list may hold what only they see (library tracks), so it stays in their browser.
PUBLIC_CACHE = "public, s-maxage=300, max-age=60"
PRIVATE_CACHE = "private, max-age=60"
MAX_FLAGGED = 10_000


@bp.post("/moderation/reports")
@limited("reports", 10, per=3600, what="reports")  # plyr.fm's 10/hour; refused reports count too (no probing)
async def file_report() -> Response:
    viewer = require_viewer()
    n = node()
    report = reports.parse_report(await json_body())
    await reports.check_target(n.db, report, current_audience())
    received = await reports.file_report(n.db, viewer.did, report)
    response = jsonify(received)
    response.status_code = 201
    return response


@bp.get("/moderation/sensitive-images")
@limited("sensitive-images", 120, what="sensitive image lists")
async def sensitive_images() -> Response:
    n = node()
    response = jsonify(await flagged_artwork(n.db, current_audience(), n.config.public_url))
    response.headers["Cache-Control"] = PRIVATE_CACHE if current_viewer() else PUBLIC_CACHE
    response.headers["Vary"] = "Cookie, Authorization"
    return response


async def flagged_artwork(db: Database, audience: Audience, public_url: str) -> dict[str, list[str]]:
    """The artwork of tracks `audience` may see whose operator labels make it sensitive (the artist's own content
    notice is in the track JSON's `sensitive` already; plyr.fm's list is the operator's flags)."""
    flagged = Where.of(
        "t.operator_labels != '[]' AND EXISTS (SELECT 1 FROM json_each(t.operator_labels) l"
        " WHERE l.value IN (SELECT value FROM json_each(?)))", json.dumps(sorted(SENSITIVE_LABELS)))
    where = flagged & visible(audience)
    rows = await db.fetchall(f"{TRACK_SELECT} WHERE {where.sql} ORDER BY t.id LIMIT ?", (*where.params, MAX_FLAGGED))
    ids: dict[str, None] = {}  # ordered sets
    urls: dict[str, None] = {}
    for row in rows:
        for sha in (row["image_sha"], row["display_sha"], row["thumb_sha"]):
            if sha:
                ids[sha] = None
        for url in artwork_urls(row, public_url).values():
            if url:
                urls[url] = None
    return {"image_ids": list(ids), "urls": list(urls)}
