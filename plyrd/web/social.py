"""The social layer's endpoints in plyr.fm's shapes: likes, timed comments, play counting, analytics and stats,
now playing, preferences and the shared queue. Thin: parse, authorize, call plyrd.catalog, shape the answer."""

from __future__ import annotations

import re
import secrets
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request
from quart.blueprints import BlueprintSetupState

from ..catalog import comments, likes, now_playing, plays, preferences, queue
from ..catalog.social import find_person
from . import conditional
from .bodies import json_body
from .context import node
from .limits import limited
from .viewer import anonymous_cross_site, current_audience, current_viewer, require_viewer

bp = Blueprint("social", __name__)

PLAY_COOKIE = "plyr_play_id"
PLAY_COOKIE_DAYS = 180
_PLAY_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
NOW_PLAYING_KEY = "plyrd.now_playing"
# plyr.fm's limit on reporting and clearing (the player reports every 10 s, so 6 a minute in normal use).
NOW_PLAYING_RATE = 120


@bp.record_once
def _attach_now_playing(state: BlueprintSetupState) -> None:
    # Memory only, one per app (not per process), so in-process test apps do not share it.
    state.app.extensions[NOW_PLAYING_KEY] = now_playing.NowPlaying()


def _now_playing() -> now_playing.NowPlaying:
    return current_app.extensions[NOW_PLAYING_KEY]


def _public_url() -> str:
    return node().config.public_url


# ---- likes


@bp.post("/tracks/<int:track_id>/like")
async def like(track_id: int) -> Response:
    viewer = require_viewer()
    return jsonify(await likes.like(node().db, did=viewer.did, track_id=track_id, audience=current_audience()))


@bp.delete("/tracks/<int:track_id>/like")
async def unlike(track_id: int) -> Response:
    viewer = require_viewer()
    return jsonify(await likes.unlike(node().db, did=viewer.did, track_id=track_id, audience=current_audience()))


@bp.get("/tracks/<int:track_id>/likes")
async def likers(track_id: int) -> Response:
    return jsonify(await likes.likers(node().db, track_id, current_audience()))


@bp.get("/tracks/liked")
async def liked() -> Response:
    viewer = require_viewer()
    tracks = await likes.liked_tracks(node().db, viewer.did, audience=current_audience(), public_url=_public_url())
    return jsonify({"tracks": tracks})


@bp.put("/lists/liked/reorder")
async def reorder_liked() -> Response:
    viewer = require_viewer()
    body = await json_body()
    items = body.get("items", body.get("track_ids"))
    return jsonify(await likes.reorder(node().db, viewer.did, items, current_audience()))


@bp.get("/users/<handle>/likes")
async def user_likes(handle: str) -> Response:
    return jsonify(await likes.public_likes(node().db, handle, audience=current_audience(), public_url=_public_url()))


# ---- timed comments


@bp.get("/tracks/<int:track_id>/comments")
async def track_comments(track_id: int) -> Response:
    return jsonify(await comments.list_comments(node().db, track_id, current_audience()))


@bp.post("/tracks/<int:track_id>/comments")
async def add_comment(track_id: int) -> Response:
    viewer = require_viewer()
    body = await json_body()
    return jsonify(await comments.create(node().db, did=viewer.did, track_id=track_id, text=body.get("text"),
                                         timestamp_ms=body.get("timestamp_ms"), audience=current_audience()))


@bp.patch("/tracks/comments/<int:comment_id>")
async def edit_comment(comment_id: int) -> Response:
    viewer = require_viewer()
    body = await json_body()
    return jsonify(await comments.edit(node().db, did=viewer.did, comment_id=comment_id, text=body.get("text")))


@bp.delete("/tracks/comments/<int:comment_id>")
async def delete_comment(comment_id: int) -> Response:
    viewer = require_viewer()
    await comments.delete(node().db, did=viewer.did, comment_id=comment_id)
    return jsonify({"deleted": True})


# ---- plays, analytics, stats


