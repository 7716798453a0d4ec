"""What the transports hand to the event handler: the same events whichever wire they came from.

A firehose frame (DAG-CBOR, records in CAR blocks) and a Jetstream message (JSON) both become these. Records are in
their JSON form, exactly as `com.atproto.repo.getRecord` returns a record's value (blobs as
`{"$type": "blob", "ref": {"$link": cid}, "mimeType": ..., "size": ...}`, CID links as `{"$link": ...}`, bytes as
`{"$bytes": base64}`), so lexicon validation and everything after it is one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class RecordOp:
    """A record written or deleted in a repo. `record` and `cid` are None for deletes."""

    did: str
    collection: str
    rkey: str
    action: Action
    cid: str | None
    record: dict[str, Any] | None
    cursor: int  # the transport's position after this event (firehose seq, Jetstream time_us)

    @property
    def uri(self) -> str:
        return f"at://{self.did}/{self.collection}/{self.rkey}"


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    """A DID's handle or DID document changed (`#identity`): resolve it again."""

    did: str
    handle: str | None
    cursor: int


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """A repo's hosting status changed (`#account`): inactive repos (deactivated, taken down, suspended, deleted)
    are hidden until they come back."""

    did: str
    active: bool
    status: str | None
    cursor: int


Event = RecordOp | IdentityEvent | AccountEvent


class Handler(Protocol):
    """What a transport delivers to (plyrd.network.events.NetworkEvents is the node's)."""

    @property
    def wanted_collections(self) -> frozenset[str]:
        """Record collections worth decoding; everything else is dropped before its record is decoded."""
        ...

    async def handle(self, events: Sequence[Event]) -> None:
        """Apply a batch of events, in order. Raising stops the transport from advancing its cursor."""
        ...
