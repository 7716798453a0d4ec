"""Reading request bodies and query integers: the one JSON reader and the one integer parser of the web layer.

JSON is read only from a body sent as application/json (or a +json type): a form can send text/plain across
sites without a preflight, so a route that parsed any body as JSON could be driven by another site's form.
"""

from __future__ import annotations

from typing import Any

from quart import request

from ..errors import InvalidInput, UnsupportedMedia
from ..inputs import INT64_MAX, check_text, parse_json, whole_number


def _is_json_type(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


async def json_body(*, optional: bool = False, text_plain: bool = False) -> dict[str, Any]:
    """The request's JSON object. With `optional`, an empty body reads as {}. With `text_plain`, a text/plain
    body is read as JSON too: only for anonymous beacons that must stay simple requests (a play report)."""
    body = await json_value(optional=optional, text_plain=text_plain)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object")
    return body


async def json_value(*, optional: bool = False, text_plain: bool = False) -> Any:
    """The request's JSON body, whatever its type (for the few plyr.fm routes whose body is a bare array); the
    same rules as json_body, which most routes use."""
    data = await request.get_data(as_text=False)
    if not data:
        if optional:
            return {}
        raise InvalidInput("send a JSON object")
    mimetype = request.mimetype
    if not (_is_json_type(mimetype) or (text_plain and mimetype in ("text/plain", ""))):
        raise UnsupportedMedia("send the body as application/json")
    return parse_json(data)


def query_int(name: str, *, default: int | None = None, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """The query parameter `name` as a whole number in range (400 naming it otherwise)."""
    return whole_number(request.args.get(name), field=name, default=default, minimum=minimum, maximum=maximum)


async def form_fields() -> dict[str, list[str]]:
    """A url-encoded or multipart form's text fields (files are not taken here: uploads stream through
    plyrd.web.upload_stream). Every part must have a name; values must be text SQLite can store."""
    form = await request.form
    fields: dict[str, list[str]] = {}
    for key, values in form.lists():
        if not key:
            raise InvalidInput("malformed form: a part without a name")
        fields[check_text(key, field="a form field name")] = [check_text(v, field=key) for v in values]
    if any(not key for key in (await request.files)):
        raise InvalidInput("malformed form: a part without a name")
    return fields
