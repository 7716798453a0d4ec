"""Profiles from Bluesky: a person's display name, description and avatar from their `app.bsky.actor.profile` (rkey
`self`), read from their own PDS (DID -> PDS through plyrd.atproto.identity, com.atproto.repo.getRecord through
the SSRF-guarded client; no AppView). Read on sign-in, when a remote artist is first seen, and again every
`network.profile_refresh_hours` (the node's housekeeping calls `refresh_due_profiles`).

Who wins (the person's own choices always do):

- display name and bio: Bluesky's displayName / description fill `users.display_name` / `users.bio` when they are
  empty, or still hold what Bluesky gave last time (`users.bsky_display_name` / `bsky_description`). A value set on
  the node (PUT /artists/me) or a bio from the person's fm.plyr.actor.profile (adopted by reconciliation) differs
  from that, and is never overwritten. A person who sets exactly Bluesky's value cannot be told apart: that value
  then follows Bluesky, which is what it already said. Someone who never signed in here cannot have chosen a name
  here: their Bluesky displayName replaces whatever name the node had (a remote track record's artist).
- avatar: the node keeps its own copy (`users.avatar_sha`, served at `{public_url}/avatars/<sha>`) and points
  `avatar_url` at it when `avatar_url` is empty, is already the node's copy, or is a Bluesky CDN URL (what plyr.fm
  writes into fm.plyr.actor.profile at each sign-in: Bluesky's avatar, not a choice). Any other URL was chosen by
  the person: it stays, and no copy is held.
- what comes from Bluesky is not written into the person's fm.plyr.actor.profile: it is Bluesky's, and read from
  there again. Except when that record already holds the value Bluesky replaces (the person saved their profile on
  the node, which mirrors bio and avatar into the record): then the record follows, as after an edit on the node,
  so that reconciliation does not bring the old value back.

The avatar blob is fetched with com.atproto.sync.getBlob from the same PDS, at most MAX_AVATAR_BYTES, kept only if
its SHA-256 is the digest its CID names, decoded as the image kind its bytes say (PNG or JPEG, as the lexicon
allows) under a pixel cap, and re-encoded to a WebP of at most AVATAR_SIDE pixels: the bytes the node serves are
always its own encoding, never the PDS's. A missing or broken profile changes nothing; a broken avatar keeps the
previous one. Either is logged. Text from a PDS reaches pages only through Jinja's autoescape and textContent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ..atproto.cbor import record_cid
from ..atproto.identity import IdentityResolver, is_did
from ..atproto.lexicon import validate_value
from ..atproto.net import UpstreamStatusError, fetch_bytes, get_json
from ..catalog.profiles import COLLECTION as PLYR_PROFILE
from ..catalog.profiles import write_profile_record
from ..catalog.track_import import sha_of_cid
from ..db import Database
from ..errors import InvalidInput, PlyrdError
from ..storage import BlobStore
from ..threads import ThreadSlots

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("plyrd.bsky_profiles")

COLLECTION = "app.bsky.actor.profile"
RKEY = "self"
MAX_AVATAR_BYTES = 2 * 1024 * 1024  # the lexicon allows 1 MB; a PDS sending more is cut off here
MAX_AVATAR_PIXELS = 16_000_000  # checked on the header, before decoding (a 2 MB PNG can claim far more)
AVATAR_SIDE = 256  # pages show avatars at up to 96 CSS pixels: sharp on 2x screens, a few KB
AVATAR_MIME = "image/webp"
BSKY_CDN_AVATAR = "https://cdn.bsky.app/img/avatar/"
REFRESH_BATCH = 500  # profiles read per housekeeping run at most; the rest wait for the next hour
REFRESH_CONCURRENCY = 4
REFRESH_BUDGET_SECONDS = 300.0
_MAX_RECORD_BYTES = 64 * 1024
_KINDS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}

# The fields of app.bsky.actor.profile plyrd reads, with the upstream lexicon's limits (bluesky-social/atproto,
# lexicons/app/bsky/actor/profile.json). Other fields are the record's own business and are not looked at.
PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "displayName": {"type": "string", "maxGraphemes": 64, "maxLength": 640},
        "description": {"type": "string", "maxGraphemes": 256, "maxLength": 2560},
        "avatar": {"type": "blob", "accept": ["image/png", "image/jpeg"], "maxSize": 1_000_000},
    },
}


class AvatarRefused(Exception):
    """The avatar blob could not be used (why, in words); the previous avatar stays."""


@dataclass(frozen=True)
class ProfileSync:
    """What reading Bluesky profiles needs from the node (tests build one from their own parts)."""

    db: Database
    store: BlobStore
    http: httpx.AsyncClient  # the SSRF-guarded client (plyrd.atproto.net.make_http_client)
    identity: IdentityResolver
    public_url: str
    slots: ThreadSlots | None = None  # image work shares the node's media threads; None: a thread each
    max_avatar_bytes: int = MAX_AVATAR_BYTES

    @classmethod
    def of(cls, node: Node) -> ProfileSync:
        return cls(node.db, node.blobs, node.http, node.identity, node.config.public_url, node.uploads.slots)


@dataclass(frozen=True)
class BskyProfile:
    """The part of a person's app.bsky.actor.profile the node uses, checked."""

    cid: str
    display_name: str | None
    description: str | None
    avatar_cid: str | None
    avatar_sha: str | None  # the SHA-256 hex the avatar's CID names (None with avatar_cid None)


