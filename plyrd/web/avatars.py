"""Avatars the node keeps: its own WebP copies of people's Bluesky avatars (plyrd.network.bsky_profiles), served at
/avatars/<sha> with immutable caching. Only blobs that are someone's avatar are served here, never any other blob."""

from __future__ import annotations

import re

from quart import Blueprint, Response

from ..errors import NotFound
from ..network.bsky_profiles import AVATAR_MIME, is_avatar
from .context import node
from .streaming import serve_file

bp = Blueprint("avatars", __name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@bp.route("/avatars/<sha>", methods=["GET", "HEAD"])
async def avatar(sha: str) -> Response:
    n = node()
    if not _SHA256.match(sha) or not await is_avatar(n.db, sha):
        raise NotFound("no such avatar")
    return await serve_file(n.blobs.path_for(sha), mime=AVATAR_MIME, etag=sha)
