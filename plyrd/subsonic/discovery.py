"""Subsonic's discovery reads: songs by genre, an artist's top songs, similar songs, artist and album info, and the
deprecated `search`.

These are discovery lists, so they show what the feeds and search3 show: tracks listed for the caller (the read
model's `listed`), less those carrying one of the caller's hidden tags (`hidden_tags`, `without_tags`). A tag the
caller asks for by name is not hidden from that answer, as the tag page and GET /tracks/{id}/similar do: the genre
of getSongsByGenre, and a seed song's own tags in getSimilarSongs (whoever plays that song asked for its tags; an
album or artist seed asks for no tag: one "ai" track among an artist's songs does not unhide "ai"); the caller's
other hidden tags still are.

Similarity is shared tags: a song is like the seed by how many of the seed's tags it carries, then by how often it
is played; songs by other artists than the seed's come first (the point of "similar" is leaving the artist), and
ties go by track id so the answer never shuffles. An artist is like another by how many tags their songs share.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog.tracks import TRACK_ALBUM_SELECT, Audience, Where, hidden_tags, listed, tagged, without_tags
from ..db import Database
from ..library import LIBRARY_DID
from . import catalog as sc
from . import folders
from .envelope import MISSING_PARAMETER, NOT_FOUND, SubsonicError, Text

MAX_OFFSET = 10**9
_ANY = "(SELECT value FROM json_each(?))"  # a JSON array parameter as a set SQL can test with IN


def _required(params: Mapping[str, str], name: str) -> str:
    value = (params.get(name) or "").strip()
    if not value:
        raise SubsonicError(MISSING_PARAMETER, f"Required parameter is missing: {name}")
    return value


def _count(params: Mapping[str, str], default: int) -> int:
    return sc.bounded(params.get("count"), default=default, name="count")


def _offset(params: Mapping[str, str]) -> int:
    return sc.bounded(params.get("offset"), default=0, maximum=MAX_OFFSET, name="offset")


async def discovery(db: Database, audience: Audience, *, asked: Iterable[str] = ()) -> Where:
    """The tracks discovery shows the caller: listed for them, less their hidden tags but those they `asked` for."""
    named = set(asked)
    return listed(audience) & without_tags([t for t in await hidden_tags(db, audience) if t not in named])


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# ---- lists ------------------------------------------------------------------------------------------------------


async def songs_by_genre(db: Database, params: Mapping[str, str], audience: Audience) -> list[sqlite3.Row]:
    """getSongsByGenre: the genre's songs (a genre is a tag, as getGenres lists them), newest first."""
    genre = _required(params, "genre").lower()
    count, offset = _count(params, 10), _offset(params)
    where = await discovery(db, audience, asked=[genre]) & tagged(genre)
    where &= (await folders.scope(db, audience, params.get("musicFolderId"))).where
    return await sc.song_rows(db, where, "ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?", [count, offset])


async def artist_dids(db: Database, name: str) -> list[str]:
    """The artists a client means by a name: as Subsonic shows them (display name, any case), their handle (with or
    without @), or their DID; and the music folder's artist of that name (`ar-lib~...`, matched by its songs). Two
    people may share a display name; both are meant. Never the library's own account."""
    rows = await db.fetchall("SELECT did FROM users WHERE (display_name = ? COLLATE NOCASE OR handle = ? OR did = ?)"
                             " AND did != ? ORDER BY did", (name, name.lower().lstrip("@"), name, LIBRARY_DID))
    return [r["did"] for r in rows] + [sc.library_artist_key(name)]


