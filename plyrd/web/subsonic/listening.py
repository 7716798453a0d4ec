"""Subsonic's listening methods: now playing, scrobble, star and unstar."""

from __future__ import annotations

from typing import Any

from ...catalog import likes, plays
from ...errors import Conflict, NotFound
from ...subsonic import catalog as sc
from ...subsonic.envelope import MISSING_PARAMETER, SubsonicError
from .call import Call, method


@method("scrobble")
async def scrobble(call: Call) -> dict[str, Any]:
    """submission=false is "now playing": ignored, as plyr.fm does. Otherwise each id counts a play by the same
    rule (and teal.fm scrobble) as POST /tracks/{id}/play."""
    ids = call.params.getlist("id")
    if not ids:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: id")
    if (call.params.get("submission") or "true").lower() == "false":
        return {}
    n = call.node
    listener = plays.Listener.signed_in(call.did, teal_granted=call.session.teal_granted)
    for raw in ids:
        await plays.count_play(n.db, track_id=sc.track_id_of(raw), listener=listener, public_url=n.config.public_url)
    return {}


def _song_ids(call: Call) -> list[int]:
    # plyrd likes tracks only; albumId/artistId stars have nothing to map to and are ignored.
    return [sc.track_id_of(raw) for raw in call.params.getlist("id")]


@method("star")
async def star(call: Call) -> dict[str, Any]:
    """A star is a like (an fm.plyr.like record in the caller's PDS); starring a liked track again is a no-op."""
    for track_id in _song_ids(call):
        try:
            await likes.like(call.node.db, did=call.did, track_id=track_id)
        except Conflict:
            pass
    return {}


@method("unstar")
async def unstar(call: Call) -> dict[str, Any]:
    db = call.node.db
    for track_id in _song_ids(call):
        await sc.get_song(db, f"tr-{track_id}", call.audience)  # an unknown song is error 70; an unliked one is a no-op
        try:
            await likes.unlike(db, did=call.did, track_id=track_id)
        except NotFound:
            pass
    return {}


@method("getNowPlaying")
async def get_now_playing(call: Call) -> dict[str, Any]:
    return {"nowPlaying": {}}
