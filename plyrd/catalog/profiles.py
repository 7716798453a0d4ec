"""Artist profiles: display name, bio and avatar, with the bio and avatar mirrored as the user's
fm.plyr.actor.profile record (rkey `self`) through the outbox; plus two of the person's preferences that plyr.fm's
ArtistResponse shows and its SDK's `artists.update` sends: `support_url` and `show_liked_on_profile` (kept with
the other preferences, plyrd.catalog.preferences, so POST /preferences/ and PUT /artists/me change the same value).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ..atproto.lexicon import grapheme_count
from ..atproto.outbox import enqueue_put, is_queued
from ..atproto.records import profile_record
from ..db import Database
from ..errors import InvalidInput, NotFound
from ..urls import check_url, safe_url_or_none
from . import preferences
from .social import iso
from .tracks import ANONYMOUS, Where, artist_shown, listed

COLLECTION = "fm.plyr.actor.profile"
RKEY = "self"
MAX_BIO_GRAPHEMES = 256
MAX_BIO_BYTES = 2560
MAX_NAME_CHARS = 64
FIELDS = {"display_name", "bio", "avatar_url"}
PREFERENCE_FIELDS = {"support_url", "show_liked_on_profile"}  # stored as preferences, answered with the profile
MAX_DIDS = 100

# A person and the two preferences their profile shows (defaults when they never saved any).
PROFILE_SELECT = """
SELECT u.*, p.prefs ->> '$.support_url' AS support_url,
       coalesce(p.prefs ->> '$.show_liked_on_profile', 0) AS show_liked_on_profile
FROM users u LEFT JOIN preferences p ON p.did = u.did
"""


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def profile_json(row: Any, track_count: int | None = None) -> dict[str, Any]:
    """plyr.fm's ArtistResponse (`handle` never null: the DID stands in for a handle that no longer resolves;
    times as ISO strings) plus plyrd's `pds_url` and, for one profile, `track_count`. A row of PROFILE_SELECT."""
    body = {"did": row["did"], "handle": row["handle"] or row["did"], "display_name": row["display_name"],
            "bio": row["bio"], "avatar_url": row["avatar_url"], "pds_url": row["pds_url"],
            "created_at": iso(row["profile_created_at"] or row["created_at"]), "updated_at": iso(row["updated_at"]),
            "show_liked_on_profile": bool(row["show_liked_on_profile"]), "support_url": row["support_url"]}
    if track_count is not None:
        body["track_count"] = track_count
    return body


async def get_profile(db: Database, handle_or_did: str) -> dict[str, Any]:
    key = handle_or_did.strip().lstrip("@").lower() if not handle_or_did.startswith("did:") else handle_or_did
    column = "did" if key.startswith("did:") else "handle"
    shown = artist_shown()  # the node's library holds the music folder's tracks but is nobody's profile
    row = await db.fetchone(f"{PROFILE_SELECT} WHERE u.{column} = ? AND {shown.sql}", (key, *shown.params))
    if row is None:
        raise NotFound(f"no artist {handle_or_did} on this node")
    # The public count: the tracks of theirs discovery shows anyone.
    where = Where.of("t.artist_did = ?", row["did"]) & listed(ANONYMOUS)
    count = await db.fetchone(f"SELECT count(*) AS n FROM tracks t WHERE {where.sql}", where.params)
    return profile_json(row, count["n"])


async def profiles(db: Database, body: Any) -> dict[str, dict[str, Any]]:
    """POST /artists/batch as plyr.fm: the body is a JSON array of DIDs (plyrd's {"dids": [...]} works too); the
    answer maps each DID the node knows to its profile, leaving out the others."""
    dids = body.get("dids") if isinstance(body, dict) else body
    if not isinstance(dids, list) or not all(isinstance(d, str) for d in dids) or len(dids) > MAX_DIDS:
        raise InvalidInput(f"send a JSON array of at most {MAX_DIDS} DIDs")
    if not dids:
        return {}
    shown = artist_shown()
    rows = await db.fetchall(f"{PROFILE_SELECT} WHERE u.did IN (SELECT value FROM json_each(?)) AND {shown.sql}",
                             (json.dumps(dids), *shown.params))
    return {r["did"]: profile_json(r) for r in rows}


