"""`com.atproto.sync.subscribeRepos` frames (a relay's or a PDS's firehose) to events.

A frame is two DAG-CBOR values: a header ({op: 1, t: "#commit"} or {op: -1} for an error) and a body. A `#commit`
lists its ops (action, "collection/rkey" path, record CID) and carries the new blocks as a CAR file. Throughput comes
from filtering before decoding: ops are matched against the handler's wanted collections first, and only the record
blocks of wanted ops are decoded; the CAR is walked by its section lengths without decoding any other block (MST
nodes, the signed commit, unwanted records). A frame with no wanted op costs one CBOR decode of the frame.

Decoding is libipld's (the atproto SDK's DAG-CBOR and CAR decoder; the SDK's own frame classes are not used because
importing them loads its whole generated client, ~55 MB). Commit signatures are not verified: the node trusts the
firehose it was configured with, as Jetstream's users trust Jetstream; a record's bytes are checked against the CID
the op names.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Set
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import libipld

from .decoded import ACTIONS, OK, Decoded, StreamError, malformed, skipped, valid_cursor, valid_did, valid_rkey
from .events import AccountEvent, Action, Event, IdentityEvent, RecordOp

NAME = "firehose"
# The firehose replays from the event after `cursor` (seq is exclusive), so a stored cursor is never delivered again.
INCLUSIVE_CURSOR = False
MAX_MESSAGE_BYTES = 5 * 1024 * 1024  # a commit's CAR is capped at 2 MB by relays; frames are smaller than this

_SHA2_256 = 0x12


def subscribe_url(base: str, cursor: int | None, wanted: Set[str]) -> str:
    """The websocket URL to read from: `base` as configured (a host or the full subscribeRepos path), with
    `cursor` when resuming. The firehose cannot filter by collection: `wanted` is applied here, after reading."""
    parts = urlsplit(base)
    path = parts.path
    if not path.rstrip("/").endswith("/xrpc/com.atproto.sync.subscribeRepos"):
        path = path.rstrip("/") + "/xrpc/com.atproto.sync.subscribeRepos"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "cursor"]
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def decode(message: bytes | str, wanted: Set[str]) -> Decoded:
    """One websocket message (a binary frame) to what it means for the handler. Never raises on bad input, except
    `StreamError` for the server's error frame."""
    if not isinstance(message, bytes | bytearray):
        return malformed("text message on a binary stream")
    try:
        parts = libipld.decode_dag_cbor_multi(bytes(message))
    except (ValueError, RecursionError, OverflowError) as e:
        return malformed(f"not DAG-CBOR: {e}")
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        return malformed("a frame is a header and a body")
    header, body = parts
    op = header.get("op")
    if op == -1:
        error = body.get("error")
        text = body.get("message")
        raise StreamError(error if isinstance(error, str) else "unknown", text if isinstance(text, str) else None)
    if op != 1:
        return malformed(f"unknown frame op {op!r}")
    kind = header.get("t")
    try:
        if kind == "#commit":
            return _commit(body, wanted)
        if kind == "#identity":
            return _identity(body)
        if kind == "#account":
            return _account(body)
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as e:
        # Anything the shape checks below did not foresee still only costs this frame.
        return malformed(f"{kind}: {type(e).__name__}: {e}", _seq(body))
    if kind == "#info":
        name = body.get("name")
        return skipped(f"info {name if isinstance(name, str) else '?'}: {body.get('message')}")
    return skipped(f"type {kind!r}", _seq(body))  # #sync, and whatever later versions add


def _seq(body: dict[str, Any]) -> int | None:
    seq = body.get("seq")
    return seq if valid_cursor(seq) else None


def _time_us(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1_000_000)
    except (ValueError, OverflowError):
        return None


def _commit(body: dict[str, Any], wanted: Set[str]) -> Decoded:
    seq = body.get("seq")
    did = body.get("repo")
    ops = body.get("ops")
    if not valid_cursor(seq):
        return malformed("#commit without a seq")
    if not valid_did(did) or not isinstance(ops, list):
        return malformed("#commit without a repo or ops", seq)
    # The cheap filter: which ops are wanted, before anything else is decoded.
    chosen: list[tuple[str, str, Action, bytes | None]] = []
    for op in ops:
        if not isinstance(op, dict):
            return malformed("#commit op is not a map", seq)
        path = op.get("path")
        if not isinstance(path, str):
            return malformed("#commit op without a path", seq)
        collection, _, rkey = path.partition("/")
        if collection in wanted:
            action = ACTIONS.get(op.get("action"))
            cid = op.get("cid")
            if action is None or not valid_rkey(rkey) or not (cid is None or isinstance(cid, bytes)):
                return malformed(f"#commit op {path!r} is not an op", seq)
            if (action == "delete") != (cid is None):
                return malformed(f"#commit op {path!r}: a {action} with{'' if cid else 'out'} a cid", seq)
            chosen.append((collection, rkey, action, cid))
    time_us = _time_us(body.get("time"))
    if not chosen:
        return Decoded(OK, cursor=seq, time_us=time_us)
    blocks = body.get("blocks")
    needed = {cid for *_, cid in chosen if cid is not None}
    found: dict[bytes, bytes] = {}
    if needed:
        if not isinstance(blocks, bytes):
            return malformed("#commit without blocks", seq)
        try:
            found = car_blocks(blocks, needed)
        except ValueError as e:
            return malformed(f"#commit blocks: {e}", seq)
    events: list[Event] = []
    for collection, rkey, action, cid in chosen:
        if cid is None:
            events.append(RecordOp(did, collection, rkey, "delete", None, None, seq))
            continue
        block = found.get(cid)
        if block is None:
            return malformed(f"#commit: no block for {collection}/{rkey}", seq)
        record = libipld.decode_dag_cbor(block)
        if not isinstance(record, dict):
            return malformed(f"#commit: {collection}/{rkey} is not a map", seq)
        events.append(RecordOp(did, collection, rkey, action, libipld.encode_cid(cid), to_json(record, block),
                               seq))
    return Decoded(OK, events, cursor=seq, time_us=time_us)


