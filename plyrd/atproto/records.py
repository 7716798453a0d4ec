"""The records plyrd writes to users' PDSes: lexicon validation, TIDs, locally computed CIDs and record builders.

    record = like_record(track_uri, track_cid, created_at=now)      # a plain dict with $type, already validated
    validate("fm.plyr.like", record)                               # raises RecordInvalid (an InvalidInput)
    cid = record_cid(record)                                       # what the PDS will answer, known beforehand
    rkey = new_tid()

plyrd never asks the PDS to validate (`validate: true` fails on a PDS that does not know `fm.plyr.*`), so it
validates here, against its own copies of the lexicons (plyrd/atproto/lexicons/). CIDs are computed locally so a
strongRef or a blob ref can be stored in the same transaction that queues the write, before the PDS has seen it.

Lexicon string limits follow the atproto spec: maxLength/minLength count UTF-8 bytes, maxGraphemes/minGraphemes
count grapheme clusters. `knownValues` is an open set (documentation, not a rule); `enum` and `const` are closed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import re
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import libipld

from .. import __version__
from ..errors import InvalidInput

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
            if "$bytes" in value and (len(value) != 1 or _b64(value["$bytes"]) is None):
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
            raw = _b64(value.get("$bytes")) if isinstance(value, Mapping) and set(value) == {"$bytes"} else None
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


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


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


# --------------------------------------------------------------------------- TIDs

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One random clock id per process, so two processes minting TIDs in the same microsecond still differ.
_CLOCK_ID = int.from_bytes(os.urandom(2), "big") & 0x3FF
_tid_lock = threading.Lock()
_last_us = 0


def _encode_tid(micros: int, clock_id: int) -> str:
    n = (micros << 10) | (clock_id & 0x3FF)
    out = []
    for _ in range(13):
        out.append(_TID_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def new_tid() -> str:
    """A fresh TID: microseconds since the epoch and this process's clock id. Strictly increasing within the
    process, even when the clock stands still or steps back."""
    global _last_us
    with _tid_lock:
        now = time.time_ns() // 1000
        _last_us = now if now > _last_us else _last_us + 1
        return _encode_tid(_last_us, _CLOCK_ID)


def tid_for_time(when: datetime, clock_id: int = 0) -> str:
    """The TID of an instant (naive datetimes are UTC). Deterministic, so a retried write of a teal.fm play keyed
    by its playedTime lands on the same record; clock id 0 as plyr.fm uses."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    if micros < 0 or micros >= 1 << 53:
        raise InvalidInput("a TID needs a time between 1970 and the year 287396")
    return _encode_tid(micros, clock_id)


def tid_time(tid: str) -> datetime:
    """When a TID was minted (to the microsecond)."""
    if not is_tid(tid):
        raise InvalidInput(f"{tid!r} is not a TID")
    n = 0
    for ch in tid:
        n = (n << 5) | _TID_ALPHABET.index(ch)
    return _EPOCH + timedelta(microseconds=n >> 10)


# --------------------------------------------------------------------------- CIDs

_DAG_CBOR = 0x71
_RAW = 0x55
_SHA2_256 = 0x12


def _cid_bytes(codec: int, digest: bytes) -> bytes:
    # CIDv1: version, codec, multihash (code, length, digest); every value here fits one varint byte.
    return bytes([0x01, codec, _SHA2_256, len(digest)]) + digest


def _cid_to_bytes(cid: str) -> bytes:
    if not cid.startswith("b"):
        raise InvalidInput(f"{cid!r} is not a base32 CIDv1 (atproto records link CIDv1 only)")
    try:
        raw = libipld.decode_multibase(cid)[1]
        libipld.decode_cid(raw)
    except ValueError as e:
        raise InvalidInput(f"{cid!r} is not a CID: {e}") from None
    return raw


