"""Subsonic's lyrics: getLyrics (by artist and title) and OpenSubsonic's getLyricsBySongId (songLyrics)."""

from __future__ import annotations

from typing import Any

from ...subsonic import lyrics
from .call import Call, method


@method("getLyrics")
async def get_lyrics(call: Call) -> dict[str, Any]:
    params = call.one()
    return {"lyrics": await lyrics.by_name(call.node.db, params.get("artist"), params.get("title"), call.audience)}


@method("getLyricsBySongId")
async def get_lyrics_by_song_id(call: Call) -> dict[str, Any]:
    return {"lyricsList": await lyrics.by_song_id(call.node.db, call.required("id"), call.audience)}
