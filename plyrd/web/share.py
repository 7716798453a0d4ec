"""POST /tracks/<id>/share: post a track to Bluesky from the listener's own account (plyrd.network.share).

A session signed in with OAuth holds only the scopes it was granted; one without permission to post gets a 403 with
`needs_permission` and, from a browser session, `auth_url`: an authorization at their PDS asking for what the
session holds plus only that permission, which comes back to the track page (where the share is completed).
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..atproto.oauth import SHARE_SCOPES
from ..network import share
from .bodies import json_body
from .context import node
from .errors import error_response
from .limits import client_address, limited
from .viewer import current_audience, require_viewer

bp = Blueprint("share", __name__)

NEEDS_PERMISSION = "needs_permission"


@bp.post("/tracks/<int:track_id>/share")
@limited("share", 10, what="posts to bluesky")  # each is two writes at the person's PDS, which limits them too
async def share_track(track_id: int) -> Response:
    viewer = require_viewer()
    n = node()
    body = await json_body(optional=True)
    draft = await share.prepare(n.db, n.blobs, track_id, current_audience(), body.get("text"), n.config.public_url)
    session = viewer.session
    if not session.share_granted:
        if session.kind != "browser":
            return error_response(403, "this developer token may not post to bluesky: sign in in a browser, share "
                                       "once to grant it, then make a new token", code=NEEDS_PERMISSION)
        back = f"/track/{track_id}?share=granted"  # the track page makes the post once back (static/js/pages/track.js)
        url = await n.auth.start_scope_upgrade(session, adding=SHARE_SCOPES, return_to=back, client=client_address())
        return error_response(403, "posting to bluesky needs one more permission from your account: approve it at "
                                   "your account's server and come back", code=NEEDS_PERMISSION, auth_url=url)
    shared = await share.post(await n.auth.pds_session(session), draft)
    response = jsonify(shared.to_json())
    response.status_code = 201
    return response
