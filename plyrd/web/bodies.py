"""Reading request bodies: a JSON object, or a clear 400."""

from __future__ import annotations

from typing import Any

from quart import request

from ..errors import InvalidInput


async def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (Content-Type not required). With `optional`, an empty body reads as {}."""
    body = await request.get_json(force=True, silent=True)
    if body is None and optional and not await request.get_data():
        return {}
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object")
    return body
