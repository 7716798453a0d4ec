"""What a node's admins do, each in one transaction with its line in the audit log (who, when, what, why) and the
label the node's labeler signs for it (plyrd.moderation.labels):

- take down / restore a track, comment or playlist: it disappears from every API and page for everyone but admins
  and its owner, who sees why (the one visibility rule, plyrd.catalog.tracks `visible`); its files stay; the owner's
  PDS record is left alone (it is theirs). A track's takedown is the `!takedown` label, its restore the negation;
- flag / clear a track's artwork as sensitive: an operator label, blurred for everyone who has not opted in, as the
  artist's own content notice is;
- suspend / restore an uploader: they sign in and listen, and cannot upload or comment (plyrd.moderation.suspension);
- purge a taken-down track's files once `moderation.purge_grace_days` have passed: the track goes, as when its artist
  deletes it, without touching their record;
- close a report's case (resolved or dismissed), with or without one of the above.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..catalog.labels import SENSITIVE_LABELS
from ..catalog.revisions import drop_revisions
from ..catalog.tracks import track_blobs
from ..db import Database
from ..errors import InvalidInput, NotFound
from ..storage import BlobStore
from . import reports

TAKEDOWN_TARGETS = {"track": "tracks", "comment": "comments", "playlist": "playlists"}
TAKEDOWN_LABEL = "!takedown"
COPYRIGHT_LABEL = "copyright-violation"  # plyr.fm's, signed with a takedown that settles a copyright report
FLAG_VALUES = tuple(sorted(SENSITIVE_LABELS))
DEFAULT_FLAG = "nudity"
MAX_REASON = 1000
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"


def clean_reason(value: Any, *, required: bool = True) -> str | None:
    """Why an admin acts: the owner reads it, so it is plain text, at most 1000 characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput("say why (reason): the owner and the audit log read it")
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise InvalidInput("reason must be text")
    value = value.strip()
    if len(value) > MAX_REASON:
        raise InvalidInput(f"reason must be at most {MAX_REASON} characters")
    return value


async def audit(conn: Any, actor: str, action: str, target_type: str, target_id: str | int,
                reason: str | None, detail: dict[str, Any] | None = None) -> None:
    """One line of the audit log, inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO audit_log(actor, action, target_type, target_id, reason, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (actor, action, target_type, str(target_id), reason, json.dumps(detail or {})))


async def _label(conn: Any, uri: str | None, cid: str | None, val: str, *, neg: bool) -> None:
    """The label the node's labeler signs for this action (tracks with a record only: a label names a record)."""
    if uri is None:
        return
    from .labels import emit

    await emit(conn, uri=uri, cid=cid, val=val, neg=neg)


async def _case_reason(conn: Any, case_id: int | None) -> str | None:
    if case_id is None:
        return None
    async with conn.execute("SELECT reason FROM reports WHERE id = ?", (case_id,)) as cur:
        row = await cur.fetchone()
    return row["reason"] if row else None


async def _label_active(conn: Any, uri: str | None, val: str) -> bool:
    """Whether the node's newest label of this value on this record is a positive one (not negated)."""
    if uri is None:
        return False
    async with conn.execute("SELECT neg FROM labels WHERE uri = ? AND val = ? ORDER BY seq DESC LIMIT 1",
                            (uri, val)) as cur:
        row = await cur.fetchone()
    return row is not None and not row["neg"]


