"""Checks for values that arrive from outside, applied once where they enter (paths, query strings, JSON bodies).

SQLite stores integers in 64 bits and text as UTF-8: a larger integer or a string holding a lone surrogate
(JSON's "\\ud800") makes the driver raise deep inside a query. These checks turn such values into a 400 naming the
field before any query runs. Domain code: raises plyrd.errors.InvalidInput, knows nothing of HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidInput

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_JSON_DEPTH = 32


def whole_number(raw: str | None, *, field: str, default: int | None = None, minimum: int = 0,
                 maximum: int = INT64_MAX) -> int:
    """A query-string or path integer within [minimum, maximum], else InvalidInput naming `field`.
    An absent or empty value is `default` (InvalidInput when there is none)."""
    if raw is None or raw == "":
        if default is None:
            raise InvalidInput(f"{field} is required")
        return default
    text = raw.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise InvalidInput(f"{field} must be a whole number from {minimum} to {maximum}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{field} must be a whole number from {minimum} to {maximum}")
    return value


def check_text(value: str, *, field: str) -> str:
    """`value` if SQLite can store it: valid Unicode (no lone surrogates) without NUL characters."""
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid Unicode (a lone surrogate)") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes) -> Any:
    """Decode a request body as JSON: strict UTF-8, no NaN/Infinity, nesting at most MAX_JSON_DEPTH, integers in
    SQLite's 64-bit range, strings free of lone surrogates and NUL. InvalidInput says which rule failed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # the C decoder guards its own recursion: 50,000 '[' end here, not in a crash
        raise InvalidInput(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:
        raise InvalidInput(f"the body is not valid JSON ({e})") from None
    _check_values(value)
    return value


def _check_values(root: Any) -> None:
    stack = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth >= MAX_JSON_DEPTH:
            raise InvalidInput(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(key, field="a JSON key")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            check_text(value, field="a JSON string")
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput("a JSON number is outside the 64-bit integer range")
