"""The admins' JSON API (plyrd.moderation.actions does the work; this parses, authorizes and answers). Every route
is for the node's admins only (auth.admins): 403 for anyone else, 401 for nobody. The /admin pages use the same
actions through forms."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..errors import InvalidInput
from ..moderation import actions, reports
from .bodies import json_body
from .context import node
from .viewer import require_admin

bp = Blueprint("admin_api", __name__)

_TAKEDOWN = {"tracks": "track", "comments": "comment", "playlists": "playlist"}


def _case(body: dict[str, Any]) -> int | None:
    """The report a takedown, flag or suspension settles, when the admin acted from one."""
    value = body.get("report_id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput("report_id must be a report's id")
    return value


def _done(**extra: Any) -> Response:
    return jsonify({"ok": True, **extra})


@bp.get("/admin/api/reports")
async def open_reports() -> Response:
    require_admin()
    return jsonify({"reports": await reports.list_reports(node().db, request.args.get("state", "open"))})


@bp.post("/admin/api/reports/<int:case_id>/<any(dismiss, resolve):verb>")
async def close_report(case_id: int, verb: str) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    close = actions.dismiss if verb == "dismiss" else actions.resolve
    await close(node().db, admin.did, case_id, body.get("resolution"))
    return _done()


@bp.post("/admin/api/<any(tracks, comments, playlists):kind>/<item_id>/<any(takedown, restore):verb>")
async def takedown(kind: str, item_id: str, verb: str) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    if verb == "takedown":
        await actions.take_down(node().db, admin.did, _TAKEDOWN[kind], item_id, body.get("reason"),
                                case_id=_case(body))
    else:
        await actions.restore(node().db, admin.did, _TAKEDOWN[kind], item_id, body.get("reason"))
    return _done()


@bp.route("/admin/api/tracks/<int:track_id>/sensitive", methods=["POST", "DELETE"])
async def sensitive(track_id: int) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    if request.method == "POST":
        await actions.flag_sensitive(node().db, admin.did, track_id, body.get("reason"), body.get("value"),
                                     case_id=_case(body))
    else:
        await actions.clear_sensitive(node().db, admin.did, track_id, body.get("reason"))
    return _done()


@bp.post("/admin/api/tracks/<int:track_id>/purge")
async def purge(track_id: int) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    n = node()
    await actions.purge(n.db, n.blobs, admin.did, track_id, body.get("reason"),
                        grace_days=n.config["moderation.purge_grace_days"])
    return _done()


@bp.post("/admin/api/users/<did>/<any(suspend, restore):verb>")
async def suspension(did: str, verb: str) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    if verb == "suspend":
        await actions.suspend(node().db, admin.did, did, body.get("reason"), case_id=_case(body))
    else:
        await actions.unsuspend(node().db, admin.did, did, body.get("reason"))
    return _done()


@bp.get("/admin/api/audit")
async def audit() -> Response:
    require_admin()
    return jsonify({"entries": await actions.audit_log(node().db)})
