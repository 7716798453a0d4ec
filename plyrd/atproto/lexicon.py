"""plyrd's copies of the lexicons (plyrd/atproto/lexicons/) and the validation of records against them.

    validate("fm.plyr.like", record)              # raises RecordInvalid (an InvalidInput) naming the path and rule

plyrd never asks the PDS to validate (`validate: true` fails on a PDS that does not know `fm.plyr.*`), so it
validates here. Also here: the atproto string formats (`is_did`, `is_tid`, `is_at_uri`...) and grapheme counting.

Lexicon string limits follow the atproto spec: maxLength/minLength count UTF-8 bytes, maxGraphemes/minGraphemes
count grapheme clusters. `knownValues` is an open set (documentation, not a rule); `enum` and `const` are closed.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import libipld

from ..errors import InvalidInput
from .cbor import decode_bytes

# --------------------------------------------------------------------------- errors


class RecordInvalid(InvalidInput):
    """A record does not match its lexicon. `path` is where (`$.features[1].did`), `rule` which rule failed."""

    def __init__(self, collection: str, path: str, rule: str, message: str) -> None:
        super().__init__(f"{collection} record is invalid at {path}: {message} ({rule})")
        self.collection = collection
        self.path = path
        self.rule = rule


# --------------------------------------------------------------------------- lexicons


@functools.cache
def lexicons() -> dict[str, dict[str, Any]]:
    """Every lexicon shipped in plyrd.atproto.lexicons, by id (read once)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in resources.files("plyrd.atproto.lexicons").iterdir():
        if not entry.name.endswith(".json"):
            continue
        doc = json.loads(entry.read_text(encoding="utf-8"))
        if doc.get("lexicon") != 1 or f"{doc.get('id')}.json" != entry.name:
            raise RuntimeError(f"lexicon file {entry.name} does not hold lexicon {entry.name[:-5]}")
        found[doc["id"]] = doc
    return found


def record_collections() -> list[str]:
    """The collections plyrd has a record lexicon for."""
    return sorted(nsid for nsid, doc in lexicons().items() if doc["defs"].get("main", {}).get("type") == "record")


def _split_ref(ref: str, context: str) -> tuple[str, str]:
    """`#name` is local to the lexicon `context`; `nsid` means `nsid#main`."""
    nsid, _, name = ref.partition("#")
    return (nsid or context), (name or "main")


def _def(nsid: str, name: str) -> dict[str, Any]:
    doc = lexicons().get(nsid)
    if doc is None or name not in doc["defs"]:
        raise RuntimeError(f"lexicon reference {nsid}#{name} is not shipped with plyrd")
    definition: dict[str, Any] = doc["defs"][name]
    return definition


def _type_name(nsid: str, name: str) -> str:
    return nsid if name == "main" else f"{nsid}#{name}"


# --------------------------------------------------------------------------- string formats

_DATETIME = re.compile(
    r"^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,20})?(Z|[+-][0-2][0-9]:[0-5][0-9])$"
)
_DID = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
_HANDLE = re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_NSID = re.compile(
    r"^[a-zA-Z]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z]([a-zA-Z0-9]{0,62})$"
)
_RKEY = re.compile(r"^[a-zA-Z0-9._:~-]{1,512}$")
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$")
_LANGUAGE = re.compile(r"^(i|[a-zA-Z]{2,3})(-[a-zA-Z0-9]{1,8})*$")


def is_datetime(value: str) -> bool:
    """atproto's datetime: RFC 3339 with seconds and an explicit zone (`Z` or ±hh:mm, never -00:00)."""
    if len(value) > 64 or not _DATETIME.match(value) or value.endswith("-00:00") or value.startswith("0000"):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def is_did(value: str) -> bool:
    return len(value) <= 2048 and bool(_DID.match(value))


def is_handle(value: str) -> bool:
    return len(value) <= 253 and bool(_HANDLE.match(value))


def is_nsid(value: str) -> bool:
    return len(value) <= 317 and bool(_NSID.match(value))


def is_record_key(value: str) -> bool:
    return bool(_RKEY.match(value)) and value not in (".", "..")


def is_tid(value: str) -> bool:
    return bool(_TID.match(value))