def avatar_url(public_url: str, sha: str) -> str:
    return f"{public_url.rstrip('/')}/avatars/{sha}"


async def is_avatar(db: Database, sha: str) -> bool:
    """Whether `sha` is someone's avatar: /avatars/ serves those blobs and no other."""
    return await db.fetchone("SELECT 1 FROM users WHERE avatar_sha = ?", (sha,)) is not None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def parse_profile(answer: Mapping[str, Any]) -> BskyProfile:
    """getRecord's answer -> BskyProfile. Raises InvalidInput when the record is not a profile plyrd can use: not
    app.bsky.actor.profile, fields beyond the lexicon's limits, an avatar blob ref that names no SHA-256, or a
    CID that is not the record's own."""
    value, cid = answer.get("value"), answer.get("cid")
    if not isinstance(value, Mapping) or value.get("$type") != COLLECTION:
        raise InvalidInput(f"the record is not an {COLLECTION}")
    validate_value(PROFILE_SCHEMA, value, lexicon=COLLECTION)
    if not isinstance(cid, str) or record_cid(value) != cid:
        raise InvalidInput(f"the record's CID {cid!r} is not the CID of its contents")
    avatar = value.get("avatar")
    avatar_cid = avatar["ref"]["$link"] if isinstance(avatar, Mapping) else None
    avatar_sha = sha_of_cid(avatar_cid) if avatar_cid else None
    if avatar_cid and avatar_sha is None:
        raise InvalidInput(f"the avatar's CID {avatar_cid} does not name a SHA-256 digest")
    return BskyProfile(cid=cid, display_name=_text(value.get("displayName")),
                       description=_text(value.get("description")), avatar_cid=avatar_cid, avatar_sha=avatar_sha)


async def read_profile(sync: ProfileSync, did: str) -> tuple[str, BskyProfile | None]:
    """(the person's PDS, their profile, or None when they have none). Raises PlyrdError when the DID does not
    resolve or the PDS does not answer, InvalidInput when the record is not one plyrd can use."""
    identity = await sync.identity.resolve(did)
    pds = identity.pds_url.rstrip("/")
    try:
        answer = await get_json(sync.http, f"{pds}/xrpc/com.atproto.repo.getRecord",
                                params={"repo": did, "collection": COLLECTION, "rkey": RKEY},
                                max_bytes=_MAX_RECORD_BYTES)
    except UpstreamStatusError as e:
        if e.error == "RecordNotFound" or e.status == 404:
            return pds, None
        raise
    return pds, parse_profile(answer)


