"""The node's labeler: ATProto labels its admins' actions produce, signed with the node's secp256k1 key.

    seq = await emit(conn, uri=record_uri, cid=record_cid, val="!takedown")   # inside the action's transaction

A label is `{ver: 1, src, uri, cid?, val, neg, cts, exp?}` plus `sig`: secp256k1 ECDSA over the SHA-256 of that
object's DAG-CBOR (without `sig`), low-S, 64 raw bytes r||s. `src` is the node's did:web (of its public_url host),
whose document (`did_document`) publishes the key as `#atproto_label` and the node as the `#atproto_labeler` service.
Labels are kept in plyrd.db's `labels` table in signing order; `seq` is the subscribeLabels sequence. Nothing is
ever edited: a restore is a negation label (`neg: true`) with a later seq.

`emit` gets only the action's connection, so it finds the node's `Labeler` through the database file that
connection writes to: each node's `Labeler` registers for its own plyrd.db (two nodes in one process keep their own
keys). Subscribers must only ever see committed labels, so `emit` wakes them once the writer is free again (the
emitting transaction has committed or rolled back) and they re-read `seq > last`; a short poll is the backstop for
labels written by another process on the same file.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import libipld
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..db import Database, DatabaseError
from ..errors import InvalidInput
from ..inputs import check_text, whole_number

log = logging.getLogger("plyrd.moderation.labels")

LABEL_VERSION = 1
MAX_VAL = 128  # com.atproto.label.defs#label val maxLength
MAX_URI = 8192
# secp256k1's group order: a signature's s above half of it is replaced by n - s (low-S, as atproto requires).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
K256_MULTICODEC = b"\xe7\x01"  # secp256k1-pub, as a varint
POLL_SECONDS = 1.0  # a subscriber re-reads at least this often (labels another process wrote to the same file)
BATCH = 500  # labels read per round, replaying a long backlog

# queryLabels limits (the lexicon's limit range; bounds on the rest keep one query's SQL small)
QUERY_DEFAULT = 50
QUERY_MAX = 250
MAX_PATTERNS = 50
MAX_SOURCES = 20
MAX_PATTERN = 1000

_LABEL_COLUMNS = "seq, src, uri, cid, val, neg, cts, exp, sig"


def did_web(public_url: str) -> str:
    """The did:web naming the node at `public_url`: its host, with a port other than the scheme's own
    percent-encoded (did:web:host%3A8080)."""
    parts = urlsplit(public_url)
    if not parts.hostname:
        raise ValueError(f"{public_url!r} has no host")
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets, encoded like the port's colon
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    netloc = f"{host}:{parts.port}" if parts.port not in (None, default) else host
    return "did:web:" + quote(netloc, safe="")


def now_cts() -> str:
    """A label's creation time as atproto datetimes are written: UTC, milliseconds, Z."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def unsigned_label(*, src: str, uri: str, cid: str | None, val: str, neg: bool, cts: str,
                   exp: str | None = None) -> dict[str, Any]:
    """The label object exactly as it is signed and served (without `sig`): absent optional fields are left out,
    `neg` is always present, so a verifier that drops `sig` from what it received gets these very bytes."""
    label: dict[str, Any] = {"ver": LABEL_VERSION, "src": src, "uri": uri}
    if cid is not None:
        label["cid"] = cid
    label.update(val=val, neg=bool(neg), cts=cts)
    if exp is not None:
        label["exp"] = exp
    return label


def signing_bytes(label: dict[str, Any]) -> bytes:
    """The DAG-CBOR a label's signature covers: the label without `sig`."""
    return libipld.encode_dag_cbor({k: v for k, v in label.items() if k != "sig"})


def label_from_row(row: sqlite3.Row) -> dict[str, Any]:
    """A stored label with its signature as bytes (for DAG-CBOR frames)."""
    label = unsigned_label(src=row["src"], uri=row["uri"], cid=row["cid"], val=row["val"], neg=bool(row["neg"]),
                           cts=row["cts"], exp=row["exp"])
    label["sig"] = bytes(row["sig"])
    return label


def label_json(label: dict[str, Any]) -> dict[str, Any]:
    """A label in atproto's JSON form: `sig` as {"$bytes": base64 without padding}."""
    return {**label, "sig": {"$bytes": base64.b64encode(label["sig"]).decode().rstrip("=")}}


