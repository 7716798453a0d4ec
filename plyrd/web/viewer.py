"""Who is calling: a session from `Authorization: Bearer` or the session cookie, and CSRF checks for cookies.

Cookies ride along on cross-site requests, so every state-changing request authenticated by a cookie must carry
`X-CSRF-Token` (derived from the session, handed out by /auth/me and the readable `plyrd_csrf` cookie) and must
not come from a foreign Origin. Bearer tokens are never sent implicitly, so they need neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from quart import Quart, g, request

from ..auth.service import Session
from ..errors import Forbidden, Unauthenticated
from .context import node

SESSION_COOKIE = "session_id"
CSRF_COOKIE = "plyrd_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Viewer:
    session: Session
    token: str
    via: str  # "cookie" or "bearer"

    @property
    def did(self) -> str:
        return self.session.did


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def register(app: Quart) -> None:
    @app.before_request
    async def load_viewer() -> None:
        g.viewer = None
        g.auth_error = None
        auth = request.headers.get("Authorization", "")
        token, via = None, None
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                g.auth_error = Unauthenticated("use Authorization: Bearer <developer token>")
                return
            token, via = value.strip(), "bearer"
        elif cookie := request.cookies.get(SESSION_COOKIE):
            token, via = cookie, "cookie"

        if request.method not in SAFE_METHODS and via != "bearer":
            origin = request.headers.get("Origin")
            if origin and origin != "null" and _origin(origin) != _origin(node().config.public_url) \
                    and _origin(origin) != _origin(request.host_url):
                raise Forbidden("cross-site request refused")

        if token is None:
            return
        try:
            session = await node().auth.authenticate(token)
        except Unauthenticated as e:
            g.auth_error = e
            return
        if via == "cookie" and request.method not in SAFE_METHODS:
            if not node().auth.csrf_ok(token, request.headers.get(CSRF_HEADER)):
                raise Forbidden("missing or wrong CSRF token: send the X-CSRF-Token header from /auth/me")
        g.viewer = Viewer(session, token, via)


def current_viewer() -> Viewer | None:
    return g.get("viewer")


def require_viewer(*, browser: bool = False) -> Viewer:
    """The signed-in caller, or 401 (403 `scope_upgrade_required` when their grant no longer covers plyrd's needs)."""
    viewer = g.get("viewer")
    if viewer is None:
        raise g.get("auth_error") or Unauthenticated("not signed in")
    if viewer.session.needs_scope_upgrade:
        raise Forbidden("scope_upgrade_required")
    if browser and viewer.session.kind != "browser":
        raise Forbidden("this needs a browser session, not a developer token")
    return viewer


def require_uploader() -> Viewer:
    viewer = require_viewer()
    if not node().auth.can_upload(viewer.did, viewer.session.handle):
        raise Forbidden("this node only accepts uploads from its listed artists")
    return viewer


def require_admin() -> Viewer:
    viewer = require_viewer()
    if not node().auth.is_admin(viewer.did, viewer.session.handle):
        raise Forbidden("only this node's admins may do that")
    return viewer
