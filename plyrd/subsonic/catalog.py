"""plyrd's catalog as Subsonic entries: artists, albums (with per-artist "Singles"), songs, genres, playlists, art.

Discovery lists (artists, album lists, random songs, genres, search) follow the feeds: ready tracks only, unlisted
tracks left out, and random songs and search hide the viewer's hidden tags. A known id still works: getSong, stream
and an album that holds an unlisted track answer it, as the track and album pages do. Private playlists exist only
for their owner.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..catalog.feeds import hidden_tags
from ..catalog.tracks import artist_name
from ..db import Database
from .envelope import GENERIC, MISSING_PARAMETER, NOT_FOUND, SubsonicError

MAX_SIZE = 500
SINGLES = "Singles"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")

SONG_SELECT = """
SELECT t.*, u.handle AS artist_handle, u.display_name AS artist_display_name,
       x.album_id AS album_uuid, x.position AS album_position, a.title AS album_title,
       ob.size AS original_size, wb.size AS web_size
FROM tracks t JOIN users u ON u.did = t.artist_did
LEFT JOIN album_tracks x ON x.track_id = t.id LEFT JOIN albums a ON a.id = x.album_id
LEFT JOIN blobs ob ON ob.sha256 = t.original_sha LEFT JOIN blobs wb ON wb.sha256 = t.web_sha
"""

# Every album's ready tracks, real albums and each artist's listed tracks outside any album ("Singles"), keyed by
# the Subsonic album id; the album lists, artists and genres are all read through it.
MEMBERS_CTE = """
WITH members(sid, album_uuid, track_id, artist_did) AS (
  SELECT 'al-' || x.album_id, x.album_id, t.id, t.artist_did
    FROM album_tracks x JOIN tracks t ON t.id = x.track_id WHERE t.status = 'ready'
  UNION ALL
  SELECT 'al-singles-' || t.artist_did, NULL, t.id, t.artist_did FROM tracks t
   WHERE t.status = 'ready' AND t.unlisted = 0 AND NOT EXISTS (SELECT 1 FROM album_tracks x WHERE x.track_id = t.id)
), alb AS (
  SELECT m.sid, m.artist_did, coalesce(max(a.title), 'Singles') AS name,
         coalesce(max(a.created_at), max(t.created_at)) AS created_at, count(*) AS song_count,
         coalesce(sum(t.duration), 0) AS duration, coalesce(sum(t.play_count), 0) AS play_count
    FROM members m JOIN tracks t ON t.id = m.track_id LEFT JOIN albums a ON a.id = m.album_uuid
   GROUP BY m.sid
)
"""
ALBUM_SELECT = MEMBERS_CTE + """
SELECT alb.*, u.handle AS artist_handle, u.display_name AS artist_display_name
FROM alb JOIN users u ON u.did = alb.artist_did
"""


# ---- ids --------------------------------------------------------------------------------------------------------


def not_found(what: str) -> SubsonicError:
    return SubsonicError(NOT_FOUND, f"{what} not found")


def track_id_of(raw: str) -> int:
    """`tr-<n>` (or a bare number, which some clients send back after caching an older id form)."""
    value = raw.removeprefix("tr-")
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise not_found("song")
    return int(value)


def artist_did_of(raw: str) -> str:
    did = raw.removeprefix("ar-")
    if not raw.startswith("ar-") or not _DID.fullmatch(did):
        raise not_found("artist")
    return did


def uuid_of(raw: str, prefix: str, what: str) -> str:
    value = raw.removeprefix(prefix).lower()
    if not raw.startswith(prefix) or not _UUID.fullmatch(value):
        raise not_found(what)
    return value


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _year(ts: float | None) -> int | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).year


def _person(row: sqlite3.Row, prefix: str = "artist") -> str:
    return row[f"{prefix}_display_name"] or row[f"{prefix}_handle"] or row["artist_did"]


# ---- entries ----------------------------------------------------------------------------------------------------


def song(row: sqlite3.Row, liked: set[int] | frozenset[int] = frozenset()) -> dict[str, Any]:
    """A Subsonic `Child` for a track. suffix/contentType/size describe the original (what download sends);
    transcoded* name the MP3 rendition that stream sends when the original is not web-playable."""
    did = row["artist_did"]
    album_id = f"al-{row['album_uuid']}" if row["album_uuid"] else f"al-singles-{did}"
    album = row["album_title"] or SINGLES
    tags = json.loads(row["tags"] or "[]")
    duration = round(float(row["duration"] or 0))
    size = row["original_size"]
    artist = artist_name(row)
    entry: dict[str, Any] = {
        "id": f"tr-{row['id']}",
        "parent": album_id,
        "isDir": False,
        "title": row["title"],
        "album": album,
        "artist": artist,
        "track": row["album_position"] + 1 if row["album_position"] is not None else None,
        "year": _year(row["created_at"]),
        "genre": tags[0] if tags else None,
        "coverArt": f"tr-{row['id']}" if row["display_sha"] else album_id,
        "size": size,
        "contentType": row["original_mime"],
        "suffix": row["original_ext"],
        "duration": duration,
        "bitRate": int(size * 8 / duration / 1000) if size and duration else None,
        "path": f"{artist}/{album}/{row['title']}.{row['original_ext']}".replace("\\", "_"),
        "playCount": row["play_count"],
        "created": _iso(row["created_at"]),
        "starred": _iso(row["created_at"]) if row["id"] in liked else None,
        "albumId": album_id,
        "artistId": f"ar-{did}",
        "type": "music",
        "isVideo": False,
        # OpenSubsonic additions
        "mediaType": "song",
        "genres": [{"name": t} for t in tags],
        "displayArtist": artist,
    }
    if row["web_sha"]:
        entry["transcodedContentType"] = "audio/mpeg"
        entry["transcodedSuffix"] = "mp3"
    return entry


def album(row: sqlite3.Row) -> dict[str, Any]:
    """An `AlbumID3`, with the `Child` fields too (title, isDir, parent) so getAlbumList (folder style) can use it."""
    return {
        "id": row["sid"],
        "name": row["name"],
        "title": row["name"],
        "album": row["name"],
        "isDir": True,
        "parent": f"ar-{row['artist_did']}",
        "artist": _person(row),
        "artistId": f"ar-{row['artist_did']}",
        "coverArt": row["sid"],
        "songCount": row["song_count"],
        "duration": round(float(row["duration"] or 0)),
        "playCount": row["play_count"],
        "created": _iso(row["created_at"]),
        "year": _year(row["created_at"]),
    }


def artist(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": f"ar-{row['artist_did']}", "name": _person(row), "coverArt": f"ar-{row['artist_did']}",
            "albumCount": row["album_count"]}


def playlist(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": f"pl-{row['id']}",
        "name": row["name"],
        "owner": row["owner_handle"] or row["owner_did"],
        "public": not row["is_private"],
        "songCount": row["song_count"],
        "duration": round(float(row["duration"] or 0)),
        "created": _iso(row["created_at"]),
        "changed": _iso(row["updated_at"]),
        "coverArt": f"pl-{row['id']}",
    }


# ---- reading ----------------------------------------------------------------------------------------------------


def bounded(value: str | None, *, default: int, maximum: int = MAX_SIZE, name: str = "size") -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise SubsonicError(GENERIC, f"{name} must be a whole number") from None
    return max(0, min(n, maximum))


async def liked_ids(db: Database, did: str) -> set[int]:
    return {r["track_id"] for r in await db.fetchall("SELECT track_id FROM likes WHERE did = ?", (did,))}


async def get_song(db: Database, raw_id: str) -> sqlite3.Row:
    row = await db.fetchone(SONG_SELECT + " WHERE t.id = ? AND t.status = 'ready'", (track_id_of(raw_id),))
    if row is None:
        raise not_found("song")
    return row


async def artists(db: Database) -> list[sqlite3.Row]:
    return await db.fetchall(MEMBERS_CTE + """
        SELECT m.artist_did, u.handle AS artist_handle, u.display_name AS artist_display_name,
               count(DISTINCT m.sid) AS album_count
        FROM members m JOIN users u ON u.did = m.artist_did GROUP BY m.artist_did""")


def index(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """Artists grouped by the first letter of their name ('#' for anything else), as getArtists answers."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted((artist(r) for r in rows), key=lambda a: a["name"].casefold()):
        first = entry["name"][:1].upper()
        groups.setdefault(first if first.isalpha() else "#", []).append(entry)
    return [{"name": k, "artist": v} for k, v in sorted(groups.items())]


