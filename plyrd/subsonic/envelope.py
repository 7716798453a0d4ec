"""The `subsonic-response` envelope, as XML (Subsonic's default) or JSON (`f=json`).

A response body is a tree of dicts: scalar values are attributes (JSON fields), dict values are one child element,
lists are repeated child elements (a list of scalars becomes elements holding text, like OpenSubsonic's `versions`),
and the key `value` is an element's text (Subsonic's JSON convention for e.g. `<genre>`).
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree as ET

import orjson

from .. import __version__

API_VERSION = "1.16.1"
XMLNS = "http://subsonic.org/restapi"

# Subsonic's error codes (plus OpenSubsonic's 41-44).
GENERIC = 0
MISSING_PARAMETER = 10
WRONG_CREDENTIALS = 40
TOKEN_AUTH_UNSUPPORTED = 41
AUTH_MECHANISM_UNSUPPORTED = 42
CONFLICTING_AUTH = 43
INVALID_API_KEY = 44
NOT_AUTHORIZED = 50
NOT_FOUND = 70


class Text(str):
    """A string Subsonic's XML carries as a child element's text, not an attribute: `<biography>...</biography>`
    (artistInfo's biography, musicBrainzId, lastFmUrl and image URLs; albumInfo's notes). JSON carries it as a plain
    string field either way."""


class SubsonicError(Exception):
    """An error a Subsonic client understands: answered with HTTP 200 and status="failed"."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _head(status: str) -> dict[str, Any]:
    return {"status": status, "version": API_VERSION, "type": "plyrd", "serverVersion": __version__,
            "openSubsonic": True}


def ok(body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**_head("ok"), **(body or {})}


def failed(code: int, message: str) -> dict[str, Any]:
    return {**_head("failed"), "error": {"code": code, "message": message}}


# What XML 1.0 cannot carry at all, not even as a character reference: C0 controls but tab, LF and CR; surrogates;
# U+FFFE and U+FFFF. Titles and tags may hold them (only NUL is refused on input), and one such character would make
# the whole answer unparseable for XML clients (DSub, and any client by default); JSON carries them escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ET.Element, tree: dict[str, Any]) -> None:
    for key, value in tree.items():
        if value is None:
            continue
        if key == "value":
            element.text = _text(value)
        elif isinstance(value, Text):
            ET.SubElement(element, key).text = _text(value)
        elif isinstance(value, dict):
            _fill(ET.SubElement(element, key), value)
        elif isinstance(value, list):
            for item in value:
                child = ET.SubElement(element, key)
                if isinstance(item, dict):
                    _fill(child, item)
                else:
                    child.text = _text(item)
        else:
            element.set(key, _text(value))


def to_xml(response: dict[str, Any]) -> bytes:
    root = ET.Element("subsonic-response", {"xmlns": XMLNS})
    _fill(root, response)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


_NESTED = (dict, list)


def _strip_none(value: Any) -> Any:
    """The tree without its None fields (Subsonic leaves an absent attribute out; `null` trips strict clients).
    It walks every answer, so it is one comprehension per dict or list, and a scalar (most values) is neither called
    on nor looked at twice: half the time of calling itself on every value."""
    if isinstance(value, dict):
        return {k: _strip_none(v) if isinstance(v, _NESTED) else v for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def to_json(response: dict[str, Any]) -> bytes:
    """The JSON envelope, UTF-8, encoded by orjson (a large song list in a tenth of the standard library's time).
    A dict with non-str keys is encoded again with them as strings (orjson's option for it doubles its time, so only
    then); what orjson refuses outright (an integer beyond 64 bits, a lone surrogate) the standard library writes,
    escaped."""
    tree = {"subsonic-response": _strip_none(response)}
    for option in (0, orjson.OPT_NON_STR_KEYS):
        try:
            return orjson.dumps(tree, option=option)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(tree).encode()