class Labeler:
    """The node's labeler: its DID and key, the signing, and the wake-ups of subscribeLabels streams."""

    def __init__(self, db: Database, public_url: str, key_hex: str) -> None:
        self.db = db
        self.endpoint = public_url.rstrip("/")
        self.did = did_web(self.endpoint)
        self._key = ec.derive_private_key(int(key_hex, 16), ec.SECP256K1())
        point = self._key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.CompressedPoint)
        self.public_key_multibase = libipld.encode_multibase("z", K256_MULTICODEC + point)
        self._changed = asyncio.Event()
        self._wake_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.subscribers = 0  # open subscribeLabels streams (plyrd.web.labeler caps them)

    # --- registration: how `emit` finds the labeler from a bare connection ---------------------------------------

    def start(self) -> None:
        """Sign the labels written to this labeler's database from now on (a labeler started later on the same file
        replaces it)."""
        _LABELERS[_file_key(str(self.db.path))] = self

    def close_streams(self) -> None:
        """End every subscribeLabels stream now (the server waits for open connections before it stops); labels are
        still signed, for the requests that are finishing."""
        self.closed = True
        self._wake()

    def close(self) -> None:
        """Stop: streams end, and labels are no longer signed with this key."""
        self.close_streams()
        key = _file_key(str(self.db.path))
        if _LABELERS.get(key) is self:
            del _LABELERS[key]
        for task in list(self._tasks):
            task.cancel()

    # --- signing -------------------------------------------------------------------------------------------------

    def sign(self, label: dict[str, Any]) -> bytes:
        """64 bytes r||s over the label's DAG-CBOR, s normalized to the lower half of the group order."""
        r, s = decode_dss_signature(self._key.sign(signing_bytes(label), ec.ECDSA(hashes.SHA256())))
        if s > SECP256K1_N // 2:
            s = SECP256K1_N - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def did_document(self) -> dict[str, Any]:
        """The node's did:web document: the label-signing key and the labeler service."""
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "verificationMethod": [{
                "id": f"{self.did}#atproto_label",
                "type": "Multikey",
                "controller": self.did,
                "publicKeyMultibase": self.public_key_multibase,
            }],
            "service": [{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": self.endpoint}],
        }

    # --- after a commit: wake the streams ------------------------------------------------------------------------

    def written(self) -> None:
        """A label was written in a transaction still open: wake the streams once the writer is free again."""
        if self._wake_pending:
            return
        self._wake_pending = True
        task = asyncio.get_running_loop().create_task(self._wake_after_commit(), name="plyrd-labels-wake")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake_after_commit(self) -> None:
        # The writer is one connection behind one lock: holding it means the emitting transaction has ended (this
        # task queued for it while that transaction held it). An empty transaction writes nothing.
        try:
            async with self.db.write():
                self._wake_pending = False
        except DatabaseError:
            self._wake_pending = False
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- reading -------------------------------------------------------------------------------------------------

    async def newest_seq(self) -> int:
        row = await self.db.fetchone("SELECT max(seq) FROM labels")
        return int(row[0] or 0) if row else 0

    async def follow(self, after: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Committed labels with seq > `after`, in order, in batches, then each new one as it commits; ends when
        the labeler closes."""
        while not self.closed:
            changed = self._changed  # taken before reading: a wake-up during the read is not lost
            rows = await self.db.fetchall(f"SELECT {_LABEL_COLUMNS} FROM labels WHERE seq > ? ORDER BY seq LIMIT ?",
                                          (after, BATCH))
            if rows:
                after = rows[-1]["seq"]
                yield [{"seq": row["seq"], "label": label_from_row(row)} for row in rows]
                if len(rows) == BATCH:
                    continue
            with suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await changed.wait()


# Each database file's labeler (weak: a node that is gone signs nothing).
_LABELERS: weakref.WeakValueDictionary[str, Labeler] = weakref.WeakValueDictionary()


def _file_key(path: str) -> str:
    return os.path.realpath(path)


async def labeler_for(conn: Any) -> Labeler:
    """The labeler of the database `conn` writes to."""
    rows = await conn.execute_fetchall("SELECT file FROM pragma_database_list WHERE name = 'main'")
    labeler = _LABELERS.get(_file_key(rows[0][0])) if rows and rows[0][0] else None
    if labeler is None:
        raise RuntimeError("no labeler signs labels for this database: start the node's Labeler "
                           "(plyrd.moderation.labels.Labeler.start) before taking moderation actions")
    return labeler


async def emit(conn: Any, *, uri: str, cid: str | None, val: str, neg: bool = False) -> int:
    """Sign a label and store it inside the caller's write transaction; its seq. Subscribers see it once that
    transaction commits (never if it rolls back)."""
    if not isinstance(uri, str) or not uri.startswith(("at://", "did:")) or len(uri) > MAX_URI:
        raise InvalidInput("a label names an AT URI or a DID")
    if not isinstance(val, str) or not 1 <= len(val) <= MAX_VAL:
        raise InvalidInput(f"a label value is 1 to {MAX_VAL} characters")
    labeler = await labeler_for(conn)
    label = unsigned_label(src=labeler.did, uri=check_text(uri, field="uri"), cid=cid or None, val=val,
                           neg=neg, cts=now_cts())
    sig = labeler.sign(label)
    cur = await conn.execute("INSERT INTO labels(src, uri, cid, val, neg, cts, exp, sig)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (label["src"], label["uri"], label.get("cid"), label["val"], int(label["neg"]),
                              label["cts"], label.get("exp"), sig))
    seq = int(cur.lastrowid)
    await cur.close()
    labeler.written()
    return seq


# --- com.atproto.label.queryLabels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelQuery:
    patterns: tuple[str, ...]
    sources: tuple[str, ...]
    limit: int
    after: int

    @classmethod
    def parse(cls, patterns: Sequence[str], sources: Sequence[str], limit: str | None,
              cursor: str | None) -> LabelQuery:
        """queryLabels' parameters as the client sent them (repeated uriPatterns and sources), checked."""
        if not patterns:
            raise InvalidInput("uriPatterns is required (repeat it for several patterns)")
        if len(patterns) > MAX_PATTERNS or len(sources) > MAX_SOURCES:
            raise InvalidInput(f"at most {MAX_PATTERNS} uriPatterns and {MAX_SOURCES} sources")
        for p in patterns:
            check_text(p, field="uriPatterns")
            if not p or len(p) > MAX_PATTERN or "*" in p[:-1]:
                raise InvalidInput("each uriPatterns is a full URI or a prefix ending with '*' (no other '*')")
        for s in sources:
            check_text(s, field="sources")
            if not s.startswith("did:") or len(s) > MAX_PATTERN:
                raise InvalidInput("sources are DIDs")
        return cls(tuple(dict.fromkeys(patterns)), tuple(dict.fromkeys(sources)),
                   whole_number(limit, field="limit", default=QUERY_DEFAULT, minimum=1, maximum=QUERY_MAX),
                   whole_number(cursor, field="cursor", default=0))


def _successor(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (UTF-8 byte order is code point order,
    SQLite's BINARY collation), or None when there is none."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000  # surrogates are not text
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


async def query_labels(db: Database, q: LabelQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Labels whose uri matches any pattern (a trailing '*' is a prefix), oldest first after the cursor; the next
    cursor when there may be more."""
    where: list[str] = []
    params: list[Any] = []
    for p in q.patterns:
        if not p.endswith("*"):
            where.append("uri = ?")
            params.append(p)
            continue
        prefix = p[:-1]
        if not prefix:
            where = ["1"]
            params = []
            break
        upper = _successor(prefix)
        where.append("(uri >= ? AND uri < ?)" if upper is not None else "uri >= ?")
        params += [prefix, upper] if upper is not None else [prefix]
    sql = f"SELECT {_LABEL_COLUMNS} FROM labels WHERE seq > ? AND ({' OR '.join(where)})"
    params.insert(0, q.after)
    if q.sources:
        sql += f" AND src IN ({', '.join('?' * len(q.sources))})"
        params += q.sources
    rows = await db.fetchall(sql + " ORDER BY seq LIMIT ?", (*params, q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return [label_json(label_from_row(r)) for r in rows], (str(rows[-1]["seq"]) if more else None)
