"""Preferences: one JSON object per person, defaults in code, every field checked on the way in.

Other modules read single preferences (an artist's `allow_comments`, a listener's `enable_teal_scrobbling`) with
`load(conn, did)` inside their own transactions, so a decision and the write it guards see the same state.

One preference is a column rather than a key of the JSON: `download_policy`, the artist's default for who may
download their tracks (`users.download_policy`, migration 0015), which every read of a track joins
(plyrd.catalog.downloads). It reads and writes like the others.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import aiosqlite

from ..db import Database
from ..db.queries import fetchone, one, run
from ..errors import InvalidInput
from ..urls import check_url
from .downloads import DEFAULT as DEFAULT_DOWNLOAD_POLICY
from .downloads import parse_policy

THEMES = ("dark", "light", "system")
MAX_HIDDEN_TAGS = 50
MAX_TAG_CHARS = 50

# plyr.fm's defaults, except hidden_tags (["ai"]: hide AI-made tracks unless a person opts in).
DEFAULTS: dict[str, Any] = {
    "theme": "dark",
    "accent_color": "#6a9fff",
    "auto_advance": True,
    "allow_comments": False,  # artists opt in to timed comments on their tracks
    "hidden_tags": ["ai"],
    "show_sensitive_artwork": False,
    "enable_teal_scrobbling": False,
    "show_liked_on_profile": False,
    "support_url": None,  # the artist's support link (an https URL), shown with their profile and tracks
}

_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _theme(name: str, value: Any) -> str:
    if value not in THEMES:
        raise InvalidInput(f"{name} must be one of {', '.join(THEMES)}")
    return str(value)


def _color(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COLOR.fullmatch(value):
        raise InvalidInput(f"{name} must be a colour like #6a9fff")
    return value.lower()


def _tags(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInput(f'{name} must be a list of tags, like ["ai"]')
    tags: list[str] = []
    for tag in value:
        tag = " ".join(tag.lower().split())  # the same normal form as track tags
        if not tag or tag in tags:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidInput(f"each of {name} must be at most {MAX_TAG_CHARS} characters")
        tags.append(tag)
    if len(tags) > MAX_HIDDEN_TAGS:
        raise InvalidInput(f"{name} holds at most {MAX_HIDDEN_TAGS} tags")
    return tags


def _support_url(name: str, value: Any) -> str | None:
    """An https URL (plyrd.urls.check_url); "" or null clears it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be an https URL, or empty")
    return check_url(value.strip(), field=name)


CHECKS = {
    "theme": _theme,
    "accent_color": _color,
    "auto_advance": _bool,
    "allow_comments": _bool,
    "hidden_tags": _tags,
    "show_sensitive_artwork": _bool,
    "enable_teal_scrobbling": _bool,
    "show_liked_on_profile": _bool,
    "support_url": _support_url,
}
assert set(CHECKS) == set(DEFAULTS)

# Preferences kept as columns of `users`, with their checks and defaults (the row exists for anyone signed in).
USER_COLUMNS = {"download_policy": parse_policy}
USER_DEFAULTS = {"download_policy": DEFAULT_DOWNLOAD_POLICY}


def check_update(body: Any) -> dict[str, Any]:
    """The fields of a partial update, each validated; any unknown field refuses the whole update."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object of the preferences to change")
    checks = {**CHECKS, **USER_COLUMNS}
    unknown = sorted(set(body) - set(checks))
    if unknown:
        raise InvalidInput(f"unknown preference(s): {', '.join(unknown)}; known: {', '.join(checks)}")
    return {name: checks[name](name, value) for name, value in body.items()}


async def _user_columns(conn: aiosqlite.Connection, did: str) -> dict[str, Any]:
    row = await fetchone(conn, f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE did = ?", (did,))
    return {name: row[name] for name in USER_COLUMNS} if row else dict(USER_DEFAULTS)


def _merge(stored: str | None) -> dict[str, Any]:
    prefs = json.loads(json.dumps(DEFAULTS))  # a deep copy: callers may change the lists
    if stored:
        prefs.update({k: v for k, v in json.loads(stored).items() if k in DEFAULTS})
    return prefs


async def load(conn: aiosqlite.Connection, did: str) -> dict[str, Any]:
    """A person's preferences (defaults for what they never set), on any connection (`read`, one hop)."""
    return await run(conn, read, did)


def read(conn: sqlite3.Connection, did: str) -> dict[str, Any]:
    """`load` inside a function run on a connection's thread (Database.read_fn / write_fn)."""
    row = one(conn, "SELECT prefs FROM preferences WHERE did = ?", (did,))
    user = one(conn, f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE did = ?", (did,))
    columns = {name: user[name] for name in USER_COLUMNS} if user else dict(USER_DEFAULTS)
    return {**_merge(row["prefs"] if row else None), **columns}


async def get(db: Database, did: str) -> dict[str, Any]:
    """GET /preferences/: the stored preferences, creating the row with defaults on first read (as plyr.fm)."""
    row = await db.fetchone("SELECT prefs FROM preferences WHERE did = ?", (did,))
    if row is None:
        async with db.write() as conn:
            await conn.execute("INSERT INTO preferences(did, prefs) VALUES (?, ?) ON CONFLICT(did) DO NOTHING",
                               (did, json.dumps(DEFAULTS)))
            row = await fetchone(conn, "SELECT prefs FROM preferences WHERE did = ?", (did,))
    async with db.read() as conn:
        columns = await _user_columns(conn, did)
    return {**_merge(row["prefs"] if row else None), **columns}


async def update(db: Database, did: str, body: Any) -> dict[str, Any]:
    """POST /preferences/: a validated partial update; returns the whole set after it."""
    changes = check_update(body)
    async with db.write() as conn:
        prefs = await load(conn, did)
        prefs.update(changes)
        await conn.execute(
            "INSERT INTO preferences(did, prefs, updated_at) VALUES (?, ?, ?) ON CONFLICT(did) DO UPDATE SET"
            " prefs = excluded.prefs, updated_at = excluded.updated_at",
            (did, json.dumps({k: v for k, v in prefs.items() if k not in USER_COLUMNS}), time.time()),
        )
        for name in USER_COLUMNS.keys() & changes.keys():
            await conn.execute(f"UPDATE users SET {name} = ? WHERE did = ?", (changes[name], did))
    return prefs


def with_teal_flag(prefs: dict[str, Any], teal_granted: bool) -> dict[str, Any]:
    """plyr.fm's `teal_needs_reauth`: scrobbling is on but the session's grant does not cover teal.fm yet, so the
    settings page should run the scope upgrade (POST /auth/scope-upgrade/start)."""
    return {**prefs, "teal_needs_reauth": bool(prefs["enable_teal_scrobbling"] and not teal_granted)}
