"""Content labels: which of an artist's self-labels (com.atproto.label.defs values) make artwork sensitive."""

from __future__ import annotations

import json
from collections.abc import Iterable

# Blurred unless the viewer turned on "show sensitive artwork" (plyr.fm's SensitiveImage rule, self-labels only).
SENSITIVE_LABELS = frozenset({"porn", "sexual", "nudity", "graphic-media", "gore"})


def is_sensitive(labels: Iterable[str] | str | None) -> bool:
    """True when any label asks for a blur; accepts the stored JSON text or a list."""
    if isinstance(labels, str):
        labels = json.loads(labels or "[]")
    return not SENSITIVE_LABELS.isdisjoint(labels or ())
