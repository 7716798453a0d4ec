"""Reports: a listener tells the node's admins about a track, comment, playlist, album, artist or tag.

plyr.fm's shape (`POST /moderation/reports`): `{target_type, target_id, reason, description?, target_name?,
target_url?}` with its reasons (copyright, abuse, spam, explicit, other). Reports of the same subject while its case is
open fold into that case (one per reporter: a second report from them replaces their first), so an admin acts once;
a report of a subject whose case was closed opens a new one. What the node flags itself (a duplicate recording) is a
report from `NODE_ACTOR` with the reason "duplicate".
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..catalog.comments import comment_visible
from ..catalog.playlists import get_playlist
from ..catalog.tracks import Audience, album_visible, artist_shown, open_track
from ..db import Database
from ..errors import InvalidInput, NotFound
from ..inputs import check_text
from . import NODE_ACTOR

REASONS = ("copyright", "abuse", "spam", "explicit", "other")
TARGET_TYPES = ("track", "comment", "playlist", "artist", "album", "tag")
MAX_DESCRIPTION = 1000
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}")


@dataclass(frozen=True)
class NewReport:
    target_type: str
    target_id: str
    reason: str
    description: str | None


def parse_report(body: Any) -> NewReport:
    """A report as a client sends it, checked; plyr.fm's optional target_name/target_url are accepted and ignored
    (the node knows its subjects)."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object: {target_type, target_id, reason, description?}")
    unknown = set(body) - {"target_type", "target_id", "reason", "description", "target_name", "target_url",
                           "screenshot_url"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    kind = body.get("target_type")
    if kind not in TARGET_TYPES:
        raise InvalidInput(f"target_type must be one of {', '.join(TARGET_TYPES)}")
    target = body.get("target_id")
    if isinstance(target, int) and not isinstance(target, bool):
        target = str(target)
    if not isinstance(target, str) or not target.strip() or len(target) > 2048:
        raise InvalidInput("target_id must name what you report (a track id, a DID...)")
    reason = body.get("reason")
    if reason not in REASONS:
        raise InvalidInput(f"reason must be one of {', '.join(REASONS)}")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidInput("description must be a string")
    description = check_text(description.strip(), field="description") or None if description else None
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION} characters")
    return NewReport(kind, check_text(target.strip(), field="target_id"), reason, description)


async def check_target(db: Database, report: NewReport, audience: Audience) -> None:
    """The subject exists and the reporter may see it (a report cannot probe for what is hidden from them)."""
    kind, target = report.target_type, report.target_id
    if kind == "track":
        await open_track(db, _int_id(target), audience)
        return
    if kind == "comment":
        seen = comment_visible(audience)
        row = await db.fetchone(f"SELECT c.track_id FROM comments c WHERE c.id = ? AND {seen.sql}",
                                (_int_id(target), *seen.params))
        if row is None:
            raise NotFound("no such comment")
        await open_track(db, row["track_id"], audience)
        return
    if kind == "playlist":
        await get_playlist(db, target, audience.did)
        return
    if kind == "album":
        seen = album_visible(audience)
        if await db.fetchone(f"SELECT 1 FROM albums a WHERE a.id = ? AND {seen.sql}", (target, *seen.params)) is None:
            raise NotFound("no such album")
        return
    if kind == "artist":
        shown = artist_shown("u.did")
        if not _DID.fullmatch(target) or await db.fetchone(
                f"SELECT 1 FROM users u WHERE u.did = ? AND {shown.sql}", (target, *shown.params)) is None:
            raise NotFound("no such artist (send their DID)")
        return
    if len(target) > 100:
        raise InvalidInput("a tag is at most 100 characters")


def _int_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise NotFound("no such item")
    return int(value)


async def file_report(db: Database, reporter: str, report: NewReport) -> dict[str, Any]:
    """Add a report to its subject's open case (opening one when there is none). Returns what the reporter sees:
    that it was received, and the case it joined."""
    async with db.write() as conn:
        case_id, folded = await add_to_case(conn, reporter, report)
    return {"received": True, "report_id": case_id, "joined_existing": folded}


async def add_to_case(conn: Any, reporter: str, report: NewReport) -> tuple[int, bool]:
    """Inside the caller's transaction: the case id, and whether the report joined a case already open."""
    async with conn.execute("SELECT id FROM reports WHERE target_type = ? AND target_id = ? AND state = 'open'",
                            (report.target_type, report.target_id)) as cur:
        row = await cur.fetchone()
    folded = row is not None
    if row is None:
        cur = await conn.execute("INSERT INTO reports(target_type, target_id, reason) VALUES (?, ?, ?)",
                                 (report.target_type, report.target_id, report.reason))
        case_id = int(cur.lastrowid or 0)
    else:
        case_id = int(row["id"])
    await conn.execute(
        "INSERT INTO report_entries(report_id, reporter, reason, description) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(report_id, reporter) DO UPDATE SET reason = excluded.reason,"
        f" description = excluded.description, created_at = {_NOW_SQL}",
        (case_id, reporter, report.reason, report.description))
    await conn.execute(
        "UPDATE reports SET entries = (SELECT count(*) FROM report_entries WHERE report_id = ?),"
        f" updated_at = {_NOW_SQL} WHERE id = ?", (case_id, case_id))
    return case_id, folded


async def flag_by_node(conn: Any, target_type: str, target_id: str, reason: str, description: str) -> int:
    """What the node flags for review itself (a duplicate recording), inside the caller's transaction."""
    case_id, _ = await add_to_case(conn, NODE_ACTOR, NewReport(target_type, target_id, reason, description[:1000]))
    return case_id


async def list_reports(db: Database, state: str = "open", limit: int = 100) -> list[dict[str, Any]]:
    """Cases in a state, most recently reported first, each with its reports."""
    if state not in ("open", "resolved", "dismissed"):
        raise InvalidInput("state must be open, resolved or dismissed")
    cases = await db.fetchall("SELECT * FROM reports WHERE state = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
                              (state, limit))
    entries: dict[int, list[dict[str, Any]]] = {}
    if cases:
        ids = json.dumps([c["id"] for c in cases])
        for e in await db.fetchall(
                "SELECT e.*, u.handle FROM report_entries e LEFT JOIN users u ON u.did = e.reporter"
                " WHERE e.report_id IN (SELECT value FROM json_each(?)) ORDER BY e.created_at", (ids,)):
            entries.setdefault(e["report_id"], []).append(
                {"reporter": e["reporter"], "handle": e["handle"], "reason": e["reason"],
                 "description": e["description"], "created_at": e["created_at"]})
    return [{**_case(c), "reports": entries.get(c["id"], [])} for c in cases]


def _case(row: sqlite3.Row) -> dict[str, Any]:
    return dict(zip(row.keys(), tuple(row), strict=True))


async def close_case(conn: Any, case_id: int, *, admin: str, state: str, resolution: str | None) -> sqlite3.Row:
    """Resolve or dismiss a case, inside the caller's transaction (the admin action that goes with it is audited
    by plyrd.moderation.actions)."""
    if state not in ("resolved", "dismissed"):
        raise InvalidInput("a case is closed as resolved or dismissed")
    async with conn.execute("SELECT * FROM reports WHERE id = ?", (case_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"report {case_id} not found")
    if row["state"] != "open":
        raise InvalidInput(f"report {case_id} is already {row['state']}")
    await conn.execute(
        f"UPDATE reports SET state = ?, closed_by = ?, closed_at = {_NOW_SQL}, resolution = ?, updated_at = {_NOW_SQL}"
        " WHERE id = ?", (state, admin, resolution, case_id))
    return row
