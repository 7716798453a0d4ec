"""The play queue a person's devices share, with optimistic locking: each saved state has a revision (the ETag),
and a replacement that names the revision it replaces (If-Match) is refused once another tab saved since, so two
tabs cannot silently overwrite each other. Without If-Match the replacement wins whatever is there, as plyr.fm's
PUT /queue/ does (last write wins): what scripts and plyr.fm's clients send.

Queue entries are what plyr.fm's player keeps in `track_ids`: its web player stores file ids (the sha256 in a
track's `file_id`); track ids (integers) are accepted too. Either way each entry must name a track on this node.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

from ..db import Database
from ..db.queries import fetchall
from ..errors import Conflict, InvalidInput
from .social import tracks_json
from .tracks import TRACK_SELECT, Audience, Where, visible

MAX_ITEMS = 500
MAX_LABEL = 256
REPEAT_MODES = ("none", "one", "all")
_FILE_ID = re.compile(r"[0-9a-f]{64}")

DEFAULT_STATE: dict[str, Any] = {
    "track_ids": [],
    "current_index": 0,
    "current_track_id": None,
    "shuffle": False,
    "original_order_ids": [],
    "auto_advance": True,
    "repeat_mode": "none",
    "progress_ms": 0,
    "continuation_from_index": None,
    "continuation_label": None,
}


def _entry(name: str, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _FILE_ID.fullmatch(value):
        return value
    raise InvalidInput(f"{name} holds track ids or file ids; {value!r} is neither")


def _entries(name: str, value: Any) -> list[int | str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{name} must be a list")
    if len(value) > MAX_ITEMS:
        raise InvalidInput(f"a queue holds at most {MAX_ITEMS} tracks")
    return [_entry(name, v) for v in value]


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _count(name: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{name} must be a whole number, 0 or more")
    return value


def check_state(state: Any) -> dict[str, Any]:
    """A whole queue state, every field checked; fields left out take their defaults, unknown fields are refused."""
    if not isinstance(state, dict):
        raise InvalidInput('send {"state": {...}} with the queue state')
    unknown = sorted(set(state) - set(DEFAULT_STATE))
    if unknown:
        raise InvalidInput(f"unknown queue field(s): {', '.join(unknown)}")
    s = {**DEFAULT_STATE, **state}
    out: dict[str, Any] = {
        "track_ids": _entries("track_ids", s["track_ids"]),
        "original_order_ids": _entries("original_order_ids", s["original_order_ids"]),
        "shuffle": _flag("shuffle", s["shuffle"]),
        "auto_advance": _flag("auto_advance", s["auto_advance"]),
        "progress_ms": _count("progress_ms", s["progress_ms"]),
        "current_index": _count("current_index", s["current_index"]),
        "continuation_from_index": _count("continuation_from_index", s["continuation_from_index"], optional=True),
    }
    n = len(out["track_ids"])
    if out["current_index"] >= max(n, 1):
        raise InvalidInput(f"current_index {out['current_index']} is outside the queue of {n} tracks")
    if out["continuation_from_index"] is not None and out["continuation_from_index"] > n:
        raise InvalidInput(f"continuation_from_index is outside the queue of {n} tracks")
    current = s["current_track_id"]
    if current is not None:
        current = _entry("current_track_id", current)
        if current not in out["track_ids"]:
            raise InvalidInput("current_track_id must be one of track_ids")
    out["current_track_id"] = current
    if s["repeat_mode"] not in REPEAT_MODES:
        raise InvalidInput(f"repeat_mode must be one of {', '.join(REPEAT_MODES)}")
    out["repeat_mode"] = s["repeat_mode"]
    label = s["continuation_label"]
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        raise InvalidInput(f"continuation_label must be text of at most {MAX_LABEL} characters")
    out["continuation_label"] = label
    return {k: out[k] for k in DEFAULT_STATE}


async def _resolve(db: Database, entries: list[int | str], audience: Audience) -> dict[int | str, sqlite3.Row]:
    """The track behind each distinct entry that `audience` may see (a file id shared by several tracks resolves to
    the oldest)."""
    ids = sorted({e for e in entries if isinstance(e, int)})
    files = sorted({e for e in entries if isinstance(e, str)})
    found: dict[int | str, sqlite3.Row] = {}
    async with db.read() as conn:
        for start in range(0, len(ids), 400):
            chunk = ids[start:start + 400]
            where = Where.of(f"t.id IN ({','.join('?' * len(chunk))})", *chunk) & visible(audience)
            for r in await fetchall(conn, f"{TRACK_SELECT} WHERE {where.sql}", where.params):
                found[r["id"]] = r
        for start in range(0, len(files), 200):
            chunk = files[start:start + 200]
            marks = ",".join("?" * len(chunk))
            where = Where.of(f"t.web_sha IN ({marks}) OR t.original_sha IN ({marks})", *chunk, *chunk) \
                & visible(audience)
            for r in await fetchall(conn, f"{TRACK_SELECT} WHERE {where.sql} ORDER BY t.id DESC", where.params):
                for key in (r["web_sha"], r["original_sha"]):
                    if key in chunk:
                        found[key] = r  # descending ids: the oldest track wins
    return found


async def _snapshot(db: Database, audience: Audience, state: dict[str, Any], revision: int, *,
                    public_url: str) -> dict[str, Any]:
    entries = list(dict.fromkeys([*state["track_ids"], *state["original_order_ids"]]))
    found = await _resolve(db, entries, audience)
    distinct = list({found[e]["id"]: found[e] for e in entries if e in found}.values())
    return {"state": state, "revision": revision, "tracks": await tracks_json(db, distinct, audience.did, public_url)}


async def saved(db: Database, did: str) -> tuple[dict[str, Any], int, float | None]:
    """The saved state, its revision and when it was saved (the default state, 0 and None before any save)."""
    row = await db.fetchone("SELECT state, revision, updated_at FROM queue_state WHERE did = ?", (did,))
    if row is None:
        return dict(DEFAULT_STATE), 0, None
    return json.loads(row["state"]), row["revision"], row["updated_at"]


async def track_ids(db: Database, entries: list[int | str], audience: Audience) -> dict[int | str, int]:
    """The id of the track behind each entry (track id or file id) that `audience` may see, as GET /queue/ resolves
    them: what Subsonic's getPlayQueue lists."""
    return {e: r["id"] for e, r in (await _resolve(db, entries, audience)).items()}


