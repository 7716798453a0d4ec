"""A listener's Subsonic state: bookmarks, starred albums and artists, playlist comments (node-local: plyr.fm has no
record type for them), the play queue as Subsonic sees the web player's (plyrd.catalog.queue) and now playing.

Stars of songs are likes (plyrd.catalog.likes) and playlists are the web player's (plyrd.catalog.playlists); this
module adds what Subsonic asks for beside them. Every song listed goes through the catalog's songs(audience), as
every other Subsonic read does.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..catalog import queue
from ..catalog.now_playing import Playing
from ..catalog.tracks import Audience, Where
from ..db import Database
from ..db.queries import rows
from . import catalog as sc
from .envelope import GENERIC, MISSING_PARAMETER, SubsonicError

MAX_COMMENT = 1000
MAX_CLIENT = 100
WEB_PLAYER = "plyrd"  # changedBy / playerName for what the web player saved or reports


def iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0, UTC).isoformat().replace("+00:00", "Z")


def minutes_ago(ts: float) -> int:
    return int(max(0.0, time.time() - ts) // 60)


def whole(name: str, value: str | None, *, default: int | None = None) -> int:
    """A whole number parameter, 0 or more (positions in ms, indexes)."""
    if value is None or value == "":
        if default is None:
            raise SubsonicError(MISSING_PARAMETER, f"Required parameter is missing: {name}")
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise SubsonicError(GENERIC, f"{name} must be a whole number, 0 or more")
    return int(value)


def comment_of(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_COMMENT:
        raise SubsonicError(GENERIC, f"comment must be at most {MAX_COMMENT} characters")
    return value or None


def client_of(value: str | None) -> str:
    """The client name `c` (Subsonic requires it; some clients leave it out)."""
    return (value or "subsonic").strip()[:MAX_CLIENT] or "subsonic"


async def songs_by_id(db: Database, ids: Iterable[int], audience: Audience) -> dict[int, sqlite3.Row]:
    """The songs among `ids` that the caller may see, by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    where = Where.of("t.id IN (SELECT value FROM json_each(?))", json.dumps(wanted)) & sc.songs(audience)
    return {r["id"]: r for r in await sc.song_rows(db, where)}


async def require_songs(db: Database, raw_ids: Sequence[str], audience: Audience) -> list[int]:
    """Track ids of `tr-<n>` ids, each a song the caller may see (error 70 otherwise), in the order given."""
    ids = [sc.track_id_of(raw) for raw in raw_ids]
    found = await songs_by_id(db, ids, audience)
    if any(i not in found for i in ids):
        raise sc.not_found("song")
    return ids


# ---- bookmarks --------------------------------------------------------------------------------------------------


async def save_bookmark(db: Database, did: str, track_id: int, position_ms: int, comment: str | None) -> None:
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO subsonic_bookmarks(did, track_id, position_ms, comment) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(did, track_id) DO UPDATE SET position_ms = excluded.position_ms,"
            " comment = excluded.comment, changed_at = excluded.changed_at",
            (did, track_id, position_ms, comment))


async def delete_bookmark(db: Database, did: str, track_id: int) -> bool:
    return await db.execute("DELETE FROM subsonic_bookmarks WHERE did = ? AND track_id = ?", (did, track_id)) > 0


async def bookmarks(db: Database, audience: Audience) -> list[tuple[sqlite3.Row, sqlite3.Row]]:
    """(bookmark, song) pairs, the latest changed first; bookmarks of songs the caller may no longer see are left
    out."""
    marks = await db.fetchall("SELECT * FROM subsonic_bookmarks WHERE did = ? ORDER BY changed_at DESC, track_id",
                              (audience.did,))
    found = await songs_by_id(db, (m["track_id"] for m in marks), audience)
    return [(m, found[m["track_id"]]) for m in marks if m["track_id"] in found]


# ---- starred albums and artists ---------------------------------------------------------------------------------


async def star_albums(db: Database, did: str, sids: Sequence[str]) -> None:
    """Star albums the caller has been shown (check them with sc.get_album first); starring again is a no-op."""
    rows = [(did, sid, sc.node_album_uuid(sid)) for sid in sids]
    async with db.write() as conn:
        await conn.executemany("INSERT OR IGNORE INTO subsonic_starred_albums(did, sid, album_id) VALUES (?, ?, ?)",
                               rows)