def is_at_uri(value: str) -> bool:
    """The restricted form atproto records use: at://authority[/collection[/rkey]], authority a DID or handle."""
    if len(value) > 8192 or not value.startswith("at://"):
        return False
    parts = value[5:].split("/")
    if len(parts) > 3 or not parts[0]:
        return False
    if not (is_did(parts[0]) or is_handle(parts[0])):
        return False
    if len(parts) >= 2 and not is_nsid(parts[1]):
        return False
    return len(parts) < 3 or is_record_key(parts[2])


def is_uri(value: str) -> bool:
    return len(value) <= 8192 and bool(_URI.match(value))


def is_cid(value: str) -> bool:
    try:
        libipld.decode_cid(value)
    except ValueError:
        return False
    return 8 <= len(value) <= 256


def is_language(value: str) -> bool:
    return len(value) <= 128 and bool(_LANGUAGE.match(value))


FORMATS = {
    "datetime": is_datetime,
    "did": is_did,
    "handle": is_handle,
    "at-identifier": lambda v: is_did(v) or is_handle(v),
    "nsid": is_nsid,
    "record-key": is_record_key,
    "tid": is_tid,
    "at-uri": is_at_uri,
    "uri": is_uri,
    "cid": is_cid,
    "language": is_language,
}


# --------------------------------------------------------------------------- graphemes


def _hangul_type(cp: int) -> str:
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return "L"
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return "V"
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return "T"
    if 0xAC00 <= cp <= 0xD7A3:
        return "LV" if (cp - 0xAC00) % 28 == 0 else "LVT"
    return ""


def _extends(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or cp == 0x200D  # zero-width joiner
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences
    )


def grapheme_count(text: str) -> int:
    """User-perceived characters, following the main rules of UAX #29 (combining marks, ZWJ emoji sequences,
    flags, Hangul syllables, CR LF). Close enough for length limits; the stdlib has no segmenter."""
    count = 0
    prev = ""
    regional_run = 0
    for ch in text:
        cp = ord(ch)
        regional = 0x1F1E6 <= cp <= 0x1F1FF
        joins = False
        if prev:
            pcp = ord(prev)
            if prev == "\r" and ch == "\n":
                joins = True
            elif prev in "\r\n" or ch in "\r\n":
                joins = False
            elif _extends(ch):
                joins = True
            elif pcp == 0x200D and unicodedata.category(ch) == "So":
                joins = True  # emoji ZWJ sequence (approximates Extended_Pictographic)
            elif regional and regional_run % 2 == 1:
                joins = True
            else:
                p, c = _hangul_type(pcp), _hangul_type(cp)
                joins = (
                    (p == "L" and c in ("L", "V", "LV", "LVT"))
                    or (p in ("LV", "V") and c in ("V", "T"))
                    or (p in ("LVT", "T") and c == "T")
                )
        if not joins:
            count += 1
        regional_run = regional_run + 1 if regional else 0
        prev = ch
    return count


# --------------------------------------------------------------------------- validation

MAX_SAFE_INTEGER = 2**53 - 1


