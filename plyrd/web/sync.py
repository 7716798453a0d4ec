"""The state of a user's records between this node and their PDS: what waits in the outbox, retrying what failed,
and reconciling from the PDS on demand."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..atproto.outbox import outbox_counts, retry_failed
from ..catalog.reconcile import reconcile
from .context import node
from .viewer import require_viewer

bp = Blueprint("sync", __name__)


@bp.get("/sync/")
async def status() -> Response:
    viewer = require_viewer()
    return jsonify({"outbox": await outbox_counts(node().db, viewer.did)})


@bp.post("/sync/retry")
async def retry() -> Response:
    viewer = require_viewer()
    n = node()
    retried = await retry_failed(n.db, viewer.did)
    n.outbox.wake(viewer.did)
    return jsonify({"retried": retried})


@bp.post("/sync/reconcile")
async def reconcile_now() -> Response:
    """Read the caller's fm.plyr.* records from their PDS and bring this node in line, now (importing their track
    records made elsewhere when they may upload here)."""
    viewer = require_viewer()
    n = node()
    report = await reconcile(n.db, await n.auth.pds_session(viewer.session), n.blobs,
                             n.importer_for(viewer.did, viewer.session.handle), n.remote_tracks)
    return jsonify(report.as_json())
