"""What each signed-in listener is playing now: memory only (as plyr.fm's TTL cache), gone after 5 minutes without a
report. The public read feeds scrobblers such as teal.fm's Piper.

When the listener scrobbles to teal.fm, a report also renews their `fm.teal.actor.status` record (key `self`,
10-minute expiry) through the outbox: on a new track at once, otherwise at most every 5 minutes, so the player's
report every 10 seconds does not become a PDS write every 10 seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..db import Database
from ..errors import InvalidInput, NotFound
from . import preferences
from .plays import scrobble
from .tracks import Audience, artist_name, open_track

TTL_SECONDS = 300.0
MAX_ENTRIES = 10_000
STATUS_RENEW_SECONDS = 300.0


@dataclass(frozen=True)
class Playing:
    track_id: int
    progress_ms: int
    is_playing: bool
    duration_ms: int
    track_name: str
    artist_name: str
    album_name: str | None
    file_id: str
    image_url: str | None
    reported_at: float
    status_track_id: int | None = None  # the track the last teal.fm status named, and when it was written
    status_at: float = 0.0
    player: str | None = None  # the Subsonic client that reported it (its `c`); None for the web player


class NowPlaying:
    """A bounded map DID -> Playing whose entries expire TTL_SECONDS after their last report."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Playing] = OrderedDict()

    def get(self, did: str, now: float | None = None) -> Playing | None:
        now = time.time() if now is None else now
        entry = self._entries.get(did)
        if entry is not None and now - entry.reported_at > self.ttl:
            del self._entries[did]
            return None
        return entry

    def put(self, did: str, entry: Playing) -> None:
        self._entries.pop(did, None)
        self._entries[did] = entry  # most recent last, so the oldest is evicted first
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self, did: str) -> None:
        self._entries.pop(did, None)

    def entries(self, now: float | None = None) -> list[tuple[str, Playing]]:
        """Every listener's live entry (Subsonic's getNowPlaying), most recently reported first."""
        now = time.time() if now is None else now
        return [(did, e) for did, e in reversed(self._entries.items()) if now - e.reported_at <= self.ttl]


def _int(name: str, value: Any, *, required: bool) -> int | None:
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{name} must be a whole number, 0 or more")
    return value


async def report(db: Database, store: NowPlaying, *, did: str, body: Any, teal_granted: bool, public_url: str,
                 audience: Audience, now: float | None = None, player: str | None = None) -> None:
    """POST /now-playing/: `track_id` and `progress_ms` (and `is_playing`, default true). The other fields
    plyr.fm's player sends (names, file id, duration) are accepted and ignored: the track row is the truth.
    Subsonic's scrobble(submission=false) reports through here too, naming its client as `player`."""
    now = time.time() if now is None else now
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object with track_id and progress_ms")
    track_id = _int("track_id", body.get("track_id"), required=True)
    progress_ms = _int("progress_ms", body.get("progress_ms", 0), required=True)
    is_playing = body.get("is_playing", True)
    if not isinstance(is_playing, bool):
        raise InvalidInput("is_playing must be true or false")
    assert track_id is not None and progress_ms is not None
    # A read: the player reports every 10 s, and most reports write nothing.
    track = await open_track(db, track_id, audience)  # `audience`: the listener; what they may not see is 404
    previous = store.get(did, now)
    entry = Playing(
        track_id=track_id,
        progress_ms=min(progress_ms, round(track["duration"] * 1000)),
        is_playing=is_playing,
        duration_ms=round(track["duration"] * 1000),
        track_name=track["title"],
        artist_name=artist_name(track),
        album_name=track["album"],
        file_id=track["web_sha"] or track["original_sha"],
        image_url=f"{public_url}/images/{track['display_sha']}" if track["display_sha"] else None,
        reported_at=now,
        status_track_id=previous.status_track_id if previous else None,
        status_at=previous.status_at if previous else 0.0,
        player=player,
    )
    due = entry.status_track_id != track_id or now - entry.status_at >= STATUS_RENEW_SECONDS
    if is_playing and teal_granted and due:
        async with db.read() as conn:
            wanted = (await preferences.load(conn, did))["enable_teal_scrobbling"]
        if wanted:
            async with db.write() as conn:
                await scrobble(conn, did, track, now - entry.progress_ms / 1000, public_url, now=now, play=False)
            entry = replace(entry, status_track_id=track_id, status_at=now)
    store.put(did, entry)


async def shown(db: Database, store: NowPlaying, did: str, audience: Audience,
                now: float | None = None) -> Playing | None:
    """What `did` is playing as `audience` sees it: None when nothing plays, or when it is a track they may not see
    (a library track, to anyone outside the library's listeners)."""
    entry = store.get(did, now)
    if entry is None or not entry.is_playing:
        return None
    try:
        await open_track(db, entry.track_id, audience)
    except NotFound:
        return None
    return entry


def public_json(entry: Playing, public_url: str, now: float | None = None) -> dict[str, Any]:
    """plyr.fm's NowPlayingResponse (the fields Piper reads); progress runs on since the last report."""
    now = time.time() if now is None else now
    progress = entry.progress_ms
    if entry.is_playing:
        progress = min(entry.duration_ms, progress + round((now - entry.reported_at) * 1000))
    return {
        "track_name": entry.track_name,
        "artist_name": entry.artist_name,
        "album_name": entry.album_name,
        "duration_ms": entry.duration_ms,
        "progress_ms": progress,
        "is_playing": entry.is_playing,
        "track_id": entry.track_id,
        "file_id": entry.file_id,
        "track_url": f"{public_url}/track/{entry.track_id}",
        "image_url": entry.image_url,
        "service_base_url": urlsplit(public_url).netloc,
    }
