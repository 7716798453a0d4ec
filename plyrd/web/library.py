"""The music folder for the node's admins: GET /library/ (status), GET /library/errors (files that are not tracks,
and why, paged), POST /library/scan (scan now, in the background), and the page /settings/library that shows them.

Thin handlers: the scans are plyrd.library.service's, when they run plyrd.library.schedule's.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from .bodies import query_int
from .context import node
from .pages import login_redirect, render
from .viewer import current_viewer, require_admin

bp = Blueprint("library_admin", __name__)

ERRORS_PAGE_MAX = 200


@bp.get("/library/")
async def status() -> Response:
    require_admin()
    return jsonify(await node().library_tasks.status())


@bp.get("/library/errors")
async def errors() -> Response:
    require_admin()
    limit = query_int("limit", default=50, minimum=1, maximum=ERRORS_PAGE_MAX)
    offset = query_int("offset", default=0, maximum=10_000_000)
    items = await node().library.errors(limit, offset)
    return jsonify({"items": items, "limit": limit, "offset": offset})


@bp.post("/library/scan")
async def scan() -> Response:
    require_admin()
    tasks = node().library_tasks
    tasks.request_scan("admin")
    response = jsonify(await tasks.status())
    response.status_code = 202  # started: GET /library/ follows it
    return response


@bp.get("/settings/library")
async def page() -> Response:
    if current_viewer() is None:
        return login_redirect()
    require_admin()
    return await render("library_admin.html", library=await node().library_tasks.status())
