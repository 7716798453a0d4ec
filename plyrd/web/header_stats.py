"""The platform stats line every page's header shows ("1,691 plays • 55 tracks • 8 artists").

The numbers are GET /stats's (plyrd.catalog.plays.node_stats), kept for a minute per node: a page view should not
cost a scan of the tracks table, and totals a minute old are exact enough for a header.
"""

from __future__ import annotations

import time
from typing import Any

from ..catalog import plays
from ..db import Database

TTL_S = 60.0

_cache: dict[int, tuple[float, dict[str, int]]] = {}  # id(db) -> (when read, node_stats)


async def header_stats(db: Database, now: float | None = None) -> dict[str, int]:
    now = time.monotonic() if now is None else now
    hit = _cache.get(id(db))
    if hit is not None and now - hit[0] < TTL_S:
        return hit[1]
    stats = await plays.node_stats(db)
    _cache[id(db)] = (now, stats)
    return stats


def stats_line(stats: dict[str, Any]) -> str:
    """"1,691 plays • 55 tracks • 8 artists" (thousands separated, one of each in the singular)."""
    parts = []
    for key, word in (("total_plays", "play"), ("total_tracks", "track"), ("total_artists", "artist")):
        n = int(stats.get(key) or 0)
        parts.append(f"{n:,} {word}{'' if n == 1 else 's'}")
    return " • ".join(parts)
