"""The one place that turns errors into HTTP responses: `{"detail": "..."}` with the right status.

Browsers, which ask for text/html before anything else, get the same status and words as a page that helps
(error.html); every other client (fetch, httpx, curl: `*/*` or no Accept at all) keeps getting JSON.
"""

from __future__ import annotations

import logging
import math

from quart import Quart, Response, g, has_request_context, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from .. import errors

log = logging.getLogger("plyrd.web")

STATUS: dict[type[errors.PlyrdError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.UnsupportedMedia: 415,
    errors.Unprocessable: 422,
    errors.RateLimited: 429,
    errors.UpstreamError: 502,
    errors.Unavailable: 503,
}

# Short, lowercase texts for errors raised by routing and request parsing rather than by plyrd's own code.
HTTP_DETAIL: dict[int, str] = {
    400: "bad request",
    404: "not found",
    405: "method not allowed",
    408: "request timed out",
    413: "request body too large",
    415: "unsupported media type",
}


def status_for(exc: errors.PlyrdError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_response(status: int, detail: str, **extra: object) -> Response:
    response = jsonify({"detail": detail, **extra})
    response.status_code = status
    return response


def wants_html() -> bool:
    """Only a client that prefers text/html over JSON (a browser's navigation) gets an HTML error page."""
    if not has_request_context():
        return False
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


async def negotiated(status: int, detail: str, **extra: object) -> Response:
    if wants_html():
        try:
            viewer = g.get("viewer")
            me = {"did": viewer.did, "handle": viewer.session.handle} if viewer else None
            html = await render_template("error.html", status=status, detail=detail, path=request.path,
                                         request_id=getattr(g, "request_id", None), me=me, theme="system")
            return Response(html, status=status, content_type="text/html; charset=utf-8")
        except Exception as e:  # a broken page must not hide the error it was showing
            log.error("error page failed", exc_info=e)
    return error_response(status, detail, **extra)


def register(app: Quart) -> None:
    @app.errorhandler(errors.PlyrdError)
    async def plyrd_error(exc: errors.PlyrdError) -> Response:
        response = await negotiated(status_for(exc), exc.detail)
        if isinstance(exc, errors.RateLimited) and exc.retry_after is not None:
            # Whole seconds, at least 1: "0" would invite an immediate retry that is refused again.
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        if exc.code is not None and exc.code < 400:
            return exc.get_response()  # redirects (e.g. a missing trailing slash) are not errors
        code = exc.code or 500
        response = await negotiated(code, HTTP_DETAIL.get(code, (exc.name or "error").lower()))
        valid = getattr(exc, "valid_methods", None)
        if valid:
            response.headers["Allow"] = ", ".join(valid)
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        request_id = getattr(g, "request_id", "-")
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": request_id}})
        return await negotiated(500, f"internal error; quote request id {request_id} when reporting it",
                                request_id=request_id)
