"""Serving audio and artwork: immutable, content-addressed, with Range support (plyrd.web.streaming)."""

from __future__ import annotations

import re

from quart import Blueprint, Response

from ..catalog.downloads import check_download
from ..catalog.tracks import artist_name, audio_file, image_mime
from .context import node
from .streaming import serve_file
from .viewer import current_viewer

bp = Blueprint("media", __name__)


@bp.route("/audio/<file_id>", methods=["GET", "HEAD"])
async def audio(file_id: str) -> Response:
    n = node()
    f = await audio_file(n.db, file_id)
    return await serve_file(n.blobs.path_for(f.sha256), mime=f.mime, etag=f.sha256)


@bp.route("/audio/<file_id>/download", methods=["GET", "HEAD"])
async def download(file_id: str) -> Response:
    """An attachment named `artist - title.ext`, preferring the original over a rendition; only for whom the
    track's download policy allows (streaming, above, is for everyone)."""
    n = node()
    f = await audio_file(n.db, file_id)
    track = f.track
    viewer = current_viewer()
    check_download(track, viewer.did if viewer else None)
    sha, mime, ext = track["original_sha"], track["original_mime"], track["original_ext"]
    name = re.sub(r'[\x00-\x1f/\\:*?"<>|]+', " ", f"{artist_name(track)} - {track['title']}").strip()
    return await serve_file(n.blobs.path_for(sha), mime=mime, etag=sha, download_name=f"{name}.{ext}")


@bp.route("/images/<sha>", methods=["GET", "HEAD"])
async def image(sha: str) -> Response:
    n = node()
    mime = await image_mime(n.db, sha)
    return await serve_file(n.blobs.path_for(sha), mime=mime, etag=sha)
