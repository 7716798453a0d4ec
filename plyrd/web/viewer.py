"""Who is calling: a session from `Authorization: Bearer` or the session cookie, and CSRF checks for cookies.

Cookies ride along on cross-site requests, so every state-changing request authenticated by a cookie must carry
`X-CSRF-Token` (derived from the session, handed out by /auth/me and the readable `plyrd_csrf` cookie) and must
not come from a foreign Origin. Bearer tokens are never sent implicitly, so they need neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from quart import Quart, current_app, g, request

from ..auth.service import Session
from ..catalog.tracks import ANONYMOUS, Audience
from ..errors import Forbidden, Unauthenticated
from ..moderation.suspension import check_not_suspended
from .context import node

SESSION_COOKIE = "session_id"
CSRF_COOKIE = "plyrd_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_SITE_MARK = "_plyrd_anonymous_cross_site"

F = TypeVar("F", bound=Callable[..., Any])


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


def _cross_site() -> bool:
    """A state-changing request from another site. `Origin: null` (a sandboxed iframe, a data: URL, some
    redirects) is another site too: it is exactly what a page uses to hide where a forged form comes from."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # no Origin: not sent by a browser for a cross-site form POST (those always carry it)
    own = {_origin(node().config.public_url), _origin(request.host_url)}
    return origin.strip().lower() == "null" or _origin(origin) not in own


def anonymous_cross_site(view: F) -> F:
    """Mark a view that other sites may call as an anonymous listener (a play beacon from an embed in a sandboxed
    iframe): a cross-site request reaches it without a viewer, never with the cookie that came along."""
    setattr(view, _CROSS_SITE_MARK, True)
    return view


def _allows_anonymous_cross_site() -> bool:
    endpoint = request.url_rule.endpoint if request.url_rule is not None else None
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return bool(getattr(view, _CROSS_SITE_MARK, False))


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

        if request.method not in SAFE_METHODS and via != "bearer" and _cross_site():
            if not _allows_anonymous_cross_site():
                raise Forbidden("cross-site request refused")
            return  # answered as an anonymous caller: a cookie that rode along is not used

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


async def require_uploader() -> Viewer:
    """A signed-in person this node takes uploads from: a listed artist (auth.uploaders) not suspended by its
    admins (plyrd.moderation.suspension)."""
    viewer = require_viewer()
    n = node()
    if not n.auth.can_upload(viewer.did, viewer.session.handle):
        raise Forbidden("this node only accepts uploads from its listed artists")
    async with n.db.read() as conn:
        await check_not_suspended(conn, viewer.did, "upload")
    return viewer


def require_admin() -> Viewer:
    viewer = require_viewer()
    if not node().auth.is_admin(viewer.did, viewer.session.handle):
        raise Forbidden("only this node's admins may do that")
    return viewer


def current_audience() -> Audience:
    """The caller as the catalog's visibility rules see them: anonymous when nobody is signed in."""
    viewer = g.get("viewer")
    if viewer is None:
        return ANONYMOUS
    return node().auth.audience(viewer.did, viewer.session.handle)