async def get_artist(db: Database, raw_id: str) -> tuple[dict[str, Any], list[sqlite3.Row]]:
    did = artist_did_of(raw_id)
    albums = await db.fetchall(ALBUM_SELECT + " WHERE alb.artist_did = ? ORDER BY alb.name = ? , lower(alb.name)",
                               (did, SINGLES))
    if not albums:
        raise not_found("artist")
    first = albums[0]
    entry = {"id": f"ar-{did}", "name": _person(first), "coverArt": f"ar-{did}", "albumCount": len(albums)}
    return entry, albums


async def get_album(db: Database, raw_id: str) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    row = await db.fetchone(ALBUM_SELECT + " WHERE alb.sid = ?", (raw_id,))
    if row is None:
        raise not_found("album")
    if raw_id.startswith("al-singles-"):
        songs = await db.fetchall(
            SONG_SELECT + " WHERE t.artist_did = ? AND t.status = 'ready' AND t.unlisted = 0 AND x.album_id IS NULL"
            " ORDER BY t.created_at DESC, t.id DESC", (row["artist_did"],))
    else:
        songs = await db.fetchall(SONG_SELECT + " WHERE x.album_id = ? AND t.status = 'ready' ORDER BY x.position",
                                  (raw_id.removeprefix("al-"),))
    return row, songs


