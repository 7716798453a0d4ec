"""Domain errors. Raised anywhere in plyrd; mapped to HTTP in exactly one place (plyrd.web.errors).

Domain code never imports Quart: it raises one of these with a message a user can act on.
"""

from __future__ import annotations


class PlyrdError(Exception):
    """Base class. `detail` is what the client sees, so write it for a person."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(PlyrdError):
    """The request is malformed or a value is out of range (400)."""


class Unauthenticated(PlyrdError):
    """No valid credentials were presented, or they expired (401)."""


class Forbidden(PlyrdError):
    """The caller is known but may not do this (403)."""


class NotFound(PlyrdError):
    """The thing asked for does not exist, or the caller may not know it exists (404)."""


class Conflict(PlyrdError):
    """The request conflicts with the current state, such as a stale revision (409)."""


class TooLarge(PlyrdError):
    """A body or file exceeds a configured limit (413)."""


class UnsupportedMedia(PlyrdError):
    """The bytes are not a kind plyrd accepts (415)."""


class Unprocessable(PlyrdError):
    """Well-formed, but cannot be processed: corrupt audio, over a duration limit (422)."""


class RateLimited(PlyrdError):
    """Too many requests (429). `retry_after`: seconds until trying again can succeed, when known; the client gets
    it as the Retry-After header."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamError(PlyrdError):
    """A service plyrd depends on (a PDS, the PLC directory, a handle's host) failed or is unreachable (502)."""


class Unavailable(PlyrdError):
    """plyrd itself cannot serve this right now, e.g. the database is not answering (503)."""
