"""The account: a streamed export of everything a user owns here, and deletion with typed confirmation."""

from __future__ import annotations

import time

from quart import Blueprint, Response, jsonify

from ..catalog.account import check_confirmation, export_zip
from ..catalog.account import delete_account as delete_everything
from ..errors import InvalidInput
from .auth import clear_session_cookies
from .bodies import json_body
from .context import node
from .viewer import require_viewer

bp = Blueprint("account", __name__)

@bp.get("/account/export")
async def export() -> Response:
    viewer = require_viewer()
    n = node()
    stamp = time.strftime("%Y%m%d", time.gmtime())
    name = f"plyrd-export-{(viewer.session.handle or viewer.did).replace(':', '_')}-{stamp}.zip"
    response = Response(export_zip(n.db, n.blobs, viewer.did, n.config.public_url), content_type="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.timeout = None  # a large catalog to a slow connection takes as long as it takes
    return response

@bp.delete("/account/")
async def delete_account() -> Response:
    """plyr.fm's shape: {"confirmation": "<your handle>", "delete_atproto_records": bool}."""
    viewer = require_viewer(browser=True)
    body = await json_body()
    check_confirmation(body.get("confirmation"), viewer.session.handle, viewer.did)
    delete_records = body.get("delete_atproto_records", False)
    if not isinstance(delete_records, bool):
        raise InvalidInput("delete_atproto_records must be true or false")
    n = node()
    pds = await n.auth.pds_session(viewer.session) if delete_records else None
    counts, records_deleted = await delete_everything(n.db, n.blobs, viewer.did, pds)
    response = jsonify({"deleted": counts, "atproto_records_deleted": delete_records,
                        "atproto_records_deleted_count": records_deleted})
    clear_session_cookies(response)
    return response
