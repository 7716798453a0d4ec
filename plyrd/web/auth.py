"""Sign-in endpoints, in plyr.fm's shapes: /auth/start, /auth/callback, /auth/me, /auth/logout, developer tokens,
scope upgrade, plus app-password sign-in and the OAuth client's metadata and keys."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, redirect, render_template, request

from ..atproto.oauth import client_metadata, public_jwks
from ..auth.service import FlowResult, Session, safe_return_path
from ..catalog.social import iso
from ..errors import NotFound, PlyrdError
from .bodies import json_body
from .context import node
from .errors import status_for
from .limits import client_address, retry_after_headers
from .viewer import CSRF_COOKIE, SESSION_COOKIE, Viewer, current_viewer, require_viewer

bp = Blueprint("auth", __name__)


def wants_html() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def session_json(session: Session) -> dict[str, Any]:
    """A developer token as plyr.fm lists it (`session_id`: the token's first characters, which name it for
    DELETE /auth/developer-tokens/{prefix}; times as ISO 8601 strings in UTC), plus plyrd's `prefix` (the same
    characters), `last_used_at` and `auth_type`."""
    return {
        "session_id": session.prefix,
        "prefix": session.prefix,
        "name": session.name,
        "created_at": iso(session.created_at),
        "expires_at": iso(session.expires_at),
        "last_used_at": iso(session.last_used_at),
        "auth_type": session.auth_type,
    }


def me_json(viewer: Viewer) -> dict[str, Any]:
    auth = node().auth
    s = viewer.session
    body: dict[str, Any] = {
        "did": s.did,
        "handle": s.handle,
        "auth_type": s.auth_type,
        "session_kind": s.kind,
        "is_admin": auth.is_admin(s.did, s.handle),
        "can_upload": auth.can_upload(s.did, s.handle),
        "scopes": auth.scopes_of(s),
        "teal_scrobbling_granted": s.teal_granted,
        "expires_at": s.expires_at,
    }
    if viewer.via == "cookie":
        body["csrf_token"] = auth.csrf_token(viewer.token)
    return body


def set_session_cookies(response: Response, token: str) -> None:
    n = node()
    secure = n.config.secure_cookies
    max_age = n.auth.session_seconds
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="Lax", secure=secure,
                        path="/")
    # Readable by the page's scripts on purpose: they copy it into X-CSRF-Token.
    response.set_cookie(CSRF_COOKIE, n.auth.csrf_token(token), max_age=max_age, httponly=False, samesite="Lax",
                        secure=secure, path="/")


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


async def page(title: str, message: str, status: int, *, headers: dict[str, str] | None = None,
               **extra: Any) -> tuple[str, int, dict[str, str]]:
    html = await render_template("message.html", title=title, message=message, **extra)
    return html, status, {"Cache-Control": "no-store", **(headers or {})}


# ---- OAuth client documents


@bp.get("/oauth-client-metadata.json")
async def oauth_client_metadata() -> Response:
    oauth = node().auth.oauth
    if oauth is None or not oauth.client.is_confidential:
        raise NotFound("this node signs in as a loopback client and publishes no client metadata")
    return jsonify(client_metadata(oauth.client))


@bp.get("/.well-known/jwks.json")
async def jwks() -> Response:
    oauth = node().auth.oauth
    if oauth is None or not oauth.client.is_confidential:
        raise NotFound("this node is a public OAuth client and has no keys to publish")
    return jsonify(public_jwks(oauth.client))


# ---- sign-in


@bp.get("/auth/start")
async def start() -> Any:
    handle = request.args.get("handle", "")
    try:
        url = await node().auth.start_login(handle, return_to=request.args.get("return_to"), client=client_address())
    except PlyrdError as e:
        if wants_html():
            return await page("sign-in failed", e.detail, status_for(e), headers=retry_after_headers(e), retry=True)
        raise
    if wants_html():
        # A page that moves on by itself rather than a redirect: the sign-in form posts here, and the pages'
        # form-action 'self' would block a form's redirect to the PDS (a meta refresh is a navigation, allowed).
        return await page("signing in", "continuing to your account's server…", 200, redirect_to=url)
    return redirect(url, 307)


@bp.get("/auth/callback")
async def callback() -> Any:
    args = request.args
    try:
        result = await node().auth.finish(
            state=args.get("state"), code=args.get("code"), iss=args.get("iss"),
            error=args.get("error"), error_description=args.get("error_description"),
        )
    except PlyrdError as e:
        if wants_html():
            return await page("sign-in failed", e.detail, status_for(e), retry=True)
        raise
    return await _finish_flow(result)


async def _finish_flow(result: FlowResult) -> Any:
    if result.purpose == "login":
        assert result.token is not None
        if wants_html():
            response = redirect(safe_return_path(result.params.get("return_to")), 303)
        else:
            viewer = Viewer(result.session, result.token, "cookie")
            response = jsonify(me_json(viewer))
        set_session_cookies(response, result.token)
        return response
    if result.purpose == "developer_token":
        body = {"token": result.token, **session_json(result.session)}
        if wants_html():
            return await page("developer token created",
                              "copy it now: it is shown once and cannot be recovered.", 201, token=result.token,
                              name=result.session.name)
        return jsonify(body), 201, {"Cache-Control": "no-store"}
    # scope upgrade: same session, more scopes
    if wants_html():
        # Back where the upgrade was asked for: settings (teal.fm), or the page that asked (a share, with its path).
        back = result.params.get("return_to")
        return redirect(safe_return_path(back) if back else "/settings?scope_upgraded=1", 303)
    return jsonify({"scopes": node().auth.scopes_of(result.session),
                    "teal_scrobbling_granted": result.session.teal_granted})


@bp.post("/auth/app-password")
async def app_password() -> Any:
    """Sign in with an app password. With `token_name`, answer a developer token instead of a browser session."""
    body = await json_body()
    token, session = await node().auth.login_app_password(
        body.get("handle") or body.get("identifier"), body.get("app_password") or body.get("password"),
        token_name=body.get("token_name"), expires_in_days=body.get("expires_in_days"), client=client_address(),
    )
    if session.kind == "developer":
        return jsonify({"token": token, **session_json(session)}), 201, {"Cache-Control": "no-store"}
    response = jsonify(me_json(Viewer(session, token, "cookie")))
    set_session_cookies(response, token)
    return response


@bp.get("/auth/me")
async def me() -> Response:
    return jsonify(me_json(require_viewer()))


@bp.post("/auth/logout")
async def logout() -> Response:
    viewer = current_viewer()
    if viewer is not None:
        await node().auth.logout(viewer.session)
    response = jsonify({"signed_out": True})
    clear_session_cookies(response)
    return response


# ---- developer tokens


@bp.get("/auth/developer-tokens")
async def list_developer_tokens() -> Response:
    viewer = require_viewer()
    tokens = await node().auth.developer_tokens(viewer.did)
    return jsonify({"tokens": [session_json(t) for t in tokens]})


@bp.post("/auth/developer-token/start")
async def start_developer_token() -> Response:
    viewer = require_viewer(browser=True)
    body = await json_body()
    url = await node().auth.start_developer_token(viewer.session, name=body.get("name"),
                                                  expires_in_days=body.get("expires_in_days"),
                                                  client=client_address())
    return jsonify({"auth_url": url})


@bp.delete("/auth/developer-tokens/<prefix>")
async def revoke_developer_token(prefix: str) -> tuple[str, int]:
    viewer = require_viewer()
    await node().auth.revoke_developer_token(viewer.did, prefix)
    return "", 204


# ---- scope upgrade


@bp.post("/auth/scope-upgrade/start")
async def start_scope_upgrade() -> Response:
    viewer = require_viewer(browser=True)
    body = await json_body(optional=True)
    include_teal = body.get("include_teal", True)
    url = await node().auth.start_scope_upgrade(viewer.session, include_teal=bool(include_teal),
                                                client=client_address())
    return jsonify({"auth_url": url})
