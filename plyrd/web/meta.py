"""Node-level endpoints: health and public configuration (the front page lives in plyrd.web.pages)."""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, Response, jsonify

from ..db import DatabaseError
from .context import node

log = logging.getLogger("plyrd.web")

bp = Blueprint("meta", __name__)

HEALTH_DB_TIMEOUT = 2.0


@bp.get("/health")
async def health() -> tuple[Response, int]:
    n = node()
    try:
        await asyncio.wait_for(n.db.check(), HEALTH_DB_TIMEOUT)
    except (DatabaseError, TimeoutError, OSError, Exception) as e:  # any failure means "not healthy", never a 500
        log.warning("health check failed", extra={"fields": {"error": repr(e)}})
        return jsonify({"status": "error", "version": n.version, "detail": "database unavailable"}), 503
    return jsonify({"status": "ok", "version": n.version}), 200


@bp.get("/config")
async def public_config() -> Response:
    """What clients need to know before they upload (plyr.fm's /config shape)."""
    cfg = node().config
    return jsonify({
        "max_upload_size_mb": cfg["storage.max_upload_mb"],
        "max_image_size_mb": cfg["media.max_image_mb"],
        "default_hidden_tags": ["ai"],
        "public_url": cfg.public_url,
    })
