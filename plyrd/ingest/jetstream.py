"""Jetstream messages (the firehose re-encoded as JSON, filtered by collection on the server) to events.

    {"did": ..., "time_us": ..., "kind": "commit",
     "commit": {"rev", "operation": "create"|"update"|"delete", "collection", "rkey", "record", "cid"}}
    {"did": ..., "time_us": ..., "kind": "identity", "identity": {"did", "handle", "seq", "time"}}
    {"did": ..., "time_us": ..., "kind": "account", "account": {"active", "did", "seq", "time", "status"}}

Records are already in getRecord's JSON form. The server filters by `wantedCollections`, and the decoder filters
again: nothing a server sends is trusted to be what was asked for.
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .decoded import ACTIONS, OK, Decoded, malformed, skipped, valid_cursor, valid_did, valid_rkey
from .events import AccountEvent, IdentityEvent, RecordOp

NAME = "jetstream"
# Jetstream replays from `cursor` inclusive: the last event handled before a restart is delivered once more.
INCLUSIVE_CURSOR = True
MAX_MESSAGE_BYTES = 1024 * 1024

def subscribe_url(base: str, cursor: int | None, wanted: Set[str]) -> str:
    """`base` (e.g. wss://jetstream2.us-east.bsky.network/subscribe) with one `wantedCollections` per wanted
    collection, and `cursor` (time_us) when resuming."""
    parts = urlsplit(base)
    keep = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("cursor", "wantedCollections")]
    query = keep + [("wantedCollections", c) for c in sorted(wanted)]
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/subscribe", urlencode(query), ""))


def decode(message: bytes | str, wanted: Set[str]) -> Decoded:
    """One websocket message (a JSON text) to what it means for the handler. Never raises on bad input."""
    try:
        value = json.loads(message)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        return malformed(f"not JSON: {e}")
    if not isinstance(value, dict):
        return malformed("not a JSON object")
    time_us = value.get("time_us")
    if not valid_cursor(time_us):
        return malformed("no time_us")
    did, kind = value.get("did"), value.get("kind")
    if not valid_did(did):
        return malformed(f"{kind}: no did", time_us)
    if kind not in ("commit", "identity", "account"):
        return skipped(f"kind {kind!r}", time_us)
    body = value.get(kind)
    if not isinstance(body, dict):
        return malformed(f"{kind} without its {kind} object", time_us)
    if kind == "commit":
        return _commit(did, time_us, body, wanted)
    if kind == "identity":
        handle = body.get("handle")
        if body.get("did", did) != did or not (handle is None or isinstance(handle, str)):
            return malformed("identity: did or handle", time_us)
        return Decoded(OK, [IdentityEvent(did, handle, time_us)], cursor=time_us, time_us=time_us)
    active, status = body.get("active"), body.get("status")
    if body.get("did", did) != did or not isinstance(active, bool) or not (status is None or isinstance(status, str)):
        return malformed("account: did, active or status", time_us)
    return Decoded(OK, [AccountEvent(did, active, status, time_us)], cursor=time_us, time_us=time_us)


def _commit(did: str, time_us: int, commit: dict[str, Any], wanted: Set[str]) -> Decoded:
    collection = commit.get("collection")
    if not isinstance(collection, str):
        return malformed("commit without a collection", time_us)
    if collection not in wanted:
        return Decoded(OK, cursor=time_us, time_us=time_us)
    operation, rkey = ACTIONS.get(commit.get("operation")), commit.get("rkey")
    if operation is None or not valid_rkey(rkey):
        return malformed("commit: operation or rkey", time_us)
    if operation == "delete":
        return Decoded(OK, [RecordOp(did, collection, rkey, "delete", None, None, time_us)], cursor=time_us,
                       time_us=time_us)
    record, cid = commit.get("record"), commit.get("cid")
    if not isinstance(record, dict) or not isinstance(cid, str) or not cid:
        return malformed(f"commit: a {operation} without its record and cid", time_us)
    return Decoded(OK, [RecordOp(did, collection, rkey, operation, cid, record, time_us)], cursor=time_us,
                   time_us=time_us)