@bp.post("/tracks/<int:track_id>/play")
@anonymous_cross_site  # embeds report plays from any page, sandboxed or not; never as the cookie's owner
async def play(track_id: int) -> Response:
    """Counted per listener: the signed-in DID, else an anonymous id kept in an HttpOnly cookie (set when missing)."""
    body = await json_body(optional=True, text_plain=True)  # the embeds' beacon is a simple text/plain request
    viewer = current_viewer()
    new_cookie = None
    if viewer is not None:
        listener = plays.Listener.signed_in(viewer.did, teal_granted=viewer.session.teal_granted)
    else:
        play_id = request.cookies.get(PLAY_COOKIE, "")
        if not _PLAY_ID.fullmatch(play_id):
            play_id = new_cookie = secrets.token_urlsafe(18)
        listener = plays.Listener.anonymous(play_id)
    result = await plays.count_play(node().db, track_id=track_id, listener=listener, audience=current_audience(),
                                    listened_ms=body.get("listened_ms"), public_url=_public_url())
    response = jsonify(result)
    if new_cookie:
        response.set_cookie(PLAY_COOKIE, new_cookie, max_age=PLAY_COOKIE_DAYS * 86400, httponly=True,
                            samesite="Lax", secure=node().config.secure_cookies, path="/")
    return response


@bp.get("/artists/me/analytics")
async def my_analytics() -> Response:
    viewer = require_viewer()
    return jsonify(await plays.artist_analytics(node().db, viewer.did, days=request.args.get("days", 30)))


@bp.get("/stats")
async def stats() -> Response:
    return await conditional.catalog_answer(lambda: plays.node_stats(node().db))  # the same for everyone


# ---- now playing


@bp.post("/now-playing/")
@limited("now-playing report", NOW_PLAYING_RATE, what="now-playing reports")
async def report_now_playing() -> Response:
    viewer = require_viewer()
    await now_playing.report(node().db, _now_playing(), did=viewer.did, body=await json_body(),
                             teal_granted=viewer.session.teal_granted, public_url=_public_url(),
                             audience=current_audience())
    return jsonify({"status": "ok"})


@bp.delete("/now-playing/")
@limited("now-playing clear", NOW_PLAYING_RATE, what="now-playing clears")
async def clear_now_playing() -> Response:
    viewer = require_viewer()
    _now_playing().clear(viewer.did)
    return jsonify({"status": "ok"})


async def _now_playing_answer(did: str) -> Response | tuple[str, int]:
    entry = await now_playing.shown(node().db, _now_playing(), did, current_audience())
    if entry is None:
        return "", 204  # nothing playing, as Spotify answers (what Piper expects)
    return jsonify(now_playing.public_json(entry, _public_url()))


@bp.get("/now-playing/by-did/<did>")
@bp.get("/now-playing/<did>")  # the short form issue 13 asks for (plyr.fm has only by-did and by-handle)
async def now_playing_by_did(did: str) -> Response | tuple[str, int]:
    return await _now_playing_answer(did)


@bp.get("/now-playing/by-handle/<handle>")
async def now_playing_by_handle(handle: str) -> Response | tuple[str, int]:
    person = await find_person(node().db, handle)
    return await _now_playing_answer(person["did"])


# ---- preferences


@bp.get("/preferences/")
async def get_preferences() -> Response:
    viewer = require_viewer()
    prefs = await preferences.get(node().db, viewer.did)
    return jsonify(preferences.with_teal_flag(prefs, viewer.session.teal_granted))


@bp.post("/preferences/")
async def update_preferences() -> Response:
    viewer = require_viewer()
    prefs = await preferences.update(node().db, viewer.did, await json_body())
    return jsonify(preferences.with_teal_flag(prefs, viewer.session.teal_granted))


# ---- queue


def _queue_response(snapshot: dict[str, Any]) -> Response:
    response = jsonify(snapshot)
    response.headers["ETag"] = f'"{snapshot["revision"]}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/queue/")
async def get_queue() -> Response:
    viewer = require_viewer()
    # The player polls with If-None-Match: answer 304 before hydrating any track.
    revision = await queue.revision(node().db, viewer.did)
    if request.headers.get("If-None-Match", "").removeprefix("W/") == f'"{revision}"':  # weak once gzipped
        response = Response("", status=304)
        response.headers["ETag"] = f'"{revision}"'
        return response
    return _queue_response(await queue.get(node().db, current_audience(), public_url=_public_url()))


@bp.put("/queue/")
async def put_queue() -> Response:
    require_viewer()
    snapshot = await queue.put(node().db, current_audience(), await json_body(), request.headers.get("If-Match"),
                               public_url=_public_url())
    return _queue_response(snapshot)
