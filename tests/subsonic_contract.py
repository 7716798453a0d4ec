"""OpenSubsonic's OpenAPI description as a test oracle for /rest (shared by the tests that talk to /rest).

The description (tests/reference/opensubsonic-openapi/openapi/, OpenSubsonic 1.16.1) is an OpenAPI 3.0 document
split over many files that point at each other with relative `$ref`s. Its schemas use a small subset of JSON Schema
(type, properties, required, items, minItems, enum, minimum/maximum, allOf/oneOf, format date-time) that OpenAPI 3.0
shares with draft 7, no `nullable`, no `additionalProperties`, no boolean `exclusiveMinimum`: so every file is loaded
into a `referencing` registry at its file:// URI as a draft 7 resource, and `jsonschema`'s Draft7Validator checks a
whole `{"subsonic-response": ...}` body against the 200 response of the method's endpoint (a oneOf of its success
envelope and the failure envelope). OpenAPI-only keywords (example, deprecated, description) are annotations there.

`date-time` is checked as RFC 3339 here (jsonschema checks it only when an optional package is installed, and clients
such as Symfonium parse `created`/`starred` strictly).

The XML form: `same_content(json_body, xml)` checks that the XML carries what the JSON does, by Subsonic's mapping
(plyrd.subsonic.envelope): scalar fields are attributes, an object is one child element, a list is repeated child
elements (a list of scalars: elements holding text), and `value` is an element's text. Values compare as text
(XML attributes are text), booleans as true/false.

    validate_json("getAlbum", r.json())     # AssertionError naming each failing JSON path
    same_content(r.json(), r_xml.content)   # AssertionError naming each difference
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.etree import ElementTree as ET

from jsonschema import Draft7Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7


def reference_dir() -> Path:
    """The description's folder: a copy kept with the tests (tests/reference/opensubsonic-openapi/, Apache-2.0, see
    its README for where it comes from), so the contract holds on any clean clone."""
    return Path(__file__).resolve().parent / "reference" / "opensubsonic-openapi" / "openapi"


# ---- the schemas ------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # `type` reports that
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value.replace("z", "Z"))  # a real date: raises ValueError for 2024-02-30
    return True


@cache
def _loaded() -> tuple[Path, Registry, dict[str, str]]:
    """(folder, registry of every file at its file:// URI, lower-case method name -> endpoint name)."""
    root = reference_dir()
    resources = []
    for path in sorted(root.rglob("*.json")):
        contents = json.loads(path.read_text())
        resources.append((path.as_uri(), Resource.from_contents(contents, default_specification=DRAFT7)))
    registry: Registry = Registry().with_resources(resources)
    names = {p.stem.lower(): p.stem for p in (root / "endpoints").glob("*.json")}
    return root, registry, names


def endpoint_names() -> list[str]:
    """Every method the description defines, as it spells them (getAlbumList2, search3...)."""
    return sorted(_loaded()[2].values())


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def response_schema_uri(method: str) -> str:
    """The URI (file + JSON pointer) of the JSON schema of `method`'s 200 answer. Binary methods (stream, download,
    getCoverArt...) describe no JSON body: their failures are the generic envelope, schemas/SubsonicResponse.json."""
    root, registry, names = _loaded()
    name = names.get(method.lower())
    if name is None:
        raise KeyError(f"{method} is not an endpoint of the OpenSubsonic description")
    uri = (root / "endpoints" / f"{name}.json").as_uri()
    response = registry.contents(uri)["get"]["responses"]["200"]
    pointer = ("get", "responses", "200")
    if "$ref" in response:  # a shared response object (responses/*.json)
        uri = urljoin(uri, response["$ref"])
        response, pointer = registry.contents(uri), ()
    if "application/json" not in response.get("content", {}):
        return (root / "schemas" / "SubsonicResponse.json").as_uri()
    return uri + _pointer(*pointer, "content", "application/json", "schema")


@cache
def _validator(method: str) -> Draft7Validator:
    _, registry, _ = _loaded()
    return Draft7Validator({"$ref": response_schema_uri(method)}, registry=registry, format_checker=FORMATS)


def _where(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _wrong_envelope(errors: list[ValidationError]) -> bool:
    """Whether a oneOf branch failed because it is the other envelope (success vs failure): its `status` enum."""
    return any(e.validator == "enum" and list(e.path)[-1:] == ["status"] for e in errors)


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors that say what is wrong: inside a oneOf/anyOf, the branch of the envelope the body claims to be
    (status ok or failed), followed down to the keywords that failed."""
    if not error.context:
        return [error]
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    chosen = [b for b in branches.values() if not _wrong_envelope(b)] or list(branches.values())
    if error.validator in ("oneOf", "anyOf") and len(chosen) > 1:
        chosen = [min(chosen, key=len)]  # the branch that came closest
    return [leaf for branch in chosen for sub in branch for leaf in _leaves(sub)]


def schema_errors(method: str, body: Any) -> list[str]:
    """Every way `body` (a whole `{"subsonic-response": ...}`) breaks `method`'s response schema, one line each:
    the JSON path, what failed, and the schema keyword's location."""
    out: list[str] = []
    for error in sorted(_validator(method).iter_errors(body), key=lambda e: list(e.path)):
        for leaf in _leaves(error):
            value = json.dumps(leaf.instance, ensure_ascii=False)
            value = value if len(value) <= 80 else value[:77] + "..."
            out.append(f"{_where(leaf.absolute_path)}: {leaf.message if len(leaf.message) < 160 else leaf.validator}"
                       f" (schema {leaf.validator}={json.dumps(leaf.validator_value)[:80]}; sent {value})")
    return list(dict.fromkeys(out))


def validate_json(method: str, body: Any) -> None:
    problems = schema_errors(method, body)
    assert not problems, f"{method}: the JSON answer breaks its OpenSubsonic schema:\n  " + "\n  ".join(problems)


# ---- the XML form -----------------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(element: ET.Element) -> dict[str, Any]:
    tree: dict[str, Any] = dict(element.attrib)
    for child in element:
        tree.setdefault(_local(child.tag), []).append(_element(child))
    if element.text is not None and (element.text.strip() or len(element) == 0):
        tree["value"] = element.text
    return tree


def xml_as_tree(xml_bytes: bytes) -> dict[str, Any]:
    """The XML answer as `{root tag: tree}`: a tree is a dict of attributes (text), child elements by tag (always a
    list, in document order) and the element's text under `value`."""
    root = ET.fromstring(xml_bytes)
    return {_local(root.tag): _element(root)}


# Characters outside XML 1.0's Char production: no XML document can hold them, so the XML form carries U+FFFD.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML_CHAR.sub("\ufffd", str(value))


def _as_tree(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON object as the tree its XML form should parse to (see xml_as_tree)."""
    tree: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, dict):
            tree[key] = [_as_tree(item)]
        elif isinstance(item, list):
            if item:
                tree[key] = [_as_tree(x) if isinstance(x, dict) else {"value": _text(x)} for x in item]
        elif key != "value" or item != "":  # XML cannot tell empty text from none: <lyrics/>
            tree[key] = _text(item)
    return tree


def _canonical(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _diff(want: Any, got: Any, path: str, volatile: frozenset[str], unordered: bool, out: list[str]) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(want.keys() | got.keys()):
            if key not in got:
                out.append(f"{path}.{key}: in JSON ({_canonical(want[key])[:60]}), missing from XML")
            elif key not in want:
                out.append(f"{path}.{key}: in XML ({_canonical(got[key])[:60]}), missing from JSON")
            elif key in volatile and isinstance(want[key], str) and isinstance(got[key], str):
                continue  # present on both sides; its value belongs to each call (a new id, a timestamp)
            else:
                _diff(want[key], got[key], f"{path}.{key}", volatile, unordered, out)
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            out.append(f"{path}: {len(want)} in JSON, {len(got)} elements in XML")
            return
        if unordered:
            want, got = sorted(want, key=_canonical), sorted(got, key=_canonical)
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            _diff(a, b, path if len(want) == 1 else f"{path}[{i}]", volatile, unordered, out)
    elif isinstance(want, str) and isinstance(got, list) and len(got) == 1 and got[0].keys() == {"value"}:
        # A field Subsonic's XML carries as an element's text (plyrd.subsonic.envelope.Text): <notes>...</notes>.
        _diff(want, got[0]["value"], path, volatile, unordered, out)
    elif want != got:
        out.append(f"{path}: JSON {want!r}, XML {got!r}")


def content_differences(json_body: dict[str, Any], xml_bytes: bytes, *, volatile: Iterable[str] = (),
                        unordered: bool = False) -> list[str]:
    """How the XML answer differs from the JSON one (empty: the same content). `volatile` names fields whose values
    belong to each call (both forms must still carry them); `unordered` compares lists as multisets (random
    orders)."""
    want = {key: [_as_tree(value)] for key, value in json_body.items()}
    got = {key: [value] for key, value in xml_as_tree(xml_bytes).items()}
    out: list[str] = []
    _diff(want, got, "$", frozenset(volatile), unordered, out)
    return out


def same_content(json_body: dict[str, Any], xml_bytes: bytes, *, volatile: Iterable[str] = (),
                 unordered: bool = False) -> None:
    problems = content_differences(json_body, xml_bytes, volatile=volatile, unordered=unordered)
    assert not problems, "the XML answer differs from the JSON one:\n  " + "\n  ".join(problems[:30])
