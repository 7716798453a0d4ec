"""Security headers on every response: a Content-Security-Policy for pages, nosniff and a Referrer-Policy for all.

The policy lets a page run only the node's own script files (no inline script, no eval, no javascript: URLs, no
inline event handlers), so markup that slipped through escaping still cannot run code. The pages keep to it: the
theme is applied before first paint by a blocking /static/js/boot.js, JSON data blocks are
`<script type="application/json">` (never executed), and the DOM is built from data with createElement and
textContent (static/js/dom.js). Inline style attributes are not allowed either: the pages have none, and scripts
style elements through the CSSOM (element.style), which CSP does not restrict.

- `img-src https:`: covers and avatars may live on a PDS or any https host. `data:` and `blob:` (there and in
  `media-src`) let a page show a file picked for upload before it is sent; no page needs them today.
- `media-src 'self'`: audio is always the node's own /audio/ (another node's track whose record has only an audioUrl
  is relayed by the node: plyrd.web.relay).
- `worker-src 'self'` and `manifest-src 'self'`: the service worker is the node's own /sw.js and the web app
  manifest its own /static/manifest.webmanifest (plyrd.web.pwa); said outright rather than left to default-src.
- `form-action 'self'`: every form posts to the node. Chromium checks a form's redirects too, so the sign-in
  form's /auth/start answers browsers with a page that moves on to the PDS by itself (a meta refresh is a
  navigation, which form-action does not govern) instead of a redirect.
- `frame-ancestors 'none'` plus `X-Frame-Options: DENY` on every page except the embeds (/embed/...), which exist to
  be framed by other sites and carry no frame-ancestors at all.

`Strict-Transport-Security` only with `server.hsts` on an https `server.public_url`: the reverse proxy that
terminates TLS usually owns it, and a node tried over plain http must never tell a browser to refuse http.
"""

from __future__ import annotations

from quart import Quart, Response, request

from ..config import Config

_BASE = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https: data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self'",
    "manifest-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
]

PAGE_POLICY = "; ".join([*_BASE, "frame-ancestors 'none'"])
EMBED_POLICY = "; ".join(_BASE)  # no frame-ancestors: any site may frame an embed

REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS = "max-age=31536000"


def is_embed(path: str) -> bool:
    return path.startswith("/embed/")


def apply(response: Response, path: str, *, hsts: bool = False) -> Response:
    headers = response.headers
    if hsts:
        headers.setdefault("Strict-Transport-Security", HSTS)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    if response.mimetype == "text/html":
        if is_embed(path):
            headers["Content-Security-Policy"] = EMBED_POLICY
        else:
            headers["Content-Security-Policy"] = PAGE_POLICY
            headers["X-Frame-Options"] = "DENY"
    return response


def register(app: Quart, config: Config) -> None:
    hsts = config["server.hsts"] and config.public_url.startswith("https://")

    @app.after_request
    async def security_headers(response: Response) -> Response:
        return apply(response, request.path, hsts=hsts)
