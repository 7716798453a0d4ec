"""Subsonic's listening methods: scrobble and now playing, star and unstar, bookmarks, the play queue."""

from __future__ import annotations

import zlib
from typing import Any

from quart import current_app

from ...catalog import likes, now_playing, plays
from ...catalog.now_playing import NowPlaying
from ...errors import Conflict, NotFound
from ...subsonic import catalog as sc
from ...subsonic import state
from ...subsonic.envelope import MISSING_PARAMETER, SubsonicError
from ..social import NOW_PLAYING_KEY
from .call import Call, method


def _now_playing_store() -> NowPlaying:
    # The web player's now-playing store (plyrd.web.social attaches it to the app): one for both.
    return current_app.extensions[NOW_PLAYING_KEY]


@method("scrobble")
async def scrobble(call: Call) -> dict[str, Any]:
    """submission=false is "now playing": the song goes into the same store as the web player's reports (and renews
    the teal.fm status by the same rules). Otherwise each id counts a play by the same rule (and teal.fm scrobble)
    as POST /tracks/{id}/play."""
    ids = call.params.getlist("id")
    if not ids:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: id")
    n = call.node
    if (call.params.get("submission") or "true").lower() == "false":
        row = await sc.get_song(n.db, ids[-1], call.audience)  # the last named is the one playing
        await now_playing.report(n.db, _now_playing_store(), did=call.did, body={"track_id": row["id"]},
                                 teal_granted=call.session.teal_granted, public_url=n.config.public_url,
                                 audience=call.audience, player=state.client_of(call.params.get("c")))
        return {}
    # Only songs the caller may see count (error 70 otherwise, before any play is counted): a known id of an
    # unlisted track plays, one of a track hidden from the caller does not.
    track_ids = await state.require_songs(n.db, ids, call.audience)
    listener = plays.Listener.signed_in(call.did, teal_granted=call.session.teal_granted)
    for track_id in track_ids:
        await plays.count_play(n.db, track_id=track_id, listener=listener, audience=call.audience,
                               public_url=n.config.public_url)
    return {}


@method("getNowPlaying")
async def get_now_playing(call: Call) -> dict[str, Any]:
    """Everyone's now playing that the caller may see: songs with who, since when and on which player."""
    db = call.node.db
    found = await state.now_playing(db, _now_playing_store().entries(), call.audience)
    liked = await sc.liked_ids(db, call.did)
    entries = []
    for e in found:
        player = e.playing.player or state.WEB_PLAYER
        entries.append({**sc.song(e.song, liked), "username": e.username,
                        "minutesAgo": state.minutes_ago(e.playing.reported_at),
                        "playerId": zlib.crc32(player.encode()) & 0x7FFFFFFF, "playerName": player})
    return {"nowPlaying": {"entry": entries}}


# ---- star -------------------------------------------------------------------------------------------------------


async def _targets(call: Call) -> tuple[list[int], list[str], list[str]]:
    """The songs, albums and artists named (`id` may name any of them, by prefix), each checked to be one the
    caller may see: error 70 otherwise, before anything is changed."""
    db, audience = call.node.db, call.audience
    songs: list[str] = []
    albums = call.params.getlist("albumId")
    artists = call.params.getlist("artistId")
    for raw in call.params.getlist("id"):
        (albums if raw.startswith("al-") else artists if raw.startswith("ar-") else songs).append(raw)
    track_ids = await state.require_songs(db, songs, audience)
    for raw in albums:
        await sc.get_album(db, raw, audience)
    artist_dids = [sc.artist_did_of(raw) for raw in artists]
    for raw in artists:
        await sc.get_artist(db, raw, audience)
    return track_ids, list(dict.fromkeys(albums)), list(dict.fromkeys(artist_dids))


@method("star")
async def star(call: Call) -> dict[str, Any]:
    """A song's star is a like (an fm.plyr.like record in the caller's PDS); albums and artists are starred on this
    node only (plyr.fm has no record for them). Starring again is a no-op."""
    track_ids, albums, artists = await _targets(call)
    for track_id in track_ids:
        try:
            await likes.like(call.node.db, did=call.did, track_id=track_id, audience=call.audience)
        except Conflict:
            pass
    await state.star_albums(call.node.db, call.did, albums)
    await state.star_artists(call.node.db, call.did, artists)
    return {}


@method("unstar")
async def unstar(call: Call) -> dict[str, Any]:
    db = call.node.db
    track_ids, albums, artists = await _targets(call)  # an unknown id is error 70; an unstarred one is a no-op
    for track_id in track_ids:
        try:
            await likes.unlike(db, did=call.did, track_id=track_id, audience=call.audience)
        except NotFound:
            pass
    await state.unstar_albums(db, call.did, albums)
    await state.unstar_artists(db, call.did, artists)
    return {}


# ---- bookmarks --------------------------------------------------------------------------------------------------


@method("getBookmarks")
async def get_bookmarks(call: Call) -> dict[str, Any]:
    db = call.node.db
    liked = await sc.liked_ids(db, call.did)
    username = call.session.handle or call.did
    return {"bookmarks": {"bookmark": [
        {"position": mark["position_ms"], "username": username, "comment": mark["comment"],
         "created": state.iso(mark["created_at"]), "changed": state.iso(mark["changed_at"]),
         "entry": sc.song(song, liked)}
        for mark, song in await state.bookmarks(db, call.audience)]}}


@method("createBookmark")
async def create_bookmark(call: Call) -> dict[str, Any]:
    (track_id,) = await state.require_songs(call.node.db, [call.required("id")], call.audience)
    position = state.whole("position", call.params.get("position"))
    comment = state.comment_of(call.params.get("comment"))
    await state.save_bookmark(call.node.db, call.did, track_id, position, comment)
    return {}


@method("deleteBookmark")
async def delete_bookmark(call: Call) -> dict[str, Any]:
    if not await state.delete_bookmark(call.node.db, call.did, sc.track_id_of(call.required("id"))):
        raise sc.not_found("bookmark")
    return {}


# ---- play queue -------------------------------------------------------------------------------------------------


@method("getPlayQueue")
async def get_play_queue(call: Call) -> dict[str, Any]:
    """The queue the web player and the listener's apps share (GET /queue/)."""
    db = call.node.db
    saved = await state.play_queue(db, call.audience)
    liked = await sc.liked_ids(db, call.did)
    return {"playQueue": {
        "current": f"tr-{saved.current}" if saved.current is not None else None,
        "position": saved.position_ms if saved.current is not None else None,
        "username": call.session.handle or call.did,
        "changed": state.iso(saved.changed),
        "changedBy": saved.changed_by,
        "entry": [sc.song(s, liked) for s in saved.songs],
    }}


@method("savePlayQueue")
async def save_play_queue(call: Call) -> dict[str, Any]:
    """Replace the shared queue: what the web player's GET /queue/ then shows. No id clears it."""
    db = call.node.db
    track_ids = await state.require_songs(db, call.params.getlist("id"), call.audience)
    raw_current = call.params.get("current")
    current = sc.track_id_of(raw_current) if raw_current else None
    position = state.whole("position", call.params.get("position"), default=0)
    await state.save_play_queue(db, call.audience, track_ids, current, position, state.client_of(call.params.get("c")),
                                public_url=call.node.config.public_url)
    return {}
