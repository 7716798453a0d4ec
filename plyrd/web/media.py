"""Serving audio and artwork: immutable, content-addressed, with Range support (plyrd.web.streaming).

A file is served when it belongs to a track the caller may see (plyrd.catalog.tracks `visible`): a library file,
or its artwork, is 404 to anyone who may not see the library, as if it did not exist. A library file browsers cannot
play is sent as an MP3 made live and cached (plyrd.web.live_audio). A remote track's audio blob is fetched from its
artist's PDS on first play, verified and cached (plyrd.network.remote_audio), then served as any stored file; one
whose record has only an audioUrl is relayed from it at /audio/remote/<track id> (plyrd.web.relay)."""

from __future__ import annotations

import re

from quart import Blueprint, Response, request

from ..catalog.downloads import check_download
from ..catalog.tracks import artist_name, audio_file, image_file, is_library, is_remote, open_track
from ..errors import NotFound
from ..network.remote_audio import served_mime
from ..subsonic import streaming
from . import live_audio
from .context import node
from .relay import relay
from .streaming import serve_file
from .viewer import current_audience, current_viewer

bp = Blueprint("media", __name__)

PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"
# The file id of another repo's track whose record has only an audioUrl (plyrd.catalog.tracks track_json): relayed.
REMOTE_FILE_ID = re.compile(r"remote-([0-9]{1,18})")


def _private_if(library: bool, response: Response) -> Response:
    """A library file is for the node's listeners only: browsers may keep it, shared caches (a proxy) may not."""
    if library:
        response.headers["Cache-Control"] = PRIVATE_IMMUTABLE
    return response


@bp.route("/audio/<file_id>", methods=["GET", "HEAD"])
async def audio(file_id: str) -> Response:
    """The file the player plays. A music-folder file browsers may not all play (AIFF, Vorbis, ALAC...: see
    plyrd.subsonic.streaming `needs_live`) has no stored rendition, so it is sent as the MP3 an upload's rendition
    would be: live on the first play (no ranges: the browser seeks within what it has), then from the transcode
    cache, which Subsonic's `stream` shares (ranges work). Its download (below) is still the original."""
    n = node()
    if (relayed := REMOTE_FILE_ID.fullmatch(file_id)) is not None:  # plyr.fm's clients need a file id for every track
        return await remote_url(int(relayed.group(1)))
    f = await audio_file(n.db, file_id, current_audience())
    if streaming.needs_live(f.track):
        async def cached(sha: str) -> Response:
            return _private_if(True, await serve_file(n.blobs.path_for(sha), mime="audio/mpeg", etag=sha))

        return await live_audio.respond(n, streaming.web_rendition(f.track), cached)
    if is_remote(f.track) and f.sha256 == f.track["original_sha"]:
        # Content-addressed, so immutable like any blob; a failed or refused fetch is a 502 and leaves nothing.
        async with n.remote_audio.held(f.track) as sha:
            return await serve_file(n.blobs.path_for(sha), mime=served_mime(f.track), etag=sha)
    return _private_if(is_library(f.track),
                       await serve_file(n.blobs.path_for(f.sha256), mime=f.mime, etag=f.sha256))


@bp.route("/audio/remote/<int:track_id>", methods=["GET", "HEAD"])
async def remote_url(track_id: int) -> Response:
    """Another repo's track whose record has only an audioUrl: its bytes relayed from there through the guarded client
    (ranges passed on), so the player plays it from its own origin. Tracks with a file here use /audio/<file_id>."""
    n = node()
    track = await open_track(n.db, track_id, current_audience())
    if not streaming.from_url(track):
        raise NotFound("this track's audio is at /audio/<file_id>")
    return await relay(await n.remote_audio.open_url(track, request.headers.get("Range")))


@bp.route("/audio/<file_id>/download", methods=["GET", "HEAD"])
async def download(file_id: str) -> Response:
    """An attachment named `artist - title.ext`, preferring the original over a rendition; only for whom the
    track's download policy allows (streaming, above, is for everyone)."""
    n = node()
    f = await audio_file(n.db, file_id, current_audience())
    track = f.track
    viewer = current_viewer()
    check_download(track, viewer.did if viewer else None)
    sha, mime, ext = track["original_sha"], track["original_mime"], track["original_ext"]
    name = re.sub(r'[\x00-\x1f/\\:*?"<>|]+', " ", f"{artist_name(track)} - {track['title']}").strip()
    return _private_if(is_library(track), await serve_file(n.blobs.path_for(sha), mime=mime, etag=sha,
                                                           download_name=f"{name}.{ext}"))


@bp.route("/images/<sha>", methods=["GET", "HEAD"])
async def image(sha: str) -> Response:
    n = node()
    f = await image_file(n.db, sha, current_audience())
    return _private_if(f.library_only, await serve_file(n.blobs.path_for(sha), mime=f.mime, etag=sha))
