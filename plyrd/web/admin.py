"""The admin console's pages (/admin, /admin/reports, /admin/users, /admin/takedowns, /admin/jobs, /admin/audit) and
its two actions of its own (retrying a failed job, retrying failed PDS writes). Admins only (auth.admins): nobody
signed in is sent to sign in, anyone else gets 403. The pages read plyrd.moderation.console; their buttons call the
JSON API (plyrd.web.admin_api, and the retries here) from static/js/pages/admin.js."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..errors import InvalidInput
from ..moderation import console
from ..moderation.actions import FLAG_VALUES
from .bodies import json_body, query_int
from .context import node
from .pages import login_redirect, render
from .viewer import current_viewer, require_admin

bp = Blueprint("admin", __name__)


@bp.app_template_filter("isotime")
def isotime(ts: Any) -> str:
    """A unix time as ISO 8601 UTC (a <time datetime>), "" for none."""
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@bp.app_template_filter("isodate")
def isodate(ts: Any) -> str:
    return isotime(ts)[:10]


async def _page(template: str, section: str, **context: Any) -> Response:
    return await render(template, section=section, **context)


def _role(did: str, handle: str | None) -> str:
    auth = node().auth
    if auth.is_admin(did, handle):
        return "admin"
    return "uploader" if auth.can_upload(did, handle) else "listener"


def _signed_in_admin() -> Response | None:
    """None for an admin; a redirect to sign in for nobody; 403 (raised) for anyone else."""
    if current_viewer() is None:
        return login_redirect()
    require_admin()
    return None


@bp.get("/admin")
async def overview() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    n = node()
    return await _page("admin.html", "overview", counts=await console.overview(n.db),
                       storage=await console.storage_totals(n.db, n.config.data_dir), ingest=n.ingest_status())


@bp.get("/admin/reports")
async def reports_page() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    n = node()
    return await _page("admin_reports.html", "reports", cases=await console.open_cases(n.db, n.config.public_url),
                       flag_values=FLAG_VALUES)


@bp.get("/admin/users")
async def users_page() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    sort = request.args.get("sort") or "storage"
    if sort not in console.USER_SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(console.USER_SORTS)}")
    page = await console.users(node().db, _role, sort=sort, offset=query_int("offset", default=0))
    return await _page("admin_users.html", "users", page=page)


@bp.get("/admin/takedowns")
async def takedowns_page() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    n = node()
    grace = n.config["moderation.purge_grace_days"]
    return await _page("admin_takedowns.html", "takedowns", grace_days=grace,
                       found=await console.takedowns(n.db, n.config.public_url, grace_days=grace))


@bp.get("/admin/jobs")
async def jobs_page() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    n = node()
    return await _page("admin_jobs.html", "jobs", jobs=await console.failed_jobs(n.db),
                       writes=await console.outbox_failures(n.db))


@bp.get("/admin/audit")
async def audit_page() -> Response:
    if (away := _signed_in_admin()) is not None:
        return away
    return await _page("admin_audit.html", "audit", entries=await console.audit_log(node().db))


# ---- the console's own actions (the rest are plyrd.web.admin_api's) ---------------------------------------------


@bp.post("/admin/api/jobs/<int:job_id>/retry")
async def retry_job(job_id: int) -> Response:
    admin = require_admin()
    body = await json_body(optional=True)
    return jsonify({"ok": True, **await console.retry_job(node().db, admin.did, job_id, body.get("reason"))})


@bp.post("/admin/api/outbox/retry")
async def retry_outbox() -> Response:
    """Failed PDS writes back in the queue: one account's ({"did": ...}) or everyone's ({})."""
    admin = require_admin()
    body = await json_body(optional=True)
    n = node()
    done = await console.retry_outbox(n.db, admin.did, body.get("did"), body.get("reason"))
    n.outbox.wake(body.get("did"))
    return jsonify({"ok": True, **done})