async def top_songs(db: Database, params: Mapping[str, str], audience: Audience) -> list[sqlite3.Row]:
    """getTopSongs: the artist's songs by play count (newest first among equals). `id` (an artist id, OpenSubsonic's
    topSongsByArtistId) wins over `artist` (a name); an unknown name is an empty list, as Navidrome answers."""
    count = _count(params, 50)
    if raw_id := (params.get("id") or "").strip():
        dids = [sc.artist_did_of(raw_id)]
    else:
        dids = await artist_dids(db, _required(params, "artist"))
    if not dids or count == 0:
        return []
    where = await discovery(db, audience) & sc.artist_tracks(dids)
    return await sc.song_rows(db, where, "ORDER BY t.play_count DESC, t.created_at DESC, t.id DESC LIMIT ?", [count])


# ---- similar songs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """What getSimilarSongs starts from: its tracks, their artists, their tags, and the tags it asks for by name
    (a song's own; none for an album or artist)."""

    track_ids: list[int]
    artist_dids: list[str]
    tags: list[str]
    asked: list[str]


def _seed_of(rows: Iterable[sqlite3.Row], *, song: bool = False) -> Seed:
    rows = list(rows)
    tags = sorted({tag for r in rows for tag in json.loads(r["tags"] or "[]")})
    return Seed(sorted({r["id"] for r in rows}), sorted({sc.song_artist_key(r) for r in rows}), tags,
                tags if song else [])


async def _artist_songs(db: Database, raw_id: str, audience: Audience, *, limit: int = -1) -> list[sqlite3.Row]:
    """An artist's songs (id, artist_did, tags) for the caller; 70 when they have none (an unknown artist). Cheaper
    than catalog.get_artist, which builds their albums."""
    where = sc.artist_tracks([sc.artist_did_of(raw_id)]) & sc.songs(audience)
    rows = await db.fetchall(f"SELECT t.id, t.artist_did, t.source, t.file_tags, t.tags FROM tracks t"
                             f" WHERE {where.sql} LIMIT ?",
                             [*where.params, limit])
    if not rows:
        raise sc.not_found("artist")
    return rows


async def seed(db: Database, raw_id: str, audience: Audience) -> Seed:
    """A song, an album (its songs) or an artist (their songs), as the caller may open them; 70 when they may not."""
    if raw_id.startswith("ar-"):
        return _seed_of(await _artist_songs(db, raw_id, audience))
    if raw_id.startswith("al-"):
        _, songs = await sc.get_album(db, raw_id, audience)
        return _seed_of(songs)
    return _seed_of([await sc.get_song(db, raw_id, audience)], song=True)


async def similar_songs(db: Database, params: Mapping[str, str], audience: Audience) -> list[sqlite3.Row]:
    """getSimilarSongs(2): songs sharing the seed's tags (see the module docstring for the order), never the seed's
    own songs; an empty list when nothing shares a tag."""
    found = await seed(db, _required(params, "id"), audience)
    count = _count(params, 50)
    if not found.tags or count == 0:
        return []
    where = await discovery(db, audience, asked=found.asked) & Where.of(f"t.id NOT IN {_ANY}",
                                                                          json.dumps(found.track_ids))
    # Ranked on bare rows, then shaped: counting shared tags in one grouped join rather than per candidate row in
    # ORDER BY took an 871-song artist's seed on 10,000 tracks (bench/catalog.py's catalog) from 800 ms to 80 ms.
    ranked = await db.fetchall(f"""
        SELECT t.id FROM (SELECT s.track_id, count(*) AS shared FROM track_tags s WHERE s.tag IN {_ANY}
                          GROUP BY s.track_id) sim
        JOIN tracks t ON t.id = sim.track_id WHERE {where.sql}
        ORDER BY {sc.SONG_ARTIST_KEY} IN {_ANY}, sim.shared DESC, t.play_count DESC, t.id LIMIT ?""",
                               [json.dumps(found.tags), *where.params, json.dumps(found.artist_dids), count])
    ids = [r["id"] for r in ranked]
    rows = {r["id"]: r for r in await sc.song_rows(db, Where.of(f"t.id IN {_ANY}", json.dumps(ids)))}
    return [rows[i] for i in ids if i in rows]


# ---- artist and album info --------------------------------------------------------------------------------------


async def artist_of(db: Database, raw_id: str, audience: Audience) -> str:
    """The artist an artist, album or song id names (getArtistInfo takes any of the three); 70 when the caller may
    not open it."""
    if raw_id.startswith("ar-"):
        await _artist_songs(db, raw_id, audience, limit=1)
        return sc.artist_did_of(raw_id)
    if raw_id.startswith("al-"):
        row, _ = await sc.get_album(db, raw_id, audience)
        return str(row["artist_did"])
    return sc.song_artist_key(await sc.get_song(db, raw_id, audience))


async def similar_artists(db: Database, did: str, count: int, audience: Audience) -> list[sqlite3.Row]:
    """Other artists by how many tags their songs share with this artist's (then how many of their songs do, then
    DID), as `catalog.artists` rows (what `catalog.artist` shapes); only songs discovery shows the caller count."""
    if count == 0:
        return []
    shown = await discovery(db, audience)
    own = shown & sc.artist_tracks([did])
    tags = [r["tag"] for r in await db.fetchall(
        f"SELECT DISTINCT g.tag FROM track_tags g JOIN tracks t ON t.id = g.track_id WHERE {own.sql}", own.params)]
    if not tags:
        return []
    others = shown & Where.of("t.artist_did != ?", did) & Where.of(f"g.tag IN {_ANY}", json.dumps(tags))
    ranked = await db.fetchall(f"""
        SELECT t.artist_did FROM tracks t JOIN track_tags g ON g.track_id = t.id WHERE {others.sql}
        GROUP BY t.artist_did ORDER BY count(DISTINCT g.tag) DESC, count(DISTINCT t.id) DESC, t.artist_did
        LIMIT ?""", [*others.params, count])
    by_did = {r["artist_did"]: r for r in await sc.artists(db, audience)}
    return [by_did[r["artist_did"]] for r in ranked if r["artist_did"] in by_did]


@dataclass(frozen=True)
class ArtistInfo:
    profile: sqlite3.Row  # users: did, handle, display_name, bio, avatar_url
    similar: list[sqlite3.Row]


async def artist_info(db: Database, params: Mapping[str, str], audience: Audience) -> ArtistInfo:
    """getArtistInfo(2): the artist's profile and the artists most like them. Every artist plyrd names is in its
    library, so `includeNotPresent` changes nothing."""
    did = await artist_of(db, _required(params, "id"), audience)
    if sc.is_library_key(did):  # an artist of the music folder has no profile: their name, no bio or picture
        entry, _ = await sc.get_artist(db, f"ar-{did}", audience)
        profile = await db.fetchone("SELECT ? AS did, NULL AS handle, ? AS display_name, NULL AS bio,"
                                    " NULL AS avatar_url", (did, entry["name"]))
    else:
        profile = await db.fetchone("SELECT did, handle, display_name, bio, avatar_url FROM users WHERE did = ?",
                                    (did,))
    if profile is None:
        raise sc.not_found("artist")
    return ArtistInfo(profile, await similar_artists(db, did, _count(params, 20), audience))


def _text(value: str | None) -> Text | None:
    return None if value is None else Text(value)


def images(small: str | None, medium: str | None, large: str | None) -> dict[str, str | None]:
    # Elements in XML, as Subsonic servers write them and clients read them (<smallImageUrl>...</smallImageUrl>).
    return {"smallImageUrl": _text(small), "mediumImageUrl": _text(medium), "largeImageUrl": _text(large)}


FOLDER_ARTIST = ("id", "name", "artistImageUrl", "starred", "userRating", "averageRating")  # `Artist`'s fields


def folder_artist(entry: dict[str, Any]) -> dict[str, Any]:
    """A folder-style `Artist` (search2, getArtistInfo) from an `ArtistID3` entry (catalog.artist)."""
    return {k: entry[k] for k in FOLDER_ARTIST if k in entry}


def artist_info_entry(info: ArtistInfo, *, id3: bool) -> dict[str, Any]:
    """`ArtistInfo2` (similar artists as `ArtistID3`) or `ArtistInfo` (as folder-style `Artist`). The avatar is the
    one picture a profile has, so it is every size. No MusicBrainz id or Last.fm page: plyrd knows neither."""
    avatar = info.profile["avatar_url"]  # an https URL: plyrd.urls.check_url held it to that when stored
    similar = [sc.artist(r) for r in info.similar]
    return {"biography": _text(info.profile["bio"] or None), **images(avatar, avatar, avatar),
            "similarArtist": similar if id3 else [folder_artist(a) for a in similar]}


async def album_info(db: Database, params: Mapping[str, str], audience: Audience, public_url: str) -> dict[str, Any]:
    """getAlbumInfo(2) for an album or song id: the album's description as notes, and its cover (else its first
    song's artwork, as getCoverArt picks it) at the node's public, unauthenticated URLs: small the 96 px rendition,
    medium the ~1000 px one, large the image as uploaded."""
    raw_id = _required(params, "id")
    if not raw_id.startswith("al-"):
        raw_id = sc.album_id_of(await sc.get_song(db, raw_id, audience))
    await sc.get_album(db, raw_id, audience)
    album = None
    if uuid := sc.node_album_uuid(raw_id):  # a named album (from tags) or Singles has no row, so no notes
        album = await db.fetchone("SELECT description, image_sha, thumb_sha, display_sha FROM albums WHERE id = ?",
                                  (uuid,))
    covers = {album[c] for c in ("image_sha", "thumb_sha", "display_sha")} if album else set()
    urls: list[str | None] = []
    for size in (sc.THUMB_MAX, None, sc.DISPLAY_MAX + 1):
        try:
            sha = (await sc.cover_art(db, raw_id, size, audience)).sha256
        except SubsonicError as e:
            if e.code != NOT_FOUND:
                raise
            urls.append(None)  # no artwork at all
            continue
        # Album covers are served under /lists/covers/, track artwork under /images/.
        urls.append(f"{public_url}/lists/covers/{sha}" if sha in covers else f"{public_url}/images/{sha}")
    return {"notes": _text((album["description"] if album else None) or None), **images(*urls)}


# ---- search (deprecated) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matches:
    offset: int
    total: int
    rows: list[sqlite3.Row]


async def search_v1(db: Database, params: Mapping[str, str], audience: Audience) -> Matches:
    """The deprecated `search`: songs whose artist, album and title contain what is asked (`any`: any of the three),
    all criteria together, added after `newerThan` (milliseconds) if given; newest first, `count` from `offset`, and
    how many match in all. No criterion lists every song, as search3's empty query does."""
    count, offset = _count(params, 20), _offset(params)
    artist = f"({sc.ARTIST_TEXT} LIKE ? ESCAPE '\\')"
    album = "coalesce(a.title, t.album, '') LIKE ? ESCAPE '\\'"
    title = "t.title LIKE ? ESCAPE '\\'"
    where = await discovery(db, audience)
    if value := (params.get("artist") or "").strip():
        where &= Where.of(artist, _like(value))
    if value := (params.get("album") or "").strip():
        where &= Where.of(album, _like(value))
    if value := (params.get("title") or "").strip():
        where &= Where.of(title, _like(value))
    if value := (params.get("any") or "").strip():
        where &= Where.of(f"{title} OR {artist} OR {album}", *[_like(value)] * 3)
    if params.get("newerThan"):
        millis = sc.bounded(params.get("newerThan"), default=0, maximum=2**53, name="newerThan")
        where &= Where.of("t.created_at > ?", millis / 1000)
    total = await db.fetchone(f"SELECT count(*) AS n FROM ({TRACK_ALBUM_SELECT} WHERE {where.sql})", where.params)
    rows = await sc.song_rows(db, where, "ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?", [count, offset])
    return Matches(offset, total["n"] if total else 0, rows)
