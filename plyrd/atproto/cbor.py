"""Records as DAG-CBOR, and the CIDs a PDS gives records and blobs, computed locally.

    cid = record_cid(record)                       # what the PDS will answer, known beforehand
    ref = blob_ref(sha256_hex, "audio/mpeg", size) # equal to what uploadBlob answers for the same bytes

CIDs are computed here so a strongRef or a blob ref can be stored in the same transaction that queues the write,
before the PDS has seen it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import libipld

from ..errors import InvalidInput

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
            raw = decode_bytes(value["$bytes"])
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


def decode_bytes(value: Any) -> bytes | None:
    """The bytes a `{"$bytes": ...}` value holds (base64, padding optional), or None when it is not base64."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