async def unstar_albums(db: Database, did: str, sids: Sequence[str]) -> None:
    async with db.write() as conn:
        await conn.executemany("DELETE FROM subsonic_starred_albums WHERE did = ? AND sid = ?",
                               [(did, sid) for sid in sids])


async def star_artists(db: Database, did: str, artist_dids: Sequence[str]) -> None:
    async with db.write() as conn:
        await conn.executemany("INSERT OR IGNORE INTO subsonic_starred_artists(did, artist_did) VALUES (?, ?)",
                               [(did, a) for a in artist_dids])


async def unstar_artists(db: Database, did: str, artist_dids: Sequence[str]) -> None:
    async with db.write() as conn:
        await conn.executemany("DELETE FROM subsonic_starred_artists WHERE did = ? AND artist_did = ?",
                               [(did, a) for a in artist_dids])


async def starred_albums(db: Database, audience: Audience) -> list[tuple[sqlite3.Row, float]]:
    """(album row, when starred) of the caller's starred albums they may still see, the latest starred first."""
    stars = {r["sid"]: r["created_at"] for r in await db.fetchall(
        "SELECT sid, created_at FROM subsonic_starred_albums WHERE did = ?", (audience.did,))}
    if not stars:
        return []
    rows = await sc.albums_by_id(db, audience, sorted(stars))  # built for these albums only
    return sorted(((r, stars[r["sid"]]) for r in rows), key=lambda p: -p[1])


async def starred_artists(db: Database, audience: Audience) -> list[tuple[sqlite3.Row, float]]:
    stars = {r["artist_did"]: r["created_at"] for r in await db.fetchall(
        "SELECT artist_did, created_at FROM subsonic_starred_artists WHERE did = ?", (audience.did,))}
    if not stars:
        return []
    rows = await sc.artists(db, audience)
    return sorted(((r, stars[r["artist_did"]]) for r in rows if r["artist_did"] in stars), key=lambda p: -p[1])


def marked(entry: dict[str, Any], stars: dict[str, float]) -> dict[str, Any]:
    """An album or artist entry with `starred` when the caller starred it (`stars` by Subsonic id)."""
    at = stars.get(entry["id"])
    return entry if at is None else {**entry, "starred": iso(at)}


async def album_stars(db: Database, did: str) -> dict[str, float]:
    """When the caller starred each album they starred, by Subsonic album id (for `starred` on album entries)."""
    return {r["sid"]: r["created_at"] for r in await db.fetchall(
        "SELECT sid, created_at FROM subsonic_starred_albums WHERE did = ?", (did,))}


def read_album_stars(conn: sqlite3.Connection, did: str | None, sids: Sequence[str]) -> dict[str, float]:
    """`album_stars` of these albums only (what an answer listing them needs), on a reader's thread."""
    if did is None or not sids:
        return {}
    return {r["sid"]: r["created_at"] for r in rows(
        conn, "SELECT sid, created_at FROM subsonic_starred_albums WHERE did = ?"
              " AND sid IN (SELECT value FROM json_each(?))", (did, json.dumps(list(sids))))}


def read_artist_stars(conn: sqlite3.Connection, did: str | None) -> dict[str, float]:
    """`artist_stars` on a reader's thread."""
    if did is None:
        return {}
    return {f"ar-{r['artist_did']}": r["created_at"] for r in rows(
        conn, "SELECT artist_did, created_at FROM subsonic_starred_artists WHERE did = ?", (did,))}


