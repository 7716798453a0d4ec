"""Counted plays, teal.fm scrobbles, artist analytics and the node's totals.

plyr.fm's rule: the player reports a play once per track load, after min(30 s, half the track) of real listening;
the server counts it unless the same listener played the same track within clamp(duration, 30 s, 1 h). Unlike
plyr.fm (a bare counter), every counted play is a `play_events` row, which is what analytics read.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from ..atproto.outbox import queue_put
from ..atproto.records import teal_play_record, teal_status_record
from ..atproto.tids import tid_for_time
from ..db import Database
from ..db.queries import one, run
from ..errors import InvalidInput
from . import preferences
from .social import utc
from .tracks import (
    ANONYMOUS,
    Audience,
    Where,
    artist_name,
    artist_shown,
    is_library,
    on_node,
    playable,
    read_track,
    visible,
)

TEAL_PLAY = "fm.teal.feed.play"
TEAL_STATUS = "fm.teal.actor.status"
STATUS_SECONDS = 600  # a teal.fm status says "listening now" for 10 minutes unless renewed
DEDUP_MIN, DEDUP_MAX = 30.0, 3600.0
REPORT_AFTER_MAX = 30.0
MAX_PERIOD_DAYS = 365
TOP_TRACKS = 10


def dedup_window(duration: float) -> float:
    """How long a listener's repeat plays of one track count once: the track's length, within 30 s .. 1 h."""
    return min(max(duration, DEDUP_MIN), DEDUP_MAX)


def report_after(duration: float) -> float:
    """Seconds of listening after which the player reports a play: 30 s, or half of a shorter track."""
    return min(REPORT_AFTER_MAX, duration / 2)


@dataclass(frozen=True)
class Listener:
    """Who reports a play: a DID (signed in, with whether their grant covers teal.fm) or an anonymous cookie id."""

    key: str
    did: str | None = None
    teal_granted: bool = False

    @classmethod
    def signed_in(cls, did: str, *, teal_granted: bool) -> Listener:
        return cls(did, did, teal_granted)

    @classmethod
    def anonymous(cls, cookie_id: str) -> Listener:
        return cls(f"anon:{cookie_id}")


def _listened_ms(value: Any, duration: float) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput("listened_ms must be a whole number of milliseconds, 0 or more")
    # A small allowance for rounding and timer jitter in the player.
    if value + 250 < report_after(duration) * 1000:
        raise InvalidInput(f"report a play after {report_after(duration):g} s of listening, not before")
    return value


def teal_play(track: sqlite3.Row, played_at: float, public_url: str) -> dict[str, Any]:
    """The fm.teal.feed.play record of one listening (shapes in plyrfm-inventory 2.10). A library track's has no
    origin: its page is for the node's listeners only (the listener chose to scrobble what they hear)."""
    return teal_play_record(
        track_name=track["title"],
        artists=[artist_name(track)],
        played_time=utc(played_at),
        music_service_uri=public_url,
        duration=track["duration"] or None,
        release_name=track["album"],
        origin_uri=None if is_library(track) else f"{public_url}/track/{track['id']}",
    )


async def scrobble(conn: aiosqlite.Connection, did: str, track: sqlite3.Row, played_at: float, public_url: str, *,
                   now: float, play: bool) -> None:
    """`queue_scrobble` inside the caller's `db.write()` transaction (one hop)."""
    await run(conn, lambda c: queue_scrobble(c, did, track, played_at, public_url, now=now, play=play))


def queue_scrobble(conn: sqlite3.Connection, did: str, track: sqlite3.Row, played_at: float, public_url: str, *,
                   now: float, play: bool) -> None:
    """Queue teal.fm records in the listener's PDS: the play itself (key derived from playedTime, so a retried
    write lands on the same record) and/or the `self` status saying what plays now, for 10 minutes."""
    record = teal_play(track, played_at, public_url)
    if play:
        played = datetime.fromisoformat(record["playedTime"].replace("Z", "+00:00"))
        queue_put(conn, did=did, collection=TEAL_PLAY, rkey=tid_for_time(played), record=record)
    queue_put(conn, did=did, collection=TEAL_STATUS, rkey="self",
              record=teal_status_record(item=record, time=utc(now), expiry=utc(now + STATUS_SECONDS)))


async def count_play(db: Database, *, track_id: int, listener: Listener, audience: Audience,
                     listened_ms: Any = None, public_url: str, now: float | None = None) -> dict[str, Any]:
    """POST /tracks/{id}/play: count the play of a track `audience` (the listener) may see, unless it repeats one
    inside the dedup window. One function on the writer's thread: every play a player reports is a write."""
    now = time.time() if now is None else now

    def count(conn: sqlite3.Connection) -> dict[str, Any]:
        track = read_track(conn, track_id, audience)
        duration = float(track["duration"] or 0)
        listened = _listened_ms(listened_ms, duration)
        since = now - dedup_window(duration)
        if one(conn, "SELECT 1 FROM play_events WHERE listener = ? AND track_id = ? AND played_at > ? LIMIT 1",
               (listener.key, track_id, since)):
            return {"play_count": track["play_count"], "counted": False}
        conn.execute("INSERT INTO play_events(track_id, listener, played_at, listened_ms) VALUES (?, ?, ?, ?)",
                     (track_id, listener.key, now, listened))
        conn.execute("UPDATE tracks SET play_count = play_count + 1 WHERE id = ?", (track_id,))
        if listener.did and listener.teal_granted and preferences.read(conn, listener.did)["enable_teal_scrobbling"]:
            # playedTime is when the listening started, as far as the player told us.
            started = now - (listened / 1000 if listened is not None else 0)
            queue_scrobble(conn, listener.did, track, started, public_url, now=now, play=True)
        return {"play_count": track["play_count"] + 1, "counted": True}

    return await db.write_fn(count)


