"""`/rest/<method>[.view]`: the Subsonic-compatible API (plyr.fm's `api/subsonic`), thin over plyrd.subsonic.

Every answer to a Subsonic client is HTTP 200: failures are the envelope with status="failed" and a Subsonic error
code, including unknown methods (plyr.fm's catch-all). Binary methods (stream, download, getCoverArt) answer the
file, through the same range-capable serving as /audio and /images.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ...errors import Forbidden, NotFound, PlyrdError, Unauthenticated
from ...subsonic.auth import authenticate
from ...subsonic.envelope import (
    GENERIC,
    NOT_AUTHORIZED,
    NOT_FOUND,
    WRONG_CREDENTIALS,
    SubsonicError,
    failed,
    ok,
    to_json,
    to_xml,
)
from ..bodies import form_fields
from ..context import node
from ..limits import client_address
from ..viewer import anonymous_cross_site
from . import browsing, discovery, files, listening, lyrics, playlists, system  # noqa: F401  (registering methods)
from .call import METHODS, Call

bp = Blueprint("subsonic", __name__)

_CALLBACK = re.compile(r"[A-Za-z_$][\w$.]{0,99}")


def _render(params: MultiDict[str, str], response: dict[str, Any]) -> Response:
    fmt = (params.get("f") or "xml").lower()
    if fmt == "json":
        return Response(to_json(response), content_type="application/json; charset=utf-8")
    if fmt == "jsonp" and _CALLBACK.fullmatch(callback := params.get("callback") or ""):
        return Response(callback.encode() + b"(" + to_json(response) + b");",
                        content_type="application/javascript; charset=utf-8")
    return Response(to_xml(response), content_type="text/xml; charset=utf-8")


def _code(e: PlyrdError) -> int:
    """The Subsonic error code for one of plyrd's own errors (one place, as plyrd.web.errors is for HTTP)."""
    if isinstance(e, NotFound):
        return NOT_FOUND
    if isinstance(e, Forbidden):
        return NOT_AUTHORIZED
    if isinstance(e, Unauthenticated):
        return WRONG_CREDENTIALS
    return GENERIC


@bp.route("/rest/<name>", methods=["GET", "POST", "HEAD"])
@anonymous_cross_site
async def rest(name: str) -> Response:
    """/rest carries its credentials in the request (u+t+s, p, apiKey), never in cookies, so a form POST from any
    origin (OpenSubsonic's formPost, web clients such as Feishin) comes through: the viewer check lets it by as
    anonymous, and nothing here reads the cookie session. Every failure, a malformed form too, is the envelope."""
    params: MultiDict[str, str] = MultiDict(request.args)
    name = name.removesuffix(".view")
    try:
        if request.method == "POST":
            for key, values in (await form_fields()).items():
                for value in values:
                    params.add(key, value)
        handler = METHODS.get(name.lower())
        if handler is None:
            raise SubsonicError(NOT_FOUND, f"Unknown or unsupported method: {name}")
        n = node()
        session = await authenticate(n.auth, params, client=client_address())
        result = await handler(Call(params, session, n))
    except SubsonicError as e:
        return _render(params, failed(e.code, e.message))
    except PlyrdError as e:
        return _render(params, failed(_code(e), e.detail))
    if isinstance(result, Response):
        return result
    return _render(params, ok(result))


@bp.after_request
async def cors(response: Response) -> Response:
    # Credentials travel as parameters, never cookies, so any origin may call: browser-based Subsonic clients need it.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