def avatar_webp(data: bytes, *, max_pixels: int = MAX_AVATAR_PIXELS, side: int = AVATAR_SIDE) -> bytes:
    """The avatar the node serves: `data` decoded as the PNG or JPEG its magic number says (Pillow kept to that one
    decoder, as plyrd.media.artwork does), turned upright, and re-encoded as a WebP of at most `side` pixels.
    Raises AvatarRefused for anything else, a decompression bomb, or a corrupt image. Blocking: run it in a thread."""
    # Imported here: a node starts without the media stack (tests/test_app.py), and avatars come later.
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..media.artwork import image_kind

    kind = image_kind(data)
    if kind not in _KINDS:
        raise AvatarRefused(f"the avatar is not a PNG or JPEG image ({kind or 'unrecognised bytes'})")
    pil_format, _ = _KINDS[kind]
    try:
        with Image.open(io.BytesIO(data), formats=[pil_format]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise AvatarRefused(f"the avatar is {width}x{height} pixels, more than {max_pixels} allowed")
            im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale when that still covers `side`
            im.load()
            upright = ImageOps.exif_transpose(im)
            has_alpha = upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info)
            mode = "RGBA" if has_alpha else "RGB"
            small = upright if upright.mode == mode else upright.convert(mode)
            small.thumbnail((side, side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, "WEBP", quality=82, method=4)  # no EXIF, no profile: nothing of the original rides along
            return buf.getvalue()
    except AvatarRefused:
        raise
    except Image.DecompressionBombError as e:
        raise AvatarRefused(f"the avatar has too many pixels ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as e:
        raise AvatarRefused(f"the avatar's {pil_format} image is corrupt ({e})") from None


async def fetch_avatar(sync: ProfileSync, pds: str, did: str, profile: BskyProfile) -> bytes:
    """The avatar blob's bytes from the person's PDS, checked against its CID, re-encoded (`avatar_webp`)."""
    assert profile.avatar_cid is not None and profile.avatar_sha is not None
    try:
        _, data = await fetch_bytes(sync.http, f"{pds}/xrpc/com.atproto.sync.getBlob",
                                    params={"did": did, "cid": profile.avatar_cid}, max_bytes=sync.max_avatar_bytes)
    except PlyrdError as e:  # over the cap, not found, unreachable, refused by the SSRF guard
        raise AvatarRefused(f"the avatar blob could not be fetched: {e.detail}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != profile.avatar_sha:
        raise AvatarRefused(f"the bytes sent for the avatar {profile.avatar_cid} hash to {got}, not to its CID")
    if sync.slots is not None:
        return await sync.slots.run(avatar_webp, data)
    return await asyncio.to_thread(avatar_webp, data)


def _from_bluesky(current: str | None, last_bluesky: str | None) -> bool:
    """A name or bio Bluesky may replace: empty, or what Bluesky gave last (see the module docstring)."""
    return current is None or current == last_bluesky


def _avatar_from_bluesky(row: Mapping[str, Any], public_url: str) -> bool:
    """An avatar_url Bluesky may replace: empty, Bluesky's CDN, or a copy the node made of a Bluesky avatar: the one
    held (whatever the node's public URL was then) or an earlier one, which an fm.plyr.actor.profile written
    meanwhile may still name (see the module docstring)."""
    url, sha = row["avatar_url"], row["avatar_sha"]
    return (url is None or url.startswith((BSKY_CDN_AVATAR, avatar_url(public_url, "")))
            or (sha is not None and url.endswith(f"/avatars/{sha}")))


async def _store_avatar(sync: ProfileSync, pds: str, did: str, profile: BskyProfile, row: Mapping[str, Any]
                        ) -> str | None:
    """The blob of the avatar to hold after this sync, stored (unreferenced until `_apply` takes it): the one held
    when the CID is unchanged, a new one when it changed, None when the profile has none or the person chose their
    own. A refused avatar keeps the one held (AvatarRefused is logged by the caller)."""
    if profile.avatar_cid is None or not _avatar_from_bluesky(row, sync.public_url):
        return None
    if row["avatar_sha"] is not None and row["bsky_avatar_cid"] == profile.avatar_cid:
        return str(row["avatar_sha"])
    webp = await fetch_avatar(sync, pds, did, profile)
    blob = await sync.store.put_bytes(webp, AVATAR_MIME)
    return blob.sha256


async def _signed_in_here(conn: Any, row: Mapping[str, Any]) -> bool:
    """Whether the person ever signed in to this node, the only way to choose a name here: they have a session, a
    record the node keeps for them, or the profile record reconciliation gives everyone who signs in."""
    if row["profile_created_at"] is not None:
        return True
    async with conn.execute("SELECT EXISTS (SELECT 1 FROM auth_sessions WHERE did = ?)"
                            " OR EXISTS (SELECT 1 FROM pds_records WHERE did = ?)", (row["did"], row["did"])) as cur:
        found = await cur.fetchone()
    return bool(found and found[0])


async def _mirrors_old_values(conn: Any, did: str, row: Mapping[str, Any], changed: Mapping[str, Any]) -> bool:
    """Whether the person's fm.plyr.actor.profile (as this node last queued it, or saw the PDS accept it) holds a bio
    or avatar that Bluesky has just replaced here: the person saved Bluesky's value from the node, so their record
    mirrors the node's profile, and must follow it, or reconciliation would bring the stale value back."""
    fields = [(column, key) for column, key in (("bio", "bio"), ("avatar_url", "avatar"))
              if column in changed and row[column] is not None]
    if not fields:
        return False
    async with conn.execute(
            "SELECT record FROM (SELECT record, 1 AS queued, seq FROM outbox WHERE did = ? AND collection = ?"
            " AND rkey = ? AND op = 'put' UNION ALL SELECT record, 0, 0 FROM pds_records WHERE did = ?"
            " AND collection = ? AND rkey = ?) ORDER BY queued DESC, seq DESC LIMIT 1",
            (did, PLYR_PROFILE, RKEY, did, PLYR_PROFILE, RKEY)) as cur:
        found = await cur.fetchone()
    try:
        record = json.loads(found["record"]) if found else None
    except ValueError:
        return False
    return isinstance(record, dict) and any(record.get(key) == row[column] for column, key in fields)


async def _apply(sync: ProfileSync, did: str, profile: BskyProfile, avatar_sha: str | None, avatar_cid: str | None,
                 keep_avatar: bool) -> tuple[str, list[str]]:
    """Write what Bluesky says into the row, in one transaction that reads the row again (the person may have
    edited their profile while the avatar was fetched). Returns (what happened, blobs released)."""
    released: list[str] = []
    now = time.time()
    async with sync.db.write() as conn:
        async with conn.execute("SELECT * FROM users WHERE did = ?", (did,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return "no user", released
        changes: dict[str, Any] = {}
        if _from_bluesky(row["display_name"], row["bsky_display_name"]) or (
                profile.display_name is not None and not await _signed_in_here(conn, row)):
            changes["display_name"] = profile.display_name
        if _from_bluesky(row["bio"], row["bsky_description"]):
            changes["bio"] = profile.description
        held = row["avatar_sha"]
        if not _avatar_from_bluesky(row, sync.public_url):
            new_sha = None  # the person's own avatar: no copy of Bluesky's is kept
        elif keep_avatar:
            new_sha = held  # the new avatar was refused: the old one stays
            avatar_cid = row["bsky_avatar_cid"]
        else:
            new_sha = avatar_sha
        if new_sha != held:
            if new_sha is not None:
                await sync.store.incref(conn, new_sha)
            if held is not None:
                await sync.store.decref(conn, held)
                released.append(held)
        if _avatar_from_bluesky(row, sync.public_url):
            changes["avatar_url"] = avatar_url(sync.public_url, new_sha) if new_sha else None
        changed = {k: v for k, v in changes.items() if row[k] != v}
        if changed:
            changed["updated_at"] = now
        changed |= {"avatar_sha": new_sha, "bsky_avatar_cid": avatar_cid if new_sha else None,
                    "bsky_display_name": profile.display_name, "bsky_description": profile.description,
                    "bsky_profile_cid": profile.cid, "profile_refreshed_at": now}
        sets = ", ".join(f"{k} = ?" for k in changed)
        await conn.execute(f"UPDATE users SET {sets} WHERE did = ?", (*changed.values(), did))
        if await _mirrors_old_values(conn, did, row, changed):
            await write_profile_record(conn, did, now=now)
    what = "updated" if (set(changed) & {"display_name", "bio", "avatar_url"}) else "unchanged"
    return what, released


async def refresh_profile(sync: ProfileSync, did: str) -> str:
    """Read `did`'s Bluesky profile and apply it (see the module docstring). Returns what happened: updated,
    unchanged, missing (no profile: the row is left as it is) or no user (the node has no row for `did`). Raises
    PlyrdError when the profile cannot be read or is not valid (nothing is changed)."""
    pds, profile = await read_profile(sync, did)
    if profile is None:
        await sync.db.execute("UPDATE users SET profile_refreshed_at = ? WHERE did = ?", (time.time(), did))
        return "missing"
    row = await sync.db.fetchone("SELECT avatar_url, avatar_sha, bsky_avatar_cid FROM users WHERE did = ?", (did,))
    if row is None:
        return "no user"
    refused = False
    async with sync.store.releasing() as stored:
        try:
            sha = await _store_avatar(sync, pds, did, profile, row)
        except AvatarRefused as e:
            log.warning("bluesky avatar refused", extra={"fields": {"did": did, "avatar": profile.avatar_cid,
                                                                    "reason": str(e)}})
            sha, refused = None, True
        if sha is not None:
            stored.append(sha)  # released again unless the row took it
        what, released = await _apply(sync, did, profile, sha, profile.avatar_cid, refused)
        stored += released
    return what


async def sync_bsky_profile(sync: ProfileSync, did: str) -> str:
    """`refresh_profile` that never raises for a missing or broken profile or PDS: it logs and leaves the row as it
    was. The call for sign-in and for a remote artist the node sees for the first time (their users row must exist).
    Returns what happened (see refresh_profile; `failed` when it could not)."""
    try:
        what = await refresh_profile(sync, did)
    except Exception as e:  # whatever a hostile or broken PDS provokes costs the caller nothing
        expected = isinstance(e, PlyrdError)
        reason = e.detail if isinstance(e, PlyrdError) else repr(e)
        log.log(logging.INFO if expected else logging.WARNING, "bluesky profile not read", exc_info=not expected,
                extra={"fields": {"did": did, "reason": reason}})
        with contextlib.suppress(Exception):  # tried again at the next refresh, not at every housekeeping run
            await sync.db.execute("UPDATE users SET profile_refreshed_at = ? WHERE did = ?", (time.time(), did))
        return "failed"
    log.info("bluesky profile read", extra={"fields": {"did": did, "result": what}})
    return what


async def release_avatar(conn: Any, store: BlobStore, did: str) -> list[str]:
    """Inside the caller's transaction: drop the node's copy of `did`'s Bluesky avatar (an account deleted, a repo
    taken down), and the avatar_url that points at it. Returns the blobs released, for `store.remove_unreferenced`
    once the transaction commits."""
    async with conn.execute("SELECT avatar_sha FROM users WHERE did = ?", (did,)) as cur:
        row = await cur.fetchone()
    if row is None or row["avatar_sha"] is None:
        return []
    sha = row["avatar_sha"]
    await store.decref(conn, sha)
    await conn.execute("UPDATE users SET avatar_url = CASE WHEN avatar_url LIKE '%/avatars/' || avatar_sha THEN NULL"
                       " ELSE avatar_url END, avatar_sha = NULL, bsky_avatar_cid = NULL WHERE did = ?", (did,))
    return [sha]


async def refresh_due_profiles(sync: ProfileSync, *, max_age_hours: float, limit: int = REFRESH_BATCH,
                               budget_seconds: float = REFRESH_BUDGET_SECONDS) -> int:
    """Read again the profiles not read for `max_age_hours` (never-read ones first), at most `limit` of them,
    REFRESH_CONCURRENCY at a time, none started after `budget_seconds` (the rest wait for the next run). Accounts
    whose repo is not active are left out. Returns how many were read."""
    cutoff = time.time() - max_age_hours * 3600
    rows = await sync.db.fetchall(
        "SELECT did FROM users WHERE coalesce(profile_refreshed_at, 0) < ? AND repo_status IS NULL"
        " AND (did LIKE 'did:plc:%' OR did LIKE 'did:web:%')"  # not the node's library (did:plyrd:library)
        " ORDER BY coalesce(profile_refreshed_at, 0) LIMIT ?", (cutoff, limit))
    dids = [r["did"] for r in rows if is_did(r["did"])]
    gate = asyncio.Semaphore(REFRESH_CONCURRENCY)
    deadline = time.monotonic() + budget_seconds
    read = 0

    async def one(did: str) -> None:
        nonlocal read
        async with gate:
            if time.monotonic() < deadline:  # slow PDSes must not hold up the rest of housekeeping for long
                await sync_bsky_profile(sync, did)
                read += 1

    await asyncio.gather(*(one(d) for d in dids))
    if read:
        log.info("bluesky profiles refreshed", extra={"fields": {"profiles": read, "due": len(dids)}})
    return read