async def _row(conn: Any, table: str, target_id: Any) -> Any:
    key = int(target_id) if table in ("tracks", "comments") and str(target_id).isdigit() else target_id
    if table in ("tracks", "comments") and not isinstance(key, int):
        raise NotFound(f"no such {table[:-1]}")
    async with conn.execute(f"SELECT * FROM {table} WHERE id = ?", (key,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no such {table[:-1]}")
    return row


async def _close(conn: Any, case_id: int | None, admin: str, resolution: str | None) -> None:
    if case_id is not None:
        await reports.close_case(conn, case_id, admin=admin, state="resolved", resolution=resolution)


async def take_down(db: Database, admin: str, target_type: str, target_id: Any, reason: Any, *,
                    case_id: int | None = None) -> None:
    """Take a track, comment or playlist down (see the module docstring)."""
    table = TAKEDOWN_TARGETS.get(target_type)
    if table is None:
        raise InvalidInput(f"only a {', '.join(TAKEDOWN_TARGETS)} can be taken down")
    why = clean_reason(reason)
    async with db.write() as conn:
        row = await _row(conn, table, target_id)
        if row["taken_down"] is not None:
            raise InvalidInput(f"this {target_type} is already taken down")
        await conn.execute(f"UPDATE {table} SET taken_down = ?, taken_down_at = {_NOW_SQL} WHERE id = ?",
                           (why, row["id"]))
        if target_type == "track":
            await _label(conn, row["record_uri"], row["record_cid"], TAKEDOWN_LABEL, neg=False)
            if await _case_reason(conn, case_id) == "copyright":  # plyr.fm's value, for other apps' filters
                await _label(conn, row["record_uri"], row["record_cid"], COPYRIGHT_LABEL, neg=False)
        await audit(conn, admin, "takedown", target_type, row["id"], why)
        await _close(conn, case_id, admin, f"taken down: {why}")


async def restore(db: Database, admin: str, target_type: str, target_id: Any, reason: Any) -> None:
    """Undo a takedown: the item is back for everyone who could see it before."""
    table = TAKEDOWN_TARGETS.get(target_type)
    if table is None:
        raise InvalidInput(f"only a {', '.join(TAKEDOWN_TARGETS)} can be restored")
    why = clean_reason(reason, required=False)
    async with db.write() as conn:
        row = await _row(conn, table, target_id)
        if row["taken_down"] is None:
            raise InvalidInput(f"this {target_type} is not taken down")
        await conn.execute(f"UPDATE {table} SET taken_down = NULL, taken_down_at = NULL WHERE id = ?", (row["id"],))
        if target_type == "track":
            await _label(conn, row["record_uri"], row["record_cid"], TAKEDOWN_LABEL, neg=True)
            if await _label_active(conn, row["record_uri"], COPYRIGHT_LABEL):
                await _label(conn, row["record_uri"], row["record_cid"], COPYRIGHT_LABEL, neg=True)
        await audit(conn, admin, "restore", target_type, row["id"], why)


async def flag_sensitive(db: Database, admin: str, track_id: Any, reason: Any, value: Any = None, *,
                         case_id: int | None = None) -> None:
    """Mark a track's artwork sensitive (an operator label): blurred for whoever has not opted in."""
    val = value or DEFAULT_FLAG
    if val not in FLAG_VALUES:
        raise InvalidInput(f"value must be one of {', '.join(FLAG_VALUES)}")
    why = clean_reason(reason, required=False)
    async with db.write() as conn:
        row = await _row(conn, "tracks", track_id)
        labels = json.loads(row["operator_labels"])
        if val in labels:
            raise InvalidInput(f"this track's artwork is already flagged {val}")
        await conn.execute("UPDATE tracks SET operator_labels = ? WHERE id = ?",
                           (json.dumps([*labels, val]), row["id"]))
        await _label(conn, row["record_uri"], row["record_cid"], val, neg=False)
        await audit(conn, admin, "flag_sensitive", "track", row["id"], why, {"value": val})
        await _close(conn, case_id, admin, f"artwork flagged {val}")


async def clear_sensitive(db: Database, admin: str, track_id: Any, reason: Any) -> None:
    """Clear every sensitive flag the node's admins put on a track's artwork (the artist's own notice stays)."""
    why = clean_reason(reason, required=False)
    async with db.write() as conn:
        row = await _row(conn, "tracks", track_id)
        labels = json.loads(row["operator_labels"])
        flagged = [v for v in labels if v in SENSITIVE_LABELS]
        if not flagged:
            raise InvalidInput("this track's artwork is not flagged")
        await conn.execute("UPDATE tracks SET operator_labels = ? WHERE id = ?",
                           (json.dumps([v for v in labels if v not in SENSITIVE_LABELS]), row["id"]))
        for val in flagged:
            await _label(conn, row["record_uri"], row["record_cid"], val, neg=True)
        await audit(conn, admin, "clear_sensitive", "track", row["id"], why, {"values": flagged})


async def suspend(db: Database, admin: str, did: Any, reason: Any, *, case_id: int | None = None) -> None:
    """Suspend an uploader: they keep listening; uploads and comments are refused, saying why."""
    why = clean_reason(reason)
    async with db.write() as conn:
        row = await _user(conn, did)
        if row["suspended"] is not None:
            raise InvalidInput("this account is already suspended")
        await conn.execute(f"UPDATE users SET suspended = ?, suspended_at = {_NOW_SQL} WHERE did = ?", (why, did))
        await audit(conn, admin, "suspend", "artist", did, why)
        await _close(conn, case_id, admin, f"uploader suspended: {why}")


async def unsuspend(db: Database, admin: str, did: Any, reason: Any) -> None:
    why = clean_reason(reason, required=False)
    async with db.write() as conn:
        row = await _user(conn, did)
        if row["suspended"] is None:
            raise InvalidInput("this account is not suspended")
        await conn.execute("UPDATE users SET suspended = NULL, suspended_at = NULL WHERE did = ?", (did,))
        await audit(conn, admin, "unsuspend", "artist", did, why)


async def _user(conn: Any, did: Any) -> Any:
    if not isinstance(did, str):
        raise NotFound("no such account")
    async with conn.execute("SELECT did, suspended FROM users WHERE did = ?", (did,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound("no such account")
    return row


async def purge(db: Database, store: BlobStore, admin: str, track_id: Any, reason: Any, *, grace_days: float,
                 now: float | None = None) -> None:
    """Free a taken-down track's files once its grace period has passed: its audio, renditions, artwork and earlier
    audio go; the row stays, taken down and unavailable, holding no file, so the artist's record (theirs, untouched)
    is never imported or resolved into a track here again."""
    why = clean_reason(reason, required=False)
    now = time.time() if now is None else now
    async with db.write() as conn:
        row = await _row(conn, "tracks", track_id)
        if row["taken_down"] is None:
            raise InvalidInput("only a taken-down track can be purged")
        if row["purged_at"] is not None:
            raise InvalidInput("this track's files were purged already")
        left = row["taken_down_at"] + grace_days * 86400 - now
        if left > 0:
            raise InvalidInput(f"this track was taken down less than {grace_days:g} days ago: its files can be "
                               f"purged in {left / 86400:.1f} days (moderation.purge_grace_days)")
        released = await drop_revisions(conn, store, row["id"])
        released += [sha for sha in track_blobs(row) if await store.decref(conn, sha) == 0]
        await conn.execute(
            "UPDATE tracks SET purged_at = ?, status = 'unavailable', web_sha = NULL, image_sha = NULL,"
            " image_mime = NULL, thumb_sha = NULL, display_sha = NULL, peaks = NULL WHERE id = ?", (now, row["id"]))
        await audit(conn, admin, "purge", "track", row["id"], why,
                    {"title": row["title"], "artist_did": row["artist_did"], "taken_down": row["taken_down"]})
    await store.remove_unreferenced(released)


async def dismiss(db: Database, admin: str, case_id: int, resolution: Any) -> None:
    """Close a case without acting on its subject."""
    why = clean_reason(resolution, required=False)
    async with db.write() as conn:
        row = await reports.close_case(conn, case_id, admin=admin, state="dismissed", resolution=why)
        await audit(conn, admin, "dismiss_report", row["target_type"], row["target_id"], why, {"report": case_id})


async def resolve(db: Database, admin: str, case_id: int, resolution: Any) -> None:
    """Close a case as handled (its action taken separately, or outside the node)."""
    why = clean_reason(resolution, required=False)
    async with db.write() as conn:
        row = await reports.close_case(conn, case_id, admin=admin, state="resolved", resolution=why)
        await audit(conn, admin, "resolve_report", row["target_type"], row["target_id"], why, {"report": case_id})


async def audit_log(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT a.*, u.handle AS actor_handle FROM audit_log a LEFT JOIN users u"
                             " ON u.did = a.actor ORDER BY a.created_at DESC, a.id DESC LIMIT ?", (limit,))
    return [{**dict(zip(r.keys(), tuple(r), strict=True)), "detail": json.loads(r["detail"])} for r in rows]
