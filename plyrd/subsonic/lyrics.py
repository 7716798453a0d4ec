"""A song's lyrics as Subsonic answers them: the track's `lyrics` (from the file's lyrics tag at upload, editable by
the artist), plain or LRC-timed.

`getLyrics` finds a song by artist and title among the songs discovery lists for the caller (it is a search by
name); `getLyricsBySongId` (OpenSubsonic songLyrics) answers a song the caller may open, by id, as structured
lyrics: synced lines with their start in milliseconds when the lyrics are LRC.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..catalog.tracks import Audience, Where, listed
from ..db import Database
from ..media.lyrics import is_lrc, lrc_lines
from .catalog import get_song, song_rows
from .catalog import song as song_entry


def plain(text: str) -> str:
    """Lyrics as plain text: LRC times and metadata lines dropped."""
    if not is_lrc(text):
        return text
    return "\n".join(line for _, line in lrc_lines(text))


async def by_name(db: Database, artist: str | None, title: str | None, audience: Audience) -> dict[str, Any]:
    """getLyrics: the lyrics of the best listed match for the title (case-insensitive) and, when given, the artist
    (its tagged name, display name or handle); most played first. `value` is empty when no song has lyrics."""
    artist, title = (artist or "").strip(), (title or "").strip()
    if not title and not artist:
        return {"value": ""}
    where = listed(audience) & Where.of("t.lyrics IS NOT NULL")
    if title:
        where &= Where.of("lower(t.title) = lower(?)", title)
    if artist:
        where &= Where.of("lower(?) IN (lower(coalesce(json_extract(t.file_tags, '$.artist'), '')),"
                          " lower(coalesce(u.display_name, '')), lower(coalesce(u.handle, '')))", artist)
    rows = await song_rows(db, where, "ORDER BY t.play_count DESC, t.created_at DESC, t.id DESC LIMIT 1")
    if not rows:
        return {"artist": artist or None, "title": title or None, "value": ""}
    row = rows[0]
    entry = song_entry(row)
    return {"artist": entry["artist"], "title": row["title"], "value": plain(row["lyrics"])}


async def by_song_id(db: Database, raw_id: str, audience: Audience) -> dict[str, Any]:
    """getLyricsBySongId: the song's lyrics as one `structuredLyrics` (none when it has no lyrics)."""
    row = await get_song(db, raw_id, audience)
    return {"structuredLyrics": [structured(row)] if row["lyrics"] else []}


def structured(row: sqlite3.Row) -> dict[str, Any]:
    text: str = row["lyrics"]
    synced = is_lrc(text)
    if synced:
        lines = [{"start": start, "value": line} for start, line in lrc_lines(text)]
    else:
        lines = [{"value": line} for line in text.split("\n")]
    artist = song_entry(row)["displayArtist"]
    return {"lang": "und", "synced": synced, "displayArtist": artist,
            "displayTitle": row["title"], "line": lines}
