"""A library file's cheap fingerprint: what names its external blob and recognises it after a move.

sha256 over the file's size and its first and last 64 KiB. Reading whole files would take hours for a large
collection on a small machine; these 128 KiB change whenever a tagger rewrites the tags (at the start of an MP3 or
FLAC, at either end of an M4A), a file is re-encoded or cut, and the size catches most other edits. It is not a content
hash: nothing may "verify" a blob by it (plyrd.storage treats external blobs as links, never as bytes to check).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

EDGE = 64 * 1024


def fingerprint(path: str | Path) -> str:
    """64 hex digits for the file at `path` (followed if it is a symbolic link). Raises OSError if unreadable."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h = hashlib.sha256(b"plyrd-library-v1\0%d\0" % size)
        h.update(f.read(EDGE))
        if size > EDGE:
            f.seek(max(EDGE, size - EDGE))
            h.update(f.read(EDGE))
    return h.hexdigest()