LIST_TYPES = ("random", "newest", "alphabeticalByName", "alphabeticalByArtist", "frequent", "recent", "starred",
              "highest", "byYear", "byGenre")


async def album_list(db: Database, params: dict[str, str], viewer_did: str) -> list[sqlite3.Row]:
    """getAlbumList(2): `type` picks the order; frequent = the node's play counts, recent = the caller's plays."""
    kind = params.get("type")
    if not kind:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: type")
    size = bounded(params.get("size"), default=10)
    offset = bounded(params.get("offset"), default=0, maximum=10**9, name="offset")
    where, args, order = "", [], ""
    last_play = ("(SELECT max(e.played_at) FROM play_events e JOIN members m2 ON m2.track_id = e.track_id"
                 " WHERE m2.sid = alb.sid AND e.listener = ?)")
    likes = ("(SELECT count(*) FROM likes l JOIN members m2 ON m2.track_id = l.track_id WHERE m2.sid = alb.sid"
             " {extra})")
    if kind == "random":
        order = "random()"
    elif kind == "newest":
        order = "alb.created_at DESC, alb.sid"
    elif kind == "alphabeticalByName":
        order = "lower(alb.name), alb.sid"
    elif kind == "alphabeticalByArtist":
        order = "lower(coalesce(u.display_name, u.handle, alb.artist_did)), lower(alb.name), alb.sid"
    elif kind == "frequent":
        where, order = " WHERE alb.play_count > 0", "alb.play_count DESC, alb.sid"
    elif kind == "recent":
        where, order = f" WHERE {last_play} IS NOT NULL", f"{last_play} DESC, alb.sid"
        args = [viewer_did, viewer_did]
    elif kind == "starred":
        where, order = " WHERE " + likes.format(extra="AND l.did = ?") + " > 0", "lower(alb.name), alb.sid"
        args = [viewer_did]
    elif kind == "highest":
        where = " WHERE " + likes.format(extra="") + " > 0"
        order = likes.format(extra="") + " DESC, alb.sid"
    elif kind == "byYear":
        if not params.get("fromYear") or not params.get("toYear"):
            raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: fromYear and toYear")
        lo = bounded(params.get("fromYear"), default=0, maximum=9999, name="fromYear")
        hi = bounded(params.get("toYear"), default=9999, maximum=9999, name="toYear")
        where = " WHERE CAST(strftime('%Y', alb.created_at, 'unixepoch') AS INTEGER) BETWEEN ? AND ?"
        args = [min(lo, hi), max(lo, hi)]
        order = "alb.created_at" + (" DESC" if lo > hi else "") + ", alb.sid"
    elif kind == "byGenre":
        genre = params.get("genre")
        if not genre:
            raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: genre")
        where = (" WHERE EXISTS (SELECT 1 FROM members m2 JOIN track_tags g ON g.track_id = m2.track_id"
                 " WHERE m2.sid = alb.sid AND g.tag = ?)")
        args, order = [genre.strip().lower()], "lower(alb.name), alb.sid"
    else:
        raise SubsonicError(GENERIC, f"unknown album list type {kind!r}; one of {', '.join(LIST_TYPES)}")
    sql = ALBUM_SELECT + where + f" ORDER BY {order} LIMIT ? OFFSET ?"
    return await db.fetchall(sql, [*args, size, offset])