class _Validator:
    def __init__(self, collection: str) -> None:
        self.collection = collection

    def fail(self, path: str, rule: str, message: str) -> RecordInvalid:
        return RecordInvalid(self.collection, path, rule, message)

    def data(self, value: Any, path: str) -> None:
        """The atproto data model, whatever the lexicon says: no floats, string keys, well-formed $link/$bytes."""
        if value is None or isinstance(value, bool | str):
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise self.fail(path, "data", "text is not valid Unicode") from None
            return
        if isinstance(value, int):
            # The spec allows 64 bits but asks for JavaScript-safe integers; the reference PDS fails (500) beyond.
            if abs(value) > MAX_SAFE_INTEGER:
                raise self.fail(path, "data", "integer beyond ±(2^53 - 1)")
            return
        if isinstance(value, float):
            raise self.fail(path, "data", "floats are not allowed in atproto records; use an integer")
        if isinstance(value, list | tuple):
            for i, item in enumerate(value):
                self.data(item, f"{path}[{i}]")
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(path, "data", "object keys must be strings")
                self.data(item, f"{path}.{key}")
            if "$link" in value and (len(value) != 1 or not isinstance(value["$link"], str)
                                     or not is_cid(value["$link"])):
                raise self.fail(path, "data", "$link must be the only key and hold a CID")
            if "$bytes" in value and (len(value) != 1 or decode_bytes(value["$bytes"]) is None):
                raise self.fail(path, "data", "$bytes must be the only key and hold base64")
            return
        raise self.fail(path, "data", f"{type(value).__name__} is not an atproto value")

    def value(self, schema: dict[str, Any], value: Any, path: str, context: str) -> None:
        kind = schema.get("type")
        if kind == "ref":
            nsid, name = _split_ref(schema["ref"], context)
            self.value(_def(nsid, name), value, path, nsid)
        elif kind == "union":
            self.union(schema, value, path, context)
        elif kind in ("object", "params"):
            self.object(schema, value, path, context)
        elif kind == "string":
            self.string(schema, value, path)
        elif kind == "integer":
            self.integer(schema, value, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise self.fail(path, "type", "must be a boolean")
            if "const" in schema and value != schema["const"]:
                raise self.fail(path, "const", f"must be {schema['const']}")
        elif kind == "null":
            if value is not None:
                raise self.fail(path, "type", "must be null")
        elif kind == "array":
            self.array(schema, value, path, context)
        elif kind == "blob":
            self.blob(schema, value, path)
        elif kind == "cid-link":
            if not (isinstance(value, Mapping) and set(value) == {"$link"}):
                raise self.fail(path, "type", 'must be a CID link {"$link": cid}')
        elif kind == "bytes":
            raw = decode_bytes(value.get("$bytes")) if isinstance(value, Mapping) and set(value) == {"$bytes"} else None
            if raw is None:
                raise self.fail(path, "type", 'must be bytes {"$bytes": base64}')
            self.length(schema, len(raw), path, "bytes")
        elif kind == "unknown":
            if not isinstance(value, Mapping):
                raise self.fail(path, "type", "must be an object")
        else:
            raise RuntimeError(f"lexicon type {kind!r} at {path} is not supported by plyrd's validator")

    def object(self, schema: dict[str, Any], value: Any, path: str, context: str) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, "type", "must be an object")
        nullable = set(schema.get("nullable", ()))
        for key in schema.get("required", ()):
            if key not in value or (value[key] is None and key not in nullable):
                raise self.fail(f"{path}.{key}", "required", "is required")
        for key, prop in schema.get("properties", {}).items():
            if key not in value:
                continue
            if value[key] is None:
                if key in nullable:
                    continue
                raise self.fail(f"{path}.{key}", "nullable", "must not be null")
            self.value(prop, value[key], f"{path}.{key}", context)

    def union(self, schema: dict[str, Any], value: Any, path: str, context: str) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, "type", "must be an object")
        type_ = value.get("$type")
        if not isinstance(type_, str) or not type_:
            raise self.fail(f"{path}.$type", "union", "a union member must say its $type")
        wanted = type_[:-5] if type_.endswith("#main") else type_
        for ref in schema.get("refs", ()):
            nsid, name = _split_ref(ref, context)
            if _type_name(nsid, name) == wanted:
                self.value(_def(nsid, name), value, path, nsid)
                return
        if schema.get("closed"):
            raise self.fail(f"{path}.$type", "union", f"{type_} is not one of {', '.join(schema['refs'])}")
        # An open union accepts types it does not know (the spec's forward compatibility).

    def string(self, schema: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise self.fail(path, "type", "must be a string")
        self.length(schema, len(value.encode("utf-8")), path, "bytes")
        if "maxGraphemes" in schema or "minGraphemes" in schema:
            graphemes = grapheme_count(value)
            if "maxGraphemes" in schema and graphemes > schema["maxGraphemes"]:
                raise self.fail(path, "maxGraphemes", f"must be at most {schema['maxGraphemes']} characters")
            if "minGraphemes" in schema and graphemes < schema["minGraphemes"]:
                raise self.fail(path, "minGraphemes", f"must be at least {schema['minGraphemes']} characters")
        if "const" in schema and value != schema["const"]:
            raise self.fail(path, "const", f"must be {schema['const']!r}")
        if "enum" in schema and value not in schema["enum"]:
            raise self.fail(path, "enum", f"must be one of {', '.join(schema['enum'])}")
        fmt = schema.get("format")
        if fmt is not None:
            check = FORMATS.get(fmt)
            if check is None:
                raise RuntimeError(f"string format {fmt!r} is not supported by plyrd's validator")
            if not check(value):
                raise self.fail(path, "format", f"must be a valid {fmt}")

    def length(self, schema: dict[str, Any], n: int, path: str, unit: str) -> None:
        if "maxLength" in schema and n > schema["maxLength"]:
            raise self.fail(path, "maxLength", f"must be at most {schema['maxLength']} {unit}")
        if "minLength" in schema and n < schema["minLength"]:
            raise self.fail(path, "minLength", f"must be at least {schema['minLength']} {unit}")

    def integer(self, schema: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, "type", "must be an integer")
        if "minimum" in schema and value < schema["minimum"]:
            raise self.fail(path, "minimum", f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise self.fail(path, "maximum", f"must be at most {schema['maximum']}")
        if "enum" in schema and value not in schema["enum"]:
            raise self.fail(path, "enum", f"must be one of {schema['enum']}")
        if "const" in schema and value != schema["const"]:
            raise self.fail(path, "const", f"must be {schema['const']}")

    def array(self, schema: dict[str, Any], value: Any, path: str, context: str) -> None:
        if not isinstance(value, list | tuple):
            raise self.fail(path, "type", "must be an array")
        self.length(schema, len(value), path, "items")
        for i, item in enumerate(value):
            self.value(schema["items"], item, f"{path}[{i}]", context)

    def blob(self, schema: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, Mapping) or value.get("$type") != "blob":
            raise self.fail(path, "type", 'must be a blob ref {"$type": "blob", ...}')
        ref = value.get("ref")
        if not (isinstance(ref, Mapping) and set(ref) == {"$link"}):
            raise self.fail(f"{path}.ref", "type", 'must be {"$link": cid}')
        mime, size = value.get("mimeType"), value.get("size")
        if not isinstance(mime, str) or "/" not in mime:
            raise self.fail(f"{path}.mimeType", "type", "must be a MIME type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self.fail(f"{path}.size", "type", "must be a size in bytes")
        accept = schema.get("accept")
        if accept and not any(_mime_matches(pattern, mime) for pattern in accept):
            raise self.fail(f"{path}.mimeType", "accept", f"{mime} is not one of {', '.join(accept)}")
        if "maxSize" in schema and size > schema["maxSize"]:
            raise self.fail(f"{path}.size", "maxSize", f"must be at most {schema['maxSize']} bytes")


def _mime_matches(pattern: str, mime: str) -> bool:
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return mime.lower().startswith(pattern[:-1].lower())
    return mime.lower() == pattern.lower()


def validate(collection: str, record: Any) -> None:
    """Check `record` against the lexicon of `collection`; raise RecordInvalid (an InvalidInput) at the first
    problem, naming the path and the rule. The record's `$type` must be the collection."""
    doc = lexicons().get(collection)
    main = doc["defs"].get("main") if doc else None
    if main is None or main.get("type") != "record":
        raise InvalidInput(f"plyrd has no record lexicon for {collection}")
    v = _Validator(collection)
    if not isinstance(record, Mapping):
        raise v.fail("$", "type", "a record must be an object")
    v.data(record, "$")
    if record.get("$type") != collection:
        raise v.fail("$.$type", "$type", f"must be {collection}")
    v.object(main["record"], record, "$", collection)


def validate_value(schema: dict[str, Any], value: Any, *, lexicon: str = "value", path: str = "$") -> None:
    """Check one value against one lexicon field definition (refs resolve against `lexicon`)."""
    v = _Validator(lexicon)
    v.data(value, path)
    v.value(schema, value, path, lexicon)


def validate_rkey(collection: str, rkey: str) -> None:
    """The record key must suit the lexicon's `key`: a TID, `literal:<value>`, or any valid key."""
    doc = lexicons().get(collection)
    key = doc["defs"]["main"].get("key", "any") if doc else "any"
    if not isinstance(rkey, str) or not is_record_key(rkey):
        raise InvalidInput(f"{rkey!r} is not a valid record key")
    if key == "tid" and not is_tid(rkey):
        raise InvalidInput(f"{collection} records are keyed by TID; {rkey!r} is not one")
    if key.startswith("literal:") and rkey != key[len("literal:"):]:
        raise InvalidInput(f"{collection} has one record, keyed {key[len('literal:'):]!r}")