async def revision(db: Database, did: str) -> int:
    row = await db.fetchone("SELECT revision FROM queue_state WHERE did = ?", (did,))
    return row["revision"] if row else 0


async def get(db: Database, audience: Audience, *, public_url: str) -> dict[str, Any]:
    """GET /queue/: the signed-in person's state, its revision (0 before anything was saved) and the tracks it names
    that they may see."""
    row = await db.fetchone("SELECT state, revision FROM queue_state WHERE did = ?", (audience.did,))
    if row is None:
        return await _snapshot(db, audience, dict(DEFAULT_STATE), 0, public_url=public_url)
    return await _snapshot(db, audience, json.loads(row["state"]), row["revision"], public_url=public_url)


def parse_if_match(header: str | None) -> int | None:
    """`"3"`, `W/"3"` or `3` -> 3; `*` or no header -> None (whatever is there: last write wins)."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if value == "*":
        return None
    value = value.removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidInput(f"If-Match must be a queue revision like \"3\", not {header!r}")
    return int(value)


async def put(db: Database, audience: Audience, body: Any, if_match: str | None, *, public_url: str) -> dict[str, Any]:
    """PUT /queue/: replace the signed-in person's state; with If-Match, only if they saw the latest revision (409
    otherwise). Every entry must name a track they may see."""
    did = audience.did
    expected = parse_if_match(if_match)
    if not isinstance(body, dict) or "state" not in body:
        raise InvalidInput('send {"state": {...}} with the queue state')
    state = check_state(body["state"])
    entries = list(dict.fromkeys([*state["track_ids"], *state["original_order_ids"]]))
    found = await _resolve(db, entries, audience)
    missing = [e for e in entries if e not in found]
    if missing:
        raise InvalidInput(f"no such track(s) on this node: {', '.join(map(str, missing[:10]))}")
    async with db.write() as conn:
        async with conn.execute("SELECT revision FROM queue_state WHERE did = ?", (did,)) as cur:
            row = await cur.fetchone()
        current = row["revision"] if row else 0
        if expected is not None and expected != current:
            raise Conflict(f"the queue changed since revision {expected} (now {current}); fetch it and try again")
        revision = current + 1
        await conn.execute(
            "INSERT INTO queue_state(did, state, revision, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(did) DO UPDATE"
            " SET state = excluded.state, revision = excluded.revision, updated_at = excluded.updated_at",
            (did, json.dumps(state), revision, time.time()),
        )
    return await _snapshot(db, audience, state, revision, public_url=public_url)