def _identity(body: dict[str, Any]) -> Decoded:
    seq, did, handle = body.get("seq"), body.get("did"), body.get("handle")
    if not valid_cursor(seq):
        return malformed("#identity without a seq")
    if not valid_did(did) or not (handle is None or isinstance(handle, str)):
        return malformed("#identity without a did", seq)
    return Decoded(OK, [IdentityEvent(did, handle, seq)], cursor=seq, time_us=_time_us(body.get("time")))


def _account(body: dict[str, Any]) -> Decoded:
    seq, did, active, status = body.get("seq"), body.get("did"), body.get("active"), body.get("status")
    if not valid_cursor(seq):
        return malformed("#account without a seq")
    if not valid_did(did) or not isinstance(active, bool) or not (status is None or isinstance(status, str)):
        return malformed("#account without a did or active", seq)
    return Decoded(OK, [AccountEvent(did, active, status, seq)], cursor=seq, time_us=_time_us(body.get("time")))


# --- CAR ----------------------------------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def car_blocks(car: bytes, wanted: Set[bytes]) -> dict[bytes, bytes]:
    """The blocks of a CAR v1 file whose CIDs (raw bytes, as libipld decodes a CID link) are in `wanted`, each
    checked to hash to its CID. Other blocks are skipped by length, never decoded."""
    header_len, pos = _varint(car, 0)
    pos += header_len  # {roots, version}: not needed to find blocks
    if pos > len(car):
        raise ValueError("truncated CAR header")
    found: dict[bytes, bytes] = {}
    end = len(car)
    while pos < end and len(found) < len(wanted):
        length, start = _varint(car, pos)
        stop = start + length
        if length == 0 or stop > end:
            raise ValueError("truncated CAR section")
        if car[start] == _SHA2_256 and start + 1 < stop and car[start + 1] == 32:  # CIDv0: a bare sha2-256 multihash
            cid_end = start + 34
        else:
            _version, p = _varint(car, start)
            _codec, p = _varint(car, p)
            _code, p = _varint(car, p)
            digest_len, p = _varint(car, p)
            cid_end = p + digest_len
        if cid_end > stop:
            raise ValueError("CID runs past its CAR section")
        cid = car[start:cid_end]
        if cid in wanted:
            block = car[cid_end:stop]
            if cid[-34:-32] != b"\x12\x20" or hashlib.sha256(block).digest() != cid[-32:]:
                raise ValueError(f"block {libipld.encode_cid(cid)} does not match its CID")
            found[cid] = block
        pos = stop
    return found


# --- the JSON form ------------------------------------------------------------------------------------------------


def to_json(value: Any, block: bytes) -> Any:
    """A decoded record in the JSON form getRecord answers with: CID links as {"$link"}, bytes as {"$bytes"} (blob
    refs are maps holding a link, so they come out as {"$type": "blob", "ref": {"$link": ...}, ...}).

    libipld decodes a CID link (CBOR tag 42) and a byte string alike, to bytes. A value is a link when the block holds
    it tagged: tag 42, a byte string of 0x00 + the CID. (A byte string that equals a link elsewhere in the same record
    would read as a link too; such a record is made up, and its lexicon check then fails on that field.)"""
    if isinstance(value, dict):
        return {k: to_json(v, block) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v, block) for v in value]
    if isinstance(value, bytes):
        return _link_or_bytes(value, block)
    return value


def _cbor_bytes_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 0x100:
        return bytes([0x58, n])
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def _link_or_bytes(value: bytes, block: bytes) -> dict[str, str]:
    if value[:1] == b"\x01":
        tagged = b"\xd8\x2a" + _cbor_bytes_head(len(value) + 1) + b"\x00" + value
        if tagged in block:
            try:
                return {"$link": libipld.encode_cid(value)}
            except ValueError:
                pass
    return {"$bytes": base64.b64encode(value).decode().rstrip("=")}
