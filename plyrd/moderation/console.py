"""What the admin console (/admin, plyrd.web.admin) reads: open report cases with their subjects, the node's users
with their storage, takedowns and their purge dates, failed jobs and PDS writes, storage totals, the audit log; and
the two actions that are the console's own (retrying a failed job, retrying failed PDS writes), each audited.
Plain async functions over plyrd.db; nothing here knows Quart. Takedowns, flags and suspensions are
plyrd.moderation.actions'."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atproto.outbox import retry_failed
from ..catalog.tracks import get_track_row, track_json
from ..db import Database
from ..errors import InvalidInput, NotFound
from ..jobs import FAILED, hub_for, requeue_failed
from . import NODE_ACTOR, actions, reports

USERS_PAGE = 50
USER_SORTS = ("storage", "last_seen")
# Job kinds whose handler releases the upload's files when it fails for good (plyrd.catalog.uploads / revisions):
# retrying one of those is only sound while the upload row still holds its files (or, for a new upload, its track
# still exists and holds them), else the job would run on bytes nothing references.
_UPLOAD_KINDS = ("upload.process", "track.replace_audio")


def _dict(row: Any) -> dict[str, Any]:
    return dict(zip(row.keys(), tuple(row), strict=True))


# ---- report cases ----------------------------------------------------------------------------------------------


async def open_cases(db: Database, public_url: str, limit: int = 100) -> list[dict[str, Any]]:
    """Open cases, most recently reported first, each with its reports (reporters' reasons and notes) and its
    subject summarised for an admin (`subject`)."""
    cases = await reports.list_reports(db, "open", limit)
    for case in cases:
        case["subject"] = await subject(db, case["target_type"], case["target_id"], public_url)
        for entry in case["reports"]:
            entry["by_node"] = entry["reporter"] == NODE_ACTOR
    return cases


async def subject(db: Database, kind: str, target: str, public_url: str) -> dict[str, Any]:
    """What a case is about, as an admin sees it (everything, taken down or not). `exists` False: it is gone (deleted
    or purged since), and the case can only be closed."""
    gone = {"kind": kind, "id": target, "exists": False, "title": f"{kind} {target}", "url": None, "thumb": None,
            "by": None, "by_url": None, "text": None, "taken_down": None, "sensitive": False, "suspended": None}
    if kind == "track":
        if not target.isdigit() or len(target) > 18:
            return gone
        try:
            row = await get_track_row(db, int(target))
        except NotFound:
            return gone
        t = track_json(row, public_url, peaks=False)
        return {**gone, "exists": True, "title": t["title"], "url": f"/track/{t['id']}", "thumb": t["thumbnail_url"],
                "by": t["artist_handle"] or t["artist"], "by_url": _profile(t["artist_handle"], t["artist_did"]),
                "taken_down": t["taken_down"], "sensitive": bool(row["operator_labels"] != "[]"),
                "operator_labels": json.loads(row["operator_labels"]), "track_id": t["id"]}
    if kind == "comment":
        if not target.isdigit() or len(target) > 18:
            return gone
        row = await db.fetchone(
            "SELECT c.id, c.text, c.did, c.track_id, c.taken_down, t.title, u.handle FROM comments c"
            " JOIN tracks t ON t.id = c.track_id LEFT JOIN users u ON u.did = c.did WHERE c.id = ?", (int(target),))
        if row is None:
            return gone
        return {**gone, "exists": True, "title": f"comment on “{row['title']}”", "url": f"/track/{row['track_id']}",
                "text": row["text"], "by": row["handle"] or row["did"], "by_url": _profile(row["handle"], row["did"]),
                "taken_down": row["taken_down"]}
    if kind == "playlist":
        row = await db.fetchone(
            "SELECT p.id, p.name, p.owner_did, p.is_private, p.taken_down, p.thumb_sha, u.handle FROM playlists p"
            " LEFT JOIN users u ON u.did = p.owner_did WHERE p.id = ?", (target,))
        if row is None:
            return gone
        return {**gone, "exists": True, "title": row["name"], "url": f"/playlist/{row['id']}",
                "thumb": f"{public_url}/lists/covers/{row['thumb_sha']}" if row["thumb_sha"] else None,
                "by": row["handle"] or row["owner_did"], "by_url": _profile(row["handle"], row["owner_did"]),
                "taken_down": row["taken_down"], "private": bool(row["is_private"])}
    if kind == "artist":
        row = await db.fetchone("SELECT did, handle, display_name, avatar_url, suspended FROM users WHERE did = ?",
                                (target,))
        if row is None:
            return gone
        return {**gone, "exists": True, "title": row["display_name"] or row["handle"] or row["did"],
                "url": _profile(row["handle"], row["did"]), "thumb": row["avatar_url"], "by": row["handle"],
                "suspended": row["suspended"], "did": row["did"]}
    if kind == "album":
        row = await db.fetchone(
            "SELECT a.title, a.slug, a.thumb_sha, a.artist_did, u.handle FROM albums a"
            " LEFT JOIN users u ON u.did = a.artist_did WHERE a.id = ?", (target,))
        if row is None:
            return gone
        return {**gone, "exists": True, "title": row["title"],
                "url": f"/u/{row['handle']}/album/{row['slug']}" if row["handle"] else None,
                "thumb": f"{public_url}/lists/covers/{row['thumb_sha']}" if row["thumb_sha"] else None,
                "by": row["handle"] or row["artist_did"], "by_url": _profile(row["handle"], row["artist_did"])}
    return {**gone, "exists": True, "title": f"tag “{target}”", "url": f"/tag/{quote(target, safe='')}"}


def _profile(handle: str | None, did: str | None) -> str | None:
    who = handle or did
    return f"/u/{who}" if who else None


# ---- users -----------------------------------------------------------------------------------------------------

# The blobs each person's uploads hold (original, web rendition, artwork; and their kept revisions): UNION, not
# UNION ALL, so a blob two of their tracks share counts once for them.
_USER_BLOBS = """
    SELECT artist_did AS did, original_sha AS sha FROM tracks WHERE source = 'upload'
    UNION SELECT artist_did, web_sha FROM tracks WHERE source = 'upload'
    UNION SELECT artist_did, image_sha FROM tracks WHERE source = 'upload'
    UNION SELECT artist_did, thumb_sha FROM tracks WHERE source = 'upload'
    UNION SELECT artist_did, display_sha FROM tracks WHERE source = 'upload'
    UNION SELECT t.artist_did, r.original_sha FROM track_revisions r JOIN tracks t ON t.id = r.track_id
    UNION SELECT t.artist_did, r.web_sha FROM track_revisions r JOIN tracks t ON t.id = r.track_id"""


@dataclass(frozen=True)
class UsersPage:
    users: list[dict[str, Any]]
    total: int
    sort: str
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.users) < self.total


async def users(db: Database, role_of: Callable[[str, str | None], str], *, sort: str = "storage", offset: int = 0,
                limit: int = USERS_PAGE) -> UsersPage:
    """The node's people (everyone who signed in here, and every uploader), with their role (`role_of(did, handle)`:
    admin, uploader or listener, from the node's config), suspension, storage used by their uploads, uploads count
    and when they were last seen (their latest session use or sign-in); sorted by storage or last seen, paged."""
    if sort not in USER_SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(USER_SORTS)}")
    if offset < 0:
        raise InvalidInput("offset must be 0 or more")
    order = "storage DESC, last_seen DESC" if sort == "storage" else "last_seen DESC NULLS LAST, storage DESC"
    rows = await db.fetchall(
        f"""WITH people(did) AS (SELECT did FROM node_users
                                 UNION SELECT artist_did FROM tracks WHERE source = 'upload'),
            refs AS ({_USER_BLOBS}),
            used AS (SELECT r.did, sum(b.size) AS bytes, count(*) AS files FROM refs r
                     JOIN blobs b ON b.sha256 = r.sha GROUP BY r.did),
            ups AS (SELECT artist_did AS did, count(*) AS n FROM tracks WHERE source = 'upload' GROUP BY artist_did),
            seen AS (SELECT did, max(last_used_at) AS t FROM auth_sessions GROUP BY did)
        SELECT p.did, u.handle, u.display_name, u.avatar_url, u.suspended, u.suspended_at,
               coalesce(used.bytes, 0) AS storage, coalesce(used.files, 0) AS files, coalesce(ups.n, 0) AS uploads,
               nullif(max(coalesce(seen.t, 0), coalesce(nu.signed_in_at, 0)), 0) AS last_seen
        FROM people p LEFT JOIN users u ON u.did = p.did LEFT JOIN used ON used.did = p.did
            LEFT JOIN ups ON ups.did = p.did LEFT JOIN seen ON seen.did = p.did
            LEFT JOIN node_users nu ON nu.did = p.did
        ORDER BY {order}, p.did LIMIT ? OFFSET ?""", (limit, offset))
    total = await db.fetchone("SELECT count(*) FROM (SELECT did FROM node_users UNION"
                              " SELECT artist_did FROM tracks WHERE source = 'upload')")
    found = [{**_dict(r), "role": role_of(r["did"], r["handle"])} for r in rows]
    return UsersPage(found, int(total[0]) if total else 0, sort, offset, limit)


# ---- takedowns ---------------------------------------------------------------------------------------------------


async def takedowns(db: Database, public_url: str, *, grace_days: float,
                    now: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """What the admins took down (tracks with when their files may be purged; comments; playlists) and which
    tracks' artwork they flagged sensitive, newest first."""
    now = time.time() if now is None else now
    tracks = []
    for r in await db.fetchall(
            "SELECT t.id, t.title, t.artist_did, t.taken_down, t.taken_down_at, t.purged_at, t.thumb_sha, u.handle"
            " FROM tracks t LEFT JOIN users u ON u.did = t.artist_did WHERE t.taken_down IS NOT NULL"
            " ORDER BY t.taken_down_at DESC, t.id DESC LIMIT 500"):
        purge_at = (r["taken_down_at"] or now) + grace_days * 86400
        tracks.append({**_dict(r), "purge_at": purge_at, "purgeable": purge_at <= now and r["purged_at"] is None,
                       "thumb": f"{public_url}/images/{r['thumb_sha']}" if r["thumb_sha"] else None})
    comments = [_dict(r) for r in await db.fetchall(
        "SELECT c.id, c.text, c.did, c.track_id, c.taken_down, c.taken_down_at, t.title, u.handle FROM comments c"
        " JOIN tracks t ON t.id = c.track_id LEFT JOIN users u ON u.did = c.did WHERE c.taken_down IS NOT NULL"
        " ORDER BY c.taken_down_at DESC LIMIT 500")]
    lists = [_dict(r) for r in await db.fetchall(
        "SELECT p.id, p.name, p.owner_did, p.taken_down, p.taken_down_at, u.handle FROM playlists p"
        " LEFT JOIN users u ON u.did = p.owner_did WHERE p.taken_down IS NOT NULL"
        " ORDER BY p.taken_down_at DESC LIMIT 500")]
    flagged = [{**_dict(r), "labels": json.loads(r["operator_labels"])} for r in await db.fetchall(
        "SELECT t.id, t.title, t.artist_did, t.operator_labels, u.handle FROM tracks t"
        " LEFT JOIN users u ON u.did = t.artist_did WHERE t.operator_labels != '[]' ORDER BY t.updated_at DESC"
        " LIMIT 500")]
    return {"tracks": tracks, "comments": comments, "playlists": lists, "flagged": flagged}


# ---- failed work ---------------------------------------------------------------------------------------------------


async def failed_jobs(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    """Jobs that ran out of attempts, newest first, with whose they were and whether a retry can work."""
    rows = await db.fetchall(
        "SELECT j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.error, j.created_at, j.updated_at,"
        " up.id AS upload_id, up.blob_refs, up.track_id AS upload_track, up.replaces,"
        " (SELECT 1 FROM tracks t WHERE t.id = up.track_id) AS track_exists"
        " FROM jobs j LEFT JOIN uploads up ON up.job_id = j.id"
        " WHERE j.state = ? ORDER BY j.updated_at DESC, j.id DESC LIMIT ?", (FAILED, limit))
    dids = {json.loads(r["payload"]).get("did") for r in rows} - {None}
    handles = {}
    if dids:
        handles = {r["did"]: r["handle"] for r in await db.fetchall(
            "SELECT did, handle FROM users WHERE did IN (SELECT value FROM json_each(?))", (json.dumps(sorted(dids)),))}
    out = []
    for r in rows:
        payload = json.loads(r["payload"])
        did = payload.get("did")
        why_not = _why_not_retry(r)
        out.append({"id": r["id"], "kind": r["kind"], "attempts": r["attempts"], "max_attempts": r["max_attempts"],
                    "error": r["error"], "created_at": r["created_at"], "updated_at": r["updated_at"],
                    "did": did, "handle": handles.get(did),
                    "title": (payload.get("fields") or {}).get("title") or payload.get("filename"),
                    "track_id": r["upload_track"] or r["replaces"], "retryable": why_not is None,
                    "why_not": why_not})
    return out


def _why_not_retry(row: Any) -> str | None:
    """None when retrying the job can work; else why not, in words for the admin."""
    if row["kind"] not in _UPLOAD_KINDS:
        return None
    if row["upload_id"] is None:
        return "its upload is gone"
    if row["blob_refs"] != "[]" or (row["kind"] == "upload.process" and row["track_exists"]):
        return None
    return "its files were released when it failed: the artist uploads it again"


async def retry_job(db: Database, admin: str, job_id: int, reason: Any = None) -> dict[str, Any]:
    """Give a failed job another full set of attempts, now; audited (who, when, why, the error it had)."""
    why = actions.clean_reason(reason, required=False)
    async with db.write() as conn:
        async with conn.execute(
                "SELECT j.*, up.id AS upload_id, up.blob_refs, up.replaces,"
                " (SELECT 1 FROM tracks t WHERE t.id = up.track_id) AS track_exists"
                " FROM jobs j LEFT JOIN uploads up ON up.job_id = j.id WHERE j.id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        if row["state"] != FAILED:
            raise InvalidInput(f"job {job_id} is {row['state']}, not failed")
        if (why_not := _why_not_retry(row)) is not None:
            raise InvalidInput(f"job {job_id} cannot be retried: {why_not}")
        await requeue_failed(conn, job_id)  # plyrd.jobs owns a job's life
        await actions.audit(conn, admin, "retry_job", "job", job_id, why,
                            {"kind": row["kind"], "error": row["error"], "attempts": row["attempts"]})
    hub_for(db).wake_runners(row["kind"])
    return {"retried": 1, "kind": row["kind"]}


async def outbox_failures(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    """PDS writes the PDS refused for good (plyrd.atproto.outbox), newest first, with whose they are."""
    return [_dict(r) for r in await db.fetchall(
        "SELECT o.seq, o.did, u.handle, o.collection, o.rkey, o.op, o.attempts, o.last_error, o.created_at,"
        " o.updated_at FROM outbox o LEFT JOIN users u ON u.did = o.did WHERE o.state = 'failed'"
        " ORDER BY o.updated_at DESC, o.seq DESC LIMIT ?", (limit,))]


async def retry_outbox(db: Database, admin: str, did: str | None, reason: Any = None) -> dict[str, Any]:
    """Queue one account's failed PDS writes again (all accounts' when `did` is None), then audit it.
    plyrd.atproto.outbox.retry_failed owns the queue and commits on its own, so the audit line is its own
    transaction, written after the writes are queued (a crash in between loses the line, never the retry)."""
    why = actions.clean_reason(reason, required=False)
    if did is not None and (not isinstance(did, str) or not did.startswith("did:") or len(did) > 2048):
        raise InvalidInput("did must be an account's DID")
    n = await retry_failed(db, did)
    async with db.write() as conn:
        await actions.audit(conn, admin, "retry_outbox", "artist" if did else "node", did or "*", why,
                            {"retried": n})
    return {"retried": n}


# ---- storage -----------------------------------------------------------------------------------------------------

# Every blob counted once, under the first kind (lowest rank) that holds it, so the kinds add up to the blobs table.
STORAGE_KINDS = {
    1: "library files (read in place)",
    2: "audio originals",
    3: "web renditions",
    4: "artwork",
    5: "avatars",
    6: "remote audio cache",
    7: "transcode cache",
    8: "other (in flight, or awaiting cleanup)",
}
_KINDS_SQL = """
WITH refs(sha, rank) AS (
    SELECT sha256, 1 FROM blobs WHERE external = 1
    UNION ALL SELECT original_sha, 2 FROM tracks WHERE source != 'remote'
    UNION ALL SELECT original_sha, 2 FROM track_revisions
    UNION ALL SELECT web_sha, 3 FROM tracks UNION ALL SELECT web_sha, 3 FROM track_revisions
    UNION ALL SELECT image_sha, 4 FROM tracks UNION ALL SELECT thumb_sha, 4 FROM tracks
    UNION ALL SELECT display_sha, 4 FROM tracks
    UNION ALL SELECT image_sha, 4 FROM albums UNION ALL SELECT thumb_sha, 4 FROM albums
    UNION ALL SELECT display_sha, 4 FROM albums
    UNION ALL SELECT image_sha, 4 FROM playlists UNION ALL SELECT thumb_sha, 4 FROM playlists
    UNION ALL SELECT display_sha, 4 FROM playlists
    UNION ALL SELECT avatar_sha, 5 FROM users
    UNION ALL SELECT sha256, 6 FROM remote_audio
    UNION ALL SELECT blob_sha256, 7 FROM transcodes
), kinds AS (SELECT sha, min(rank) AS rank FROM refs WHERE sha IS NOT NULL GROUP BY sha)
SELECT coalesce(k.rank, 8) AS rank, count(*) AS files, coalesce(sum(b.size), 0) AS bytes
FROM blobs b LEFT JOIN kinds k ON k.sha = b.sha256 GROUP BY 1 ORDER BY 1"""


async def storage_totals(db: Database, data_dir: Path) -> dict[str, Any]:
    """Blobs by kind (count, bytes), their totals, and the data directory's disk (total, used, free bytes)."""
    found = {r["rank"]: (r["files"], r["bytes"]) for r in await db.fetchall(_KINDS_SQL)}
    kinds = [{"kind": name, "files": found.get(rank, (0, 0))[0], "bytes": found.get(rank, (0, 0))[1]}
             for rank, name in STORAGE_KINDS.items()]
    disk = shutil.disk_usage(data_dir)
    return {"kinds": kinds, "files": sum(k["files"] for k in kinds), "bytes": sum(k["bytes"] for k in kinds),
            "disk": {"total": disk.total, "used": disk.used, "free": disk.free}}


# ---- the overview ------------------------------------------------------------------------------------------------


async def overview(db: Database) -> dict[str, int]:
    """The counts the console's first page leads with."""
    row = await db.fetchone(
        "SELECT (SELECT count(*) FROM reports WHERE state = 'open') AS open_reports,"
        " (SELECT count(*) FROM jobs WHERE state = 'failed') AS failed_jobs,"
        " (SELECT count(*) FROM outbox WHERE state = 'failed') AS failed_writes,"
        " (SELECT count(*) FROM tracks WHERE taken_down IS NOT NULL) AS taken_down_tracks,"
        " (SELECT count(*) FROM users WHERE suspended IS NOT NULL) AS suspended,"
        " (SELECT count(*) FROM (SELECT did FROM node_users UNION"
        "  SELECT artist_did FROM tracks WHERE source = 'upload')) AS people")
    assert row is not None
    return _dict(row)


async def audit_log(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    """The audit log, newest first (plyrd.moderation.actions keeps it), each artist target with its handle."""
    entries = await actions.audit_log(db, limit)
    dids = sorted({e["target_id"] for e in entries if e["target_type"] == "artist"})
    handles = {}
    if dids:
        handles = {r["did"]: r["handle"] for r in await db.fetchall(
            "SELECT did, handle FROM users WHERE did IN (SELECT value FROM json_each(?))", (json.dumps(dids),))}
    for e in entries:
        e["target_handle"] = handles.get(e["target_id"]) if e["target_type"] == "artist" else None
    return entries