async def artist_analytics(db: Database, did: str, *, days: Any = 30, now: float | None = None) -> dict[str, Any]:
    """GET /artists/me/analytics: plyr.fm's totals and top items, plus plays per day and top tracks over a period
    read from the play events."""
    now = time.time() if now is None else now
    if isinstance(days, str) and days.isdigit():
        days = int(days)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_PERIOD_DAYS:
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_PERIOD_DAYS}")
    totals = await _totals(db, Where.of("t.artist_did = ?", did))
    # The period is whole UTC days: today and the days before it.
    today = utc(now).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), UTC).timestamp()
    per_day = {r["day"]: r["n"] for r in await db.fetchall(
        "SELECT date(e.played_at, 'unixepoch') AS day, count(*) AS n FROM play_events e"
        " JOIN tracks t ON t.id = e.track_id WHERE t.artist_did = ? AND e.played_at >= ? GROUP BY day",
        (did, since))}
    top_tracks = await db.fetchall(
        "SELECT t.id, t.title, count(*) AS plays, count(DISTINCT e.listener) AS listeners FROM play_events e"
        " JOIN tracks t ON t.id = e.track_id WHERE t.artist_did = ? AND e.played_at >= ?"
        " GROUP BY t.id ORDER BY plays DESC, t.id LIMIT ?", (did, since, TOP_TRACKS))
    listeners = await db.fetchone(
        "SELECT count(DISTINCT e.listener) AS n, count(*) AS plays FROM play_events e"
        " JOIN tracks t ON t.id = e.track_id WHERE t.artist_did = ? AND e.played_at >= ?", (did, since))
    dates = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    return {
        **totals,
        "period": {"days": days, "start": dates[0], "end": dates[-1]},
        "period_plays": listeners["plays"] if listeners else 0,
        "unique_listeners": listeners["n"] if listeners else 0,
        "plays_per_day": [{"date": d, "plays": per_day.get(d, 0)} for d in dates],
        "top_tracks": [{"id": r["id"], "title": r["title"], "plays": r["plays"], "listeners": r["listeners"]}
                       for r in top_tracks],
    }


RANKED_ARTISTS = 10


async def public_analytics(db: Database, did: str, audience: Audience) -> dict[str, Any]:
    """GET /artists/{did}/analytics: plyr.fm's public totals for any artist, over the tracks `audience` may see
    (zeros for an artist the node does not know), and `rank`: their place (1-10) among the node's ten most played
    artists, null outside them."""
    artist = artist_shown("artist_did")  # the node's library is no artist: no totals, no rank
    totals = await _totals(db, Where.of("t.artist_did = ?", did) & visible(audience) & artist_shown("t.artist_did"),
                           top_needs_plays=False)
    ranked = await db.fetchall(
        f"SELECT artist_did FROM tracks WHERE {artist.sql} GROUP BY artist_did HAVING sum(play_count) > 0"
        " ORDER BY sum(play_count) DESC, artist_did LIMIT ?", (*artist.params, RANKED_ARTISTS))
    rank = next((i + 1 for i, r in enumerate(ranked) if r["artist_did"] == did), None)
    return {**totals, "rank": rank}


async def _totals(db: Database, where: Where, *, top_needs_plays: bool = True) -> dict[str, Any]:
    """plyr.fm's analytics totals over the tracks `where` picks: plays, items, duration, the most played and the
    most liked track. The artist's own view names a top item only once something was played."""
    totals = await db.fetchone(
        "SELECT coalesce(sum(t.play_count), 0) AS plays, count(*) AS items,"
        f" coalesce(sum(t.duration), 0) AS seconds FROM tracks t WHERE {where.sql}", where.params)
    played = " AND t.play_count > 0" if top_needs_plays else ""
    top = await db.fetchone(f"SELECT t.id, t.title, t.play_count FROM tracks t WHERE {where.sql}{played}"
                            " ORDER BY t.play_count DESC, t.id LIMIT 1", where.params)
    top_liked = await db.fetchone(
        f"SELECT t.id, t.title, count(*) AS n FROM likes l JOIN tracks t ON t.id = l.track_id WHERE {where.sql}"
        " GROUP BY t.id ORDER BY n DESC, t.id LIMIT 1", where.params)
    return {
        "total_plays": totals["plays"] if totals else 0,
        "total_items": totals["items"] if totals else 0,
        "total_duration_seconds": int(totals["seconds"]) if totals else 0,
        "top_item": {"id": top["id"], "title": top["title"], "play_count": top["play_count"]} if top else None,
        # plyr.fm reuses play_count for the like count here; clients read that field.
        "top_liked": {"id": top_liked["id"], "title": top_liked["title"], "play_count": top_liked["n"]}
        if top_liked else None,
    }


async def node_stats(db: Database) -> dict[str, int]:
    """GET /stats: the node's totals, as plyr.fm's platform stats: its own playable tracks anyone may open."""
    where = visible(ANONYMOUS) & playable() & on_node()
    row = await db.fetchone(
        "SELECT coalesce(sum(t.play_count), 0) AS plays, count(*) AS tracks, count(DISTINCT t.artist_did) AS artists,"
        f" coalesce(sum(t.duration), 0) AS seconds FROM tracks t WHERE {where.sql}", where.params)
    assert row is not None
    return {
        "total_plays": int(row["plays"]),
        "total_tracks": int(row["tracks"]),
        "total_artists": int(row["artists"]),
        "total_duration_seconds": int(row["seconds"]),
    }