def _to_ipld(value: Any) -> Any:
    """The JSON form of atproto data to what libipld encodes: {"$link"} -> CID bytes (libipld writes bytes that
    parse as a CID as tag 42), {"$bytes"} -> bytes. Floats are refused: they are not in the data model."""
    if isinstance(value, Mapping):
        if "$link" in value and len(value) == 1:
            return _cid_to_bytes(value["$link"])
        if "$bytes" in value and len(value) == 1:
            raw = _b64(value["$bytes"])
            if raw is None:
                raise InvalidInput("$bytes must hold base64")
            return raw
        return {k: _to_ipld(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_ipld(v) for v in value]
    if isinstance(value, float):
        raise InvalidInput("floats are not allowed in atproto records")
    return value


def dag_cbor(record: Mapping[str, Any]) -> bytes:
    """The record's canonical DAG-CBOR bytes (what the PDS stores and hashes)."""
    return libipld.encode_dag_cbor(_to_ipld(record))


def record_cid(record: Mapping[str, Any]) -> str:
    """The CID a PDS gives this record: CIDv1, dag-cbor, sha2-256, base32 (`bafyrei...`)."""
    return libipld.encode_cid(_cid_bytes(_DAG_CBOR, hashlib.sha256(dag_cbor(record)).digest()))


def blob_cid(sha256_hex: str) -> str:
    """The CID of a blob from the SHA-256 of its bytes: CIDv1, raw codec, base32 (`bafkrei...`)."""
    try:
        digest = bytes.fromhex(sha256_hex)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise InvalidInput(f"{sha256_hex!r} is not a SHA-256 hex digest")
    return libipld.encode_cid(_cid_bytes(_RAW, digest))


def blob_ref(sha256_hex: str, mime: str, size: int) -> dict[str, Any]:
    """A blob reference as records carry it, equal to what uploadBlob answers for the same bytes."""
    return {"$type": "blob", "ref": {"$link": blob_cid(sha256_hex)}, "mimeType": mime, "size": int(size)}


def blob_cids(value: Any) -> list[str]:
    """Every blob CID a record references, in order, without repeats."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Mapping):
            if v.get("$type") == "blob" and isinstance(v.get("ref"), Mapping):
                link = v["ref"].get("$link")
                if isinstance(link, str) and link not in found:
                    found.append(link)
                return
            for item in v.values():
                walk(item)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item)

    walk(value)
    return found


def at_uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def strong_ref(uri: str, cid: str) -> dict[str, str]:
    """A com.atproto.repo.strongRef: one exact version of a record."""
    return {"uri": uri, "cid": cid}


# --------------------------------------------------------------------------- builders

DateLike = datetime | str
TEAL_STATUS_TTL = 600  # seconds a "now playing" status stays true, as plyr.fm writes it
LIST_TYPES = ("album", "playlist", "liked")


def format_datetime(when: DateLike) -> str:
    """UTC, millisecond precision, `Z`: the form atproto apps write (`2026-08-20T12:34:56.789Z`). Naive = UTC.
    A string is passed through (validation checks it)."""
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Optional fields are left out rather than written empty."""
    if value is not None and value != "" and value != [] and value != {}:
        out[key] = value


def _built(collection: str, record: dict[str, Any]) -> dict[str, Any]:
    validate(collection, record)
    return record


def track_record(
    *,
    title: str,
    artist: str,
    file_type: str,
    created_at: DateLike,
    audio_url: str | None = None,
    audio_blob: Mapping[str, Any] | None = None,
    album: str | None = None,
    duration: float | None = None,
    features: Sequence[Mapping[str, Any]] | None = None,
    image_url: str | None = None,
    support_gate: str | Mapping[str, Any] | None = None,
    description: str | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """An fm.plyr.track record. `audio_url` is the node's public URL for the audio; `audio_blob` (from `blob_ref`)
    the audio on the artist's PDS. Every rewrite of a track must pass the blob again: a record rewritten without
    it lets the PDS delete the audio. `features` are {did, handle?, displayName?}; `labels` self-label values."""
    if not audio_url and not audio_blob:
        raise InvalidInput("a track record needs audioUrl or audioBlob")
    record: dict[str, Any] = {"$type": "fm.plyr.track", "title": title, "artist": artist}
    _put(record, "audioUrl", audio_url)
    record["fileType"] = file_type
    _put(record, "album", album)
    if duration is not None:
        record["duration"] = max(0, round(duration))  # whole seconds: floats are not in the data model
    if features:
        record["features"] = [
            {k: f[k] for k in ("did", "handle", "displayName") if f.get(k) not in (None, "")} for f in features
        ]
    _put(record, "imageUrl", image_url)
    record["createdAt"] = format_datetime(created_at)
    if support_gate is not None:
        record["supportGate"] = {"type": support_gate} if isinstance(support_gate, str) else dict(support_gate)
    _put(record, "description", description)
    if labels:
        record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in labels]}
    if audio_blob:
        record["audioBlob"] = dict(audio_blob)
    return _built("fm.plyr.track", record)