def marked_albums(conn: sqlite3.Connection, did: str | None, albums: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
    """Album rows as `AlbumID3` entries, `starred` on those the caller starred (one read, of these albums' stars)."""
    return marked_entries(conn, did, [sc.album(r) for r in albums])


def marked_entries(conn: sqlite3.Connection, did: str | None, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Album entries, `starred` (on a copy) on those the caller starred: one read, of these albums' stars."""
    stars = read_album_stars(conn, did, [e["id"] for e in entries])
    return [marked(e, stars) for e in entries]


async def artist_stars(db: Database, did: str) -> dict[str, float]:
    return {f"ar-{r['artist_did']}": r["created_at"] for r in await db.fetchall(
        "SELECT artist_did, created_at FROM subsonic_starred_artists WHERE did = ?", (did,))}


# ---- playlist comments ------------------------------------------------------------------------------------------


async def playlist_comments(db: Database, playlist_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(playlist_ids))
    if not ids:
        return {}
    rows = await db.fetchall("SELECT playlist_id, comment FROM subsonic_playlist_comments"
                             " WHERE playlist_id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    return {r["playlist_id"]: r["comment"] for r in rows}


async def set_playlist_comment(db: Database, playlist_id: str, comment: str | None) -> None:
    """Set (or with None, clear) a playlist's comment; the caller checked ownership (update_playlist did)."""
    async with db.write() as conn:
        if comment is None:
            await conn.execute("DELETE FROM subsonic_playlist_comments WHERE playlist_id = ?", (playlist_id,))
        else:
            await conn.execute("INSERT INTO subsonic_playlist_comments(playlist_id, comment) VALUES (?, ?)"
                               " ON CONFLICT(playlist_id) DO UPDATE SET comment = excluded.comment",
                               (playlist_id, comment))


# ---- play queue -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlayQueue:
    songs: list[sqlite3.Row]
    current: int | None  # the current song's track id, if the caller may still see it
    position_ms: int
    changed: float | None
    changed_by: str


async def play_queue(db: Database, audience: Audience) -> PlayQueue:
    """The listener's queue as the web player and their apps share it (plyrd.catalog.queue): its entries (track ids
    or the web player's file ids) as songs in order, the current one and its progress, and who saved it last."""
    assert audience.did is not None
    state, revision, changed = await queue.saved(db, audience.did)
    entries: list[int | str] = state["track_ids"]
    ids = await queue.track_ids(db, entries, audience)
    found = await songs_by_id(db, ids.values(), audience)
    songs = [found[ids[e]] for e in entries if e in ids and ids[e] in found]
    index = state["current_index"]
    current = ids.get(entries[index]) if index < len(entries) else None
    save = await db.fetchone("SELECT revision, client FROM subsonic_queue_saves WHERE did = ?", (audience.did,))
    by = save["client"] if save is not None and save["revision"] == revision else WEB_PLAYER
    return PlayQueue(songs, current if current in found else None, state["progress_ms"], changed,
                     by if revision else "")


async def save_play_queue(db: Database, audience: Audience, track_ids: list[int], current: int | None,
                          position_ms: int, client: str, *, public_url: str) -> None:
    """Replace the listener's queue (what GET /queue/ then shows): these tracks, the current one at `position_ms`.
    The web player's own settings (repeat, auto-advance) stay; the order is the app's, so shuffle is off. No ids
    clears the queue."""
    assert audience.did is not None
    before, _, _ = await queue.saved(db, audience.did)
    state: dict[str, Any] = {**queue.DEFAULT_STATE, "repeat_mode": before["repeat_mode"],
                             "auto_advance": before["auto_advance"]}
    if track_ids:
        current = track_ids[0] if current is None else current
        if current not in track_ids:
            raise SubsonicError(GENERIC, "current must be one of the queue's ids")
        state.update(track_ids=track_ids, current_index=track_ids.index(current), current_track_id=current,
                     progress_ms=position_ms)
    snapshot = await queue.put(db, audience, {"state": state}, None, public_url=public_url)
    async with db.write() as conn:
        await conn.execute("INSERT INTO subsonic_queue_saves(did, revision, client) VALUES (?, ?, ?)"
                           " ON CONFLICT(did) DO UPDATE SET revision = excluded.revision, client = excluded.client",
                           (audience.did, snapshot["revision"], client))


# ---- now playing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listening:
    song: sqlite3.Row
    username: str
    playing: Playing


async def now_playing(db: Database, entries: list[tuple[str, Playing]], audience: Audience) -> list[Listening]:
    """What everyone is playing (the web player's reports and Subsonic apps' scrobble(submission=false)), limited
    to the songs the caller may see."""
    playing = [(did, p) for did, p in entries if p.is_playing]
    found = await songs_by_id(db, (p.track_id for _, p in playing), audience)
    dids = sorted({did for did, _ in playing})
    names = {r["did"]: r["handle"] or r["did"] for r in await db.fetchall(
        "SELECT did, handle FROM users WHERE did IN (SELECT value FROM json_each(?))", (json.dumps(dids),))}
    return [Listening(found[p.track_id], names.get(did, did), p) for did, p in playing if p.track_id in found]
