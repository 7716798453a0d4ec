"""The installable web app: the service worker at /sw.js and the offline page it falls back to (issue 18).

A worker's scope is at most the folder its script is served from, so /sw.js is served from the root, not /static/.
Its cache is named after the node's version plus a hash of the static files and the offline page, computed once at
start: a deploy that changes any of them changes the worker's bytes, the browser installs the new worker and it
drops the old cache. The worker itself (plyrd/templates/sw.js) keeps away from audio, ranges and the API; the
manifest and icons are plain static files (static/manifest.webmanifest, static/img/icon-*.png).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from quart import Blueprint, Response, current_app, render_template

from .. import __version__

bp = Blueprint("pwa", __name__)

TEMPLATES = Path(__file__).parent.parent / "templates"
# Loaded per page (js/pages/, cached on first use), framed by other sites (embed.js), or only named by the manifest:
# not part of the shell every page needs at once.
NOT_SHELL_PREFIXES = ("js/pages/",)
NOT_SHELL = {"js/embed.js", "manifest.webmanifest"}
SHELL_SUFFIXES = (".js", ".css", ".svg")


@dataclass(frozen=True)
class Shell:
    cache: str  # the cache name: changes with the version and with any static file or the offline page
    precache: list[str]  # URLs the worker fetches when it installs


def shell_of(static_root: Path, version: str = __version__) -> Shell:
    """The cache name and precache list for the static files under `static_root` (a few hundred KB: ~2 ms)."""
    digest = hashlib.sha256()
    precache = []
    files = sorted(p for p in static_root.rglob("*") if p.is_file())
    for path in [*files, TEMPLATES / "offline.html", TEMPLATES / "sw.js"]:
        name = path.relative_to(static_root).as_posix() if path.is_relative_to(static_root) else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        if (path.is_relative_to(static_root) and name.endswith(SHELL_SUFFIXES) and name not in NOT_SHELL
                and not name.startswith(NOT_SHELL_PREFIXES)):
            precache.append(f"/static/{name}")
    return Shell(cache=f"plyrd-{version}-{digest.hexdigest()[:12]}", precache=[*precache, "/offline"])


def shell() -> Shell:
    app = current_app
    found = app.extensions.get("plyrd.shell")
    if found is None:
        found = app.extensions["plyrd.shell"] = shell_of(Path(app.static_folder or ""))
    return found


@bp.before_app_serving
async def compute_shell() -> None:
    shell()  # once at start, so the first page's worker request does not pay for it


@bp.get("/sw.js")
async def service_worker() -> Response:
    s = shell()
    body = await render_template("sw.js", cache=s.cache, precache=s.precache)
    response = Response(body, content_type="text/javascript; charset=utf-8")
    # The browser compares the script on every navigation anyway; no-cache keeps any proxy from holding an old one.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/offline")
async def offline() -> Response:
    """The same for everyone (no viewer, no session): the worker keeps one copy and shows it for any page."""
    response = Response(await render_template("offline.html"), content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response
