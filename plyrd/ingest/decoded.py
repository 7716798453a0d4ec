"""One transport message, decoded: what both transports' decoders return, and the checks they share.

A decoder never raises on bad input: a message that is not what the wire format says is `MALFORMED` (counted and
skipped by the subscriber), one it does not care about (a `#sync`, an `#info`, an unknown type) is `SKIPPED`.
Only a server's error frame raises (`StreamError`): the server is about to close the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeGuard

from .events import Action, Event

OK: Final = "ok"
SKIPPED: Final = "skipped"
MALFORMED: Final = "malformed"

# The syntax of what becomes part of an event (the handler checks records against their lexicon; these are the
# parts of an at:// URI, which it would otherwise have to re-check). Same rules as plyrd.atproto.lexicon.
_DID = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
_RKEY = re.compile(r"^[a-zA-Z0-9._:~-]{1,512}$")
_DID_MAX = 2048


@dataclass(slots=True)
class Decoded:
    outcome: str  # OK, SKIPPED or MALFORMED
    events: list[Event] = field(default_factory=list)
    cursor: int | None = None  # the stream position this message carries (firehose seq, Jetstream time_us)
    time_us: int | None = None  # when the event happened, microseconds since the epoch, when the message says
    note: str = ""  # why it was malformed or skipped, or an #info message's name (for the log)


class StreamError(Exception):
    """The server sent an error frame (e.g. FutureCursor, ConsumerTooSlow) and will close the connection."""

    def __init__(self, error: str, message: str | None) -> None:
        super().__init__(f"{error}: {message}" if message else error)
        self.error = error


# The record actions, by name (a lookup that also gives the Literal type).
ACTIONS: Final[dict[object, Action]] = {"create": "create", "update": "update", "delete": "delete"}


def malformed(note: str, cursor: int | None = None) -> Decoded:
    return Decoded(MALFORMED, cursor=cursor, note=note)


def skipped(note: str, cursor: int | None = None) -> Decoded:
    return Decoded(SKIPPED, cursor=cursor, note=note)


def valid_did(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= _DID_MAX and _DID.match(value) is not None


def valid_rkey(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value not in (".", "..") and _RKEY.match(value) is not None


def valid_cursor(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value < 2**63