def _clean(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile's changes and the preferences' changes of an update, each checked (400 before any write)."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object")
    unknown = set(body) - FIELDS - PREFERENCE_FIELDS
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))};"
                           f" editable: {', '.join(sorted(FIELDS | PREFERENCE_FIELDS))}")
    prefs = preferences.check_update({k: v for k, v in body.items() if k in PREFERENCE_FIELDS})
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in PREFERENCE_FIELDS:
            continue
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string or null")
        value = value.strip() if value else None
        if key == "display_name" and value and len(value) > MAX_NAME_CHARS:
            raise InvalidInput(f"display_name must be at most {MAX_NAME_CHARS} characters")
        if key == "bio" and value and (grapheme_count(value) > MAX_BIO_GRAPHEMES
                                       or len(value.encode()) > MAX_BIO_BYTES):
            raise InvalidInput(f"bio must be at most {MAX_BIO_GRAPHEMES} characters")
        if key == "avatar_url" and value:
            check_url(value, field="avatar_url")
        out[key] = value or None
    return out, prefs


async def write_profile_record(conn: Any, did: str, *, now: float | None = None) -> None:
    """Queue the profile record from the local row (inside the caller's transaction)."""
    now = time.time() if now is None else now
    async with conn.execute("SELECT * FROM users WHERE did = ?", (did,)) as cur:
        row = await cur.fetchone()
    created = row["profile_created_at"] or now
    if row["profile_created_at"] is None:
        await conn.execute("UPDATE users SET profile_created_at = ? WHERE did = ?", (created, did))
    record = profile_record(created_at=_utc(created), bio=row["bio"], avatar=row["avatar_url"],
                            updated_at=_utc(now) if created != now else None)
    await enqueue_put(conn, did=did, collection=COLLECTION, rkey=RKEY, record=record)


async def update_profile(db: Database, did: str, body: Any) -> dict[str, Any]:
    """PUT /artists/me: display_name, bio and avatar_url, and the preferences support_url (an https URL; "" or
    null clears it) and show_liked_on_profile. Everything is checked before anything is written."""
    changes, prefs = _clean(body)
    async with db.write() as conn:
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            await conn.execute(f"UPDATE users SET {sets}, updated_at = ? WHERE did = ?",
                               [*changes.values(), time.time(), did])
        if {"bio", "avatar_url"} & set(changes):
            await write_profile_record(conn, did)
    if prefs:
        await preferences.update(db, did, prefs)
    return await get_profile(db, did)


async def reconcile_profile(db: Database, did: str, remote: dict[str, dict[str, Any]]) -> str:
    """Adopt a profile written elsewhere (plyr.fm keeps one for every user), or give the user one if they have
    none. Never overwrites a profile on the PDS with an emptier local one. Returns what happened."""
    rec = remote.get(RKEY)
    async with db.write() as conn:
        if await is_queued(conn, did, COLLECTION, RKEY):
            return "pending"  # an edit made here is on its way: the PDS's older version must not undo it
        if rec is not None:
            value = rec["value"]
            created = value.get("createdAt")
            try:
                created_ts = datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
            except ValueError:
                created_ts = None
            await conn.execute(
                "UPDATE users SET bio = coalesce(?, bio), avatar_url = coalesce(?, avatar_url),"
                " profile_created_at = coalesce(?, profile_created_at) WHERE did = ?",
                # The record is the user's, written by any app: an avatar that is not a safe URL is not kept.
                (value.get("bio"), safe_url_or_none(value.get("avatar")), created_ts, did),
            )
            return "adopted"
        await write_profile_record(conn, did)
        return "created"