def _hide(tags: list[str]) -> tuple[str, list[Any]]:
    """The feeds' rule: discovery lists leave out tracks carrying one of the viewer's hidden tags."""
    if not tags:
        return "", []
    marks = ",".join("?" * len(tags))
    return f" AND NOT EXISTS (SELECT 1 FROM track_tags h WHERE h.track_id = t.id AND h.tag IN ({marks}))", tags


async def random_songs(db: Database, params: dict[str, str], viewer_did: str) -> list[sqlite3.Row]:
    size = bounded(params.get("size"), default=10)
    sql = SONG_SELECT + " WHERE t.status = 'ready' AND t.unlisted = 0"
    args: list[Any] = []
    if genre := params.get("genre"):
        sql += " AND EXISTS (SELECT 1 FROM track_tags g WHERE g.track_id = t.id AND g.tag = ?)"
        args.append(genre.strip().lower())
    if params.get("fromYear"):
        sql += " AND CAST(strftime('%Y', t.created_at, 'unixepoch') AS INTEGER) >= ?"
        args.append(bounded(params.get("fromYear"), default=0, maximum=9999, name="fromYear"))
    if params.get("toYear"):
        sql += " AND CAST(strftime('%Y', t.created_at, 'unixepoch') AS INTEGER) <= ?"
        args.append(bounded(params.get("toYear"), default=9999, maximum=9999, name="toYear"))
    clause, extra = _hide(await hidden_tags(db, viewer_did))
    return await db.fetchall(sql + clause + " ORDER BY random() LIMIT ?", [*args, *extra, size])