def like_record(subject_uri: str, subject_cid: str, created_at: DateLike) -> dict[str, Any]:
    """An fm.plyr.like of one version of a track."""
    return _built("fm.plyr.like", {
        "$type": "fm.plyr.like",
        "subject": strong_ref(subject_uri, subject_cid),
        "createdAt": format_datetime(created_at),
    })


def comment_record(
    subject: Mapping[str, str], text: str, timestamp_ms: int, created_at: DateLike, updated_at: DateLike | None = None
) -> dict[str, Any]:
    """An fm.plyr.comment on `subject` (a strongRef) at a playback position in milliseconds."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.comment",
        "subject": strong_ref(subject["uri"], subject["cid"]),
        "text": text,
        "timestampMs": timestamp_ms,
        "createdAt": format_datetime(created_at),
    }
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.comment", record)


def list_record(
    list_type: str,
    name: str | None,
    items: Sequence[Mapping[str, str]],
    created_at: DateLike,
    updated_at: DateLike | None = None,
) -> dict[str, Any]:
    """An fm.plyr.list (album, playlist or liked) of strongRefs, in order."""
    if list_type not in LIST_TYPES:
        # The lexicon's set is open, but plyr.fm only understands these; plyrd writes nothing else.
        raise InvalidInput(f"listType must be one of {', '.join(LIST_TYPES)}")
    record: dict[str, Any] = {"$type": "fm.plyr.list"}
    _put(record, "name", name)
    record["listType"] = list_type
    record["items"] = [{"subject": strong_ref(i["uri"], i["cid"])} for i in items]
    record["createdAt"] = format_datetime(created_at)
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.list", record)


def profile_record(
    *, created_at: DateLike, bio: str | None = None, avatar: str | None = None, updated_at: DateLike | None = None
) -> dict[str, Any]:
    """The fm.plyr.actor.profile record (rkey `self`)."""
    record: dict[str, Any] = {"$type": "fm.plyr.actor.profile"}
    _put(record, "avatar", avatar)
    _put(record, "bio", bio)
    record["createdAt"] = format_datetime(created_at)
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.actor.profile", record)


def _play_fields(
    track_name: str,
    artists: Sequence[str],
    played_time: DateLike,
    music_service_uri: str,
    submission_client_agent: str,
    duration: float | None,
    release_name: str | None,
    origin_uri: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "trackName": track_name,
        "artists": [{"artistName": name} for name in artists],
        "musicServiceUri": music_service_uri,
        "submissionClientAgent": submission_client_agent,
        "playedTime": format_datetime(played_time),
    }
    if duration is not None:
        fields["duration"] = max(0, round(duration))
    _put(fields, "releaseName", release_name)
    _put(fields, "originUri", origin_uri)
    return fields


def teal_play_record(
    *,
    track_name: str,
    artists: Sequence[str],
    played_time: DateLike,
    music_service_uri: str,
    submission_client_agent: str = f"plyrd/{__version__}",
    duration: float | None = None,
    release_name: str | None = None,
    origin_uri: str | None = None,
) -> dict[str, Any]:
    """An fm.teal.feed.play (a scrobble). Key it with `tid_for_time(played_time)` so a retry is idempotent."""
    fields = _play_fields(track_name, artists, played_time, music_service_uri, submission_client_agent, duration,
                          release_name, origin_uri)
    return _built("fm.teal.feed.play", {"$type": "fm.teal.feed.play", **fields})


def teal_status_record(
    *, item: Mapping[str, Any], time: DateLike | None = None, expiry: DateLike | None = None
) -> dict[str, Any]:
    """The fm.teal.actor.status record (rkey `self`): `item` is a play record (its $type is dropped) or the same
    fields; `expiry` defaults to `time` + 10 minutes."""
    now = time if time is not None else datetime.now(UTC)
    if expiry is None:
        base = now if isinstance(now, datetime) else datetime.fromisoformat(now.replace("Z", "+00:00"))
        expiry = base + timedelta(seconds=TEAL_STATUS_TTL)
    return _built("fm.teal.actor.status", {
        "$type": "fm.teal.actor.status",
        "time": format_datetime(now),
        "expiry": format_datetime(expiry),
        "item": {k: v for k, v in item.items() if k != "$type"},
    })
