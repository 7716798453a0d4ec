"""The one check for URLs the node stores or echoes (avatars, links, anything read from a PDS record).

A stored URL ends up in HTML attributes, JSON that pages turn into DOM, and other apps' clients, so it is held to
more than "starts with https://": parsed, https only (or one of the node's own paths), a real host name, and none
of the characters that let a value break out of an attribute or a URL (quotes, angle brackets, backslashes,
whitespace, control characters). Domain code: raises plyrd.errors.InvalidInput, knows nothing of HTTP.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import InvalidInput

MAX_URL_CHARS = 2048
# Printable ASCII minus what can end an attribute or a URL early, or hide in one: " ' < > ` \ and space.
_URL_CHARS = re.compile(r"^[!#-&(-;=?-\[\]-_a-~]+$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _host_ok(host: str) -> bool:
    if len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    return len(labels) >= 2 and all(_HOST_LABEL.match(label) for label in labels)


def check_url(value: str, *, field: str, allow_local_path: bool = False) -> str:
    """`value` if it is a safe https URL (or, with `allow_local_path`, a path on this node such as /blobs/...),
    else InvalidInput naming `field`. Non-ASCII hosts must come IDNA-encoded (xn--), as browsers send them."""
    what = f"{field} must be an https URL" + (" or a path on this node" if allow_local_path else "")
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS or not _URL_CHARS.match(value):
        raise InvalidInput(what)
    if allow_local_path and value.startswith("/") and not value.startswith("//"):
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidInput(what) from None
    if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
        raise InvalidInput(what)
    if not _host_ok(host) or (port is not None and port == 0):
        raise InvalidInput(what)
    return value


def safe_url_or_none(value: object, *, allow_local_path: bool = False) -> str | None:
    """For data the node did not choose (a PDS record): the URL when it passes check_url, else None (dropped)."""
    if not isinstance(value, str):
        return None
    try:
        return check_url(value, field="url", allow_local_path=allow_local_path)
    except InvalidInput:
        return None