async def genres(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall(MEMBERS_CTE + """
        SELECT g.tag, count(DISTINCT t.id) AS songs, count(DISTINCT m.sid) AS albums
        FROM track_tags g JOIN tracks t ON t.id = g.track_id JOIN members m ON m.track_id = t.id
        WHERE t.unlisted = 0 GROUP BY g.tag ORDER BY songs DESC, g.tag""")
    return [{"value": r["tag"], "songCount": r["songs"], "albumCount": r["albums"]} for r in rows]


async def search(db: Database, params: dict[str, str], viewer_did: str,
                 ranked_song_ids: list[int] | None = None) -> dict[str, Any]:
    """search3 by substring (an empty query lists everything, which is how some clients sync a library). With
    `ranked_song_ids` (the node's search index's answer, best first, offset already applied) the songs are those."""
    query = (params.get("query") or "").strip().strip('"')
    like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    def page(name: str, default: int) -> tuple[int, int]:
        return (bounded(params.get(f"{name}Count"), default=default),
                bounded(params.get(f"{name}Offset"), default=0, maximum=10**9, name=f"{name}Offset"))

    n, off = page("artist", 20)
    artist_rows = await db.fetchall(MEMBERS_CTE + """
        SELECT m.artist_did, u.handle AS artist_handle, u.display_name AS artist_display_name,
               count(DISTINCT m.sid) AS album_count
        FROM members m JOIN users u ON u.did = m.artist_did
        WHERE coalesce(u.display_name, '') LIKE ?1 ESCAPE '\\' OR coalesce(u.handle, '') LIKE ?1 ESCAPE '\\'
        GROUP BY m.artist_did ORDER BY lower(coalesce(u.display_name, u.handle, m.artist_did)) LIMIT ?2 OFFSET ?3""",
                                   (like, n, off))
    n, off = page("album", 20)
    album_rows = await db.fetchall(ALBUM_SELECT + " WHERE alb.name LIKE ? ESCAPE '\\' ORDER BY lower(alb.name),"
                                   " alb.sid LIMIT ? OFFSET ?", (like, n, off))
    n, off = page("song", 20)
    clause, extra = _hide(await hidden_tags(db, viewer_did))
    if ranked_song_ids is not None:
        found = {r["id"]: r for r in await db.fetchall(
            SONG_SELECT + " WHERE t.id IN (SELECT value FROM json_each(?)) AND t.status = 'ready' AND t.unlisted = 0"
            + clause, [json.dumps(ranked_song_ids), *extra])}
        song_rows = [found[i] for i in ranked_song_ids if i in found][:n]
    else:
        song_rows = await db.fetchall(
            SONG_SELECT + " WHERE t.status = 'ready' AND t.unlisted = 0 AND (t.title LIKE ? ESCAPE '\\'"
            " OR coalesce(u.display_name, u.handle, '') LIKE ? ESCAPE '\\' OR coalesce(a.title, t.album, '') LIKE ?"
            " ESCAPE '\\')" + clause + " ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?",
            [like, like, like, *extra, n, off])
    liked = await liked_ids(db, viewer_did)
    return {"artist": [artist(r) for r in artist_rows], "album": [album(r) for r in album_rows],
            "song": [song(r, liked) for r in song_rows]}


PLAYLIST_SELECT = """
SELECT p.*, u.handle AS owner_handle,
       (SELECT count(*) FROM playlist_items i JOIN tracks t ON t.id = i.track_id
         WHERE i.playlist_id = p.id AND t.status = 'ready') AS song_count,
       (SELECT coalesce(sum(t.duration), 0) FROM playlist_items i JOIN tracks t ON t.id = i.track_id
         WHERE i.playlist_id = p.id AND t.status = 'ready') AS duration
FROM playlists p JOIN users u ON u.did = p.owner_did
"""


async def playlists(db: Database, viewer_did: str, username: str | None) -> list[sqlite3.Row]:
    """The caller's playlists (private ones too) and everyone else's public ones; `username` narrows to one owner."""
    sql = PLAYLIST_SELECT + " WHERE (p.owner_did = ? OR p.is_private = 0)"
    args: list[Any] = [viewer_did]
    if username:
        sql += " AND (p.owner_did = ? OR u.handle = ?)"
        args += [username, username.lower().lstrip("@")]
    return await db.fetchall(sql + " ORDER BY p.owner_did != ?, p.created_at DESC, p.id", [*args, viewer_did])


async def get_playlist(db: Database, raw_id: str, viewer_did: str) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    playlist_id = uuid_of(raw_id, "pl-", "playlist")
    row = await db.fetchone(PLAYLIST_SELECT + " WHERE p.id = ?", (playlist_id,))
    if row is None or (row["is_private"] and row["owner_did"] != viewer_did):
        raise not_found("playlist")  # someone else's private playlist does not exist for the caller
    songs = await db.fetchall(SONG_SELECT + " JOIN playlist_items i ON i.track_id = t.id WHERE i.playlist_id = ?"
                              " AND t.status = 'ready' ORDER BY i.position", (playlist_id,))
    return row, songs


# ---- files ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    sha256: str
    mime: str
    download_name: str | None = None


def playable(row: sqlite3.Row) -> File:
    """What stream sends: the MP3 rendition when there is one (the original is not web-playable), else the original."""
    if row["web_sha"]:
        return File(row["web_sha"], "audio/mpeg")
    return File(row["original_sha"], row["original_mime"])


def original(row: sqlite3.Row) -> File:
    name = re.sub(r'[\x00-\x1f/\\:*?"<>|]+', " ", f"{artist_name(row)} - {row['title']}").strip()
    return File(row["original_sha"], row["original_mime"], f"{name}.{row['original_ext']}")


THUMB_MAX = 96  # plyrd.media.artwork.THUMB_SIDE
DISPLAY_MAX = 1000  # plyrd.media.artwork.DISPLAY_SIDE


def _pick(row: sqlite3.Row, size: int | None) -> File | None:
    """The smallest stored rendition that covers `size` (display when no size is asked: originals can be huge)."""
    if not row["display_sha"]:
        return None
    if size is not None and size <= THUMB_MAX and row["thumb_sha"]:
        return File(row["thumb_sha"], "image/webp")
    if size is not None and size > DISPLAY_MAX and row["image_sha"]:
        return File(row["image_sha"], row["image_mime"])
    return File(row["display_sha"], "image/webp")


_ART = "SELECT t.display_sha, t.thumb_sha, t.image_sha, t.image_mime FROM tracks t"


async def cover_art(db: Database, raw_id: str, size: int | None, viewer_did: str) -> File:
    """Artwork of a song, album (its cover, else its first track's), artist or Singles (their newest track's
    artwork) or playlist (its cover, else its first track's)."""
    rows: list[sqlite3.Row] = []
    if raw_id.startswith("tr-"):
        rows = await db.fetchall(_ART + " WHERE t.id = ?", (track_id_of(raw_id),))
    elif raw_id.startswith(("ar-", "al-singles-")):
        did = raw_id.removeprefix("al-singles-") if raw_id.startswith("al-singles-") else artist_did_of(raw_id)
        rows = await db.fetchall(_ART + " WHERE t.artist_did = ? AND t.status = 'ready' AND t.unlisted = 0"
                                 " AND t.display_sha IS NOT NULL ORDER BY t.created_at DESC LIMIT 1", (did,))
    elif raw_id.startswith("al-"):
        album_id = uuid_of(raw_id, "al-", "album")
        rows = await db.fetchall("SELECT display_sha, thumb_sha, image_sha, image_mime FROM albums WHERE id = ?",
                                 (album_id,))
        rows += await db.fetchall(_ART + " JOIN album_tracks x ON x.track_id = t.id WHERE x.album_id = ?"
                                  " AND t.display_sha IS NOT NULL ORDER BY x.position LIMIT 1", (album_id,))
    elif raw_id.startswith("pl-"):
        row, _ = await get_playlist(db, raw_id, viewer_did)
        rows = [row]
        rows += await db.fetchall(_ART + " JOIN playlist_items i ON i.track_id = t.id WHERE i.playlist_id = ?"
                                  " AND t.display_sha IS NOT NULL ORDER BY i.position LIMIT 1", (row["id"],))
    for row in rows:
        if (found := _pick(row, size)) is not None:
            return found
    raise not_found("cover art")
