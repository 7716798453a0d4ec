"""JSON answers encoded with orjson: `jsonify`, views returning a dict or list, and templates' `tojson`.

orjson writes a feed page of 50 tracks in about a tenth of the standard library's time (bench figures in issue 19),
and every API answer goes through here. What it writes means what the standard library wrote: the same keys in the
same order (plyrd never sorted them for clients), non-ASCII as UTF-8 rather than `\\u` escapes, dates as HTTP dates
and Decimals as strings (Flask's rules, through `default`).

The few values orjson refuses are encoded the old way rather than failing the answer: a dict with non-str keys
(again with orjson, keys as strings, as the standard library writes them), then, for an integer beyond 64 bits or a
string holding a lone surrogate, the standard library with ASCII escapes (UTF-8 cannot carry a lone surrogate).
Parsing request bodies stays with the standard library: it decides what a client may send, and that is unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider, _default
from quart import Response

# Dates go to `default` (Flask writes them as HTTP dates, orjson would write RFC 3339); numpy scalars are numbers.
OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY


def _stdlib_default(value: Any) -> Any:
    if isinstance(value, orjson.Fragment):  # JSON encoded already: the standard library needs it parsed
        return json.loads(value.contents)
    return _default(value)


def encode(value: Any, option: int = 0) -> bytes:
    """`value` as compact JSON bytes (UTF-8)."""
    try:
        return orjson.dumps(value, default=_default, option=OPTIONS | option)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(value, default=_default, option=OPTIONS | option | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        # beyond 64-bit integers, lone surrogates, or a type nothing knows (which raises TypeError here, as before)
        indent = 2 if option & orjson.OPT_INDENT_2 else None
        separators = None if indent else (",", ":")
        return json.dumps(value, default=_stdlib_default, ensure_ascii=True, indent=indent, separators=separators,
                          sort_keys=bool(option & orjson.OPT_SORT_KEYS)).encode() + (
            b"\n" if option & orjson.OPT_APPEND_NEWLINE else b"")


class OrjsonProvider(DefaultJSONProvider):
    """Quart's JSON provider with orjson for encoding (install with `app.json = OrjsonProvider(app)`)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        option = 0
        if kwargs.pop("sort_keys", False):  # Jinja's `tojson` asks for sorted keys
            option |= orjson.OPT_SORT_KEYS
        if kwargs.pop("indent", None):
            option |= orjson.OPT_INDENT_2
        kwargs.pop("ensure_ascii", None)  # UTF-8 either way; `tojson` escapes what HTML needs afterwards
        kwargs.pop("separators", None)
        if kwargs:  # a `default`, `cls` or another option only the standard library knows
            return super().dumps(obj, **kwargs)
        return encode(obj, option).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        pretty = (self.compact is None and self._app.debug) or self.compact is False
        body = encode(obj, orjson.OPT_APPEND_NEWLINE | (orjson.OPT_INDENT_2 if pretty else 0))
        return self._app.response_class(body, mimetype=self.mimetype)  # type: ignore[return-value]
