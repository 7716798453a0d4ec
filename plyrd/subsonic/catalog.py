"""plyrd's catalog as Subsonic entries: artists, albums (with per-artist "Singles"), songs, genres, playlists, art.

Every read asks the catalog's read model (plyrd.catalog.tracks) which tracks the caller may see, the way
Navidrome's Subsonic layer asks its repositories with one filter: a song is a track the caller may see that is
playable (Subsonic clients stream what they list). Discovery lists (artists, album lists, random songs, genres,
search) follow the feeds: tracks listed for the caller, and random songs and search hide their hidden tags. A known
id still works: getSong, stream and an album that holds an unlisted track answer it, as the track and album pages
do. Private playlists exist only for their owner.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..catalog.playlists import may_see_playlist, playlist_visible
from ..catalog.tracks import (
    TRACK_ALBUM_SELECT,
    Audience,
    Where,
    album_visible,
    artist_name,
    listed,
    on_node,
    playable,
    read_hidden_tags,
    tagged,
    visible,
    without_tags,
)
from ..db import Database
from ..db.queries import rows
from ..library import LIBRARY_DID
from . import snapshot
from .envelope import GENERIC, MISSING_PARAMETER, NOT_FOUND, SubsonicError
from .streaming import announced

MAX_SIZE = 500
SINGLES = "Singles"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")
EVERYWHERE = Where()  # no music folder asked: every folder the caller may see
# A library track, told by its owner (the node's library): artist_did is near the start of a row, `source` (added
# last) at its end, past the waveform and tags, which every upload row in an album list would then be read through
# (getAlbumList2 on 10,000 tracks: 10-30% slower).
LIBRARY_TRACK = f"t.artist_did = '{LIBRARY_DID}'"



def songs(audience: Audience) -> Where:
    """The tracks that are songs for this caller: ones they may see, ready to stream."""
    return visible(audience) & playable()


@dataclass(frozen=True)
class Only:
    """Which tracks `members` groups: a condition on each of its arms (tracks on an album `x`/`t`, tracks on none
    `t`), to build only some albums rather than all (one album, a page of them, an artist's). It only has to hold
    for every member of the albums wanted (a superset is fine): whoever narrows still picks them by `sid`. `scan`:
    the conditions hold for many tracks, so read them all from the tracks_albums index rather than look each up."""

    albums: Where
    singles: Where
    scan: bool = False


EVERY_ALBUM = Only(Where(), Where(), scan=True)
_NONE = Where.of("0")


def only_albums(sids: Sequence[str]) -> Only:
    """The members of these Subsonic albums (and perhaps a few more): a node album by its id, an artist's Singles and
    named albums by the artist, the music folder's Singles by their artist's key."""
    uuids, dids, lib_keys = [], [], []
    for sid in sids:
        if sid.startswith("al-singles-"):
            key = sid.removeprefix("al-singles-")
            if is_library_key(key):
                lib_keys.append(key.removeprefix(LIB_PREFIX))
            else:
                dids.append(key)
        elif named := _NAMED_ID.fullmatch(sid):
            dids.append(named.group(1))
        elif sid.startswith("al-"):
            uuids.append(sid.removeprefix("al-"))
    each = "IN (SELECT value FROM json_each(?))"
    albums = Where.of(f"x.album_id {each}", json.dumps(uuids)) if uuids else _NONE
    terms, params = [], []
    if dids:
        terms.append(f"t.artist_did {each}")
        params.append(json.dumps(sorted(set(dids))))
    if lib_keys:
        terms.append(f"{LIBRARY_TRACK} AND hex(lower({LIB_SINGLE_ARTIST})) {each}")
        params.append(json.dumps(sorted(set(lib_keys))))
    return Only(albums, Where.of(" OR ".join(f"({t})" for t in terms), *params) if terms else _NONE)


def only_artist(key: str) -> Only:
    """The members of an artist's albums (`artist_did_of`: an account's DID, or a library artist's `lib~<hex>`)."""
    if is_library_key(key):
        hexed = key.removeprefix(LIB_PREFIX)
        return Only(Where.of(f"{LIBRARY_TRACK} AND hex(lower({_LIB_ALBUM_ARTIST_X})) = ?", hexed),
                    Where.of(f"{LIBRARY_TRACK} AND hex(lower({LIB_SINGLE_ARTIST})) = ?", hexed))
    return Only(Where.of("t.artist_did = ?", key), Where.of("t.artist_did = ?", key))


# A number per song that an album list filters or orders its albums by (`members`' `tally`, on tracks t): `ranked`
# carries its max and sum per album. None: NULL.
Tally = tuple[str, Sequence[Any]]
NO_TALLY: Tally = ("NULL", ())


def members(audience: Audience, folder: Where = EVERYWHERE, only: Only = EVERY_ALBUM,
            tally: Tally = NO_TALLY) -> tuple[str, list[Any]]:
    """`WITH members, alb, ranked`: every album's songs for this caller, keyed by the Subsonic album id, and each
    album's totals. Albums are the node's albums (`al-<uuid>`); then, for listed tracks on none, the album their `album`
    text names (imports; uploads whose file's tags name one: `al-<did>~<name key>`, see `named_album_id`), else
    the artist's "Singles" (`al-singles-<did>`). The album lists, artists, genres and search read through it;
    the parameters go first. A named album's name is its members' text (the least: "Blue" before "blue"). Year,
    album artist, MusicBrainz id and genres come from the members' file tags where they have them.

    An album's artist (`artist_did`) is its uploader, or for the music folder's tracks the artist their tags name
    (`library_artist_key`: the library album's album artist; a track on no album, its album artist else its
    artist), `artist_name` that name as tagged (NULL for the node's accounts). `folder` narrows to one music
    folder (plyrd.subsonic.folders).

    `alb` is an album's full row (file tags, genres: it reads its members' track rows), `ranked` only what a list
    orders and filters by (name, artist, date, plays, `tally`'s max and sum), from the index alone (search tells
    which albums a caller sees by it, building no row); the album lists build every `alb` once per catalog change
    (`AlbumSummaries`), `albums_by_id` only the few it is asked for. `only` narrows to some albums' members
    (`only_albums`, `only_artist`), so that one album costs its own songs, not the catalog."""
    # Library tracks' names and keys are computed only for them (the CASEs): uploads cost what they did before.
    # `album`, `created_at`, `play_count`, `file_tags` ride along (all in tracks_albums, migration 0022, an index
    # that holds every column a member needs): `ranked` needs nothing else, and `alb` reads from the track rows only
    # what precedes their waveform peaks (duration, tags), never the columns after them (a walk of overflow pages).
    # A library track's album artist: its album's (the subquery is NULL for a track on none), else its own tags'.
    # `album` is the album text of a track on none (a node album's name is its title; less to carry and group).
    def artist(album_artist: str, album: str) -> str:
        return (f"CASE WHEN {LIBRARY_TRACK} THEN 'lib~' || hex(lower({album_artist})) ELSE t.artist_did END,"
                f" CASE WHEN {LIBRARY_TRACK} THEN {album_artist} END, {album}, t.created_at, t.play_count, t.file_tags,"
                f" {tally[0]}")

    # (`_NAMED_KEY` is '' exactly when the trimmed text is: the cheaper test first.)
    on_none = (f"CASE WHEN {LIBRARY_TRACK} THEN 'al-singles-lib~' || hex(lower({LIB_SINGLE_ARTIST}))"
               f" WHEN trim(coalesce(t.album, '')) = '' THEN 'al-singles-' || t.artist_did"
               f" ELSE 'al-' || t.artist_did || '~' || {_NAMED_KEY} END")
    head = ("WITH members(sid, album_uuid, track_id, artist_did, artist_name, album, created_at, play_count, file_tags,"
            " tally)")
    if only.scan:
        # Every album (or many): one pass over the index (no table row read), each track with its album if any.
        on_album, on_none_listed = songs(audience) & folder & only.albums, listed(audience) & folder & only.singles
        sql = f"""
{head} AS (
  SELECT CASE WHEN x.album_id IS NOT NULL THEN 'al-' || x.album_id ELSE {on_none} END, x.album_id, t.id,
         {artist(_LIB_ALBUM_ARTIST_X, "CASE WHEN x.album_id IS NULL THEN t.album END")}
    FROM tracks t INDEXED BY tracks_albums LEFT JOIN album_tracks x ON x.track_id = t.id
   WHERE (x.album_id IS NOT NULL AND {on_album.sql}) OR (x.album_id IS NULL AND {on_none_listed.sql})
"""
        params = [*tally[1], *on_album.params, *on_none_listed.params]
    else:
        # Some albums: their tracks found by the indexes that find them (an album's by album_tracks, an artist's by
        # tracks_albums or tracks_artist).
        in_album, single = songs(audience) & folder & only.albums, listed(audience) & folder & only.singles
        sql = f"""
{head} AS (
  SELECT 'al-' || x.album_id, x.album_id, t.id, {artist(_LIB_ALBUM_ARTIST_X, "NULL")}
    FROM album_tracks x JOIN tracks t ON t.id = x.track_id WHERE {in_album.sql}
  UNION ALL
  SELECT {on_none}, NULL, t.id, {artist(LIB_SINGLE_ARTIST, "t.album")}
    FROM tracks t
   WHERE {single.sql} AND NOT EXISTS (SELECT 1 FROM album_tracks x WHERE x.track_id = t.id)
"""
        params = [*tally[1], *in_album.params, *tally[1], *single.params]
    sql += f"""), alb AS (
  SELECT m.sid, m.artist_did, min(m.artist_name) AS artist_name,
         coalesce(max(a.title), CASE WHEN m.sid LIKE 'al-singles-%' THEN '{SINGLES}' ELSE min(trim(m.album)) END)
           AS name,
         coalesce(max(a.created_at), max(m.created_at)) AS created_at, count(*) AS song_count,
         coalesce(sum(t.duration), 0) AS duration, coalesce(sum(m.play_count), 0) AS play_count,
         coalesce(max(CAST(json_extract(m.file_tags, '$.year') AS INTEGER)),
                  CAST(strftime('%Y', coalesce(max(a.created_at), max(m.created_at)), 'unixepoch') AS INTEGER))
           AS year,
         max(json_extract(m.file_tags, '$.album_artist')) AS tag_album_artist,
         max(json_extract(m.file_tags, '$.mb_album_id')) AS mb_album_id,
         max(json_extract(m.file_tags, '$.album_sort')) AS album_sort,
         max(json_extract(m.file_tags, '$.compilation')) AS compilation,
         json_group_array(json_array(m.track_id, m.created_at, json(t.tags))) AS member_tags
    FROM members m JOIN tracks t ON t.id = m.track_id LEFT JOIN albums a ON a.id = m.album_uuid
   GROUP BY m.sid
), ranked AS (
  SELECT g.sid, g.artist_did, g.artist_name,
         coalesce(a.title, CASE WHEN g.sid LIKE 'al-singles-%' THEN '{SINGLES}' ELSE g.album END) AS name,
         coalesce(a.created_at, g.created_at) AS created_at, g.play_count, g.tally_max, g.tally_sum
    FROM (SELECT m.sid, m.album_uuid, m.artist_did, min(m.artist_name) AS artist_name, min(trim(m.album)) AS album,
                 max(m.created_at) AS created_at, coalesce(sum(m.play_count), 0) AS play_count,
                 max(m.tally) AS tally_max, coalesce(sum(m.tally), 0) AS tally_sum
            FROM members m GROUP BY m.sid) g
    LEFT JOIN albums a ON a.id = g.album_uuid  -- one album per group: album_uuid is the sid's
)
"""
    return sql, params


# ---- the music folder's artists ---------------------------------------------------------------------------------
# Library tracks all belong to LIBRARY_DID; Subsonic shows the artists their tags name instead, each with an id
# made from the name (`ar-lib~<hex of its SQLite-folded bytes>`): stable across rescans, and never a DID, so it
# cannot be mistaken for a node's account. A name no tag gives is the unknown artist (`ar-lib~`).

LIB_PREFIX = "lib~"
UNKNOWN_ARTIST = "[Unknown Artist]"
VARIOUS_ARTISTS = "Various Artists"

# The names as SQL (on tracks t, albums a), trimmed of spaces, '' for none: a track's own artist (else its album
# artist), the artist of a track on no album (album artist, else artist), and a library album's (its album_artist,
# which the scanner sets, "Various Artists" for compilations).
LIB_TRACK_ARTIST = ("coalesce(nullif(trim(t.file_tags ->> '$.artist'), ''),"
                    " nullif(trim(t.file_tags ->> '$.album_artist'), ''), '')")
LIB_SINGLE_ARTIST = ("coalesce(nullif(trim(t.file_tags ->> '$.album_artist'), ''),"
                     " nullif(trim(t.file_tags ->> '$.artist'), ''), '')")
LIB_ALBUM_ARTIST = f"coalesce(nullif(trim(a.album_artist), ''), {LIB_SINGLE_ARTIST})"
# The same for the album `album_tracks x` puts a track on.
_LIB_ALBUM_ARTIST_X = (f"coalesce((SELECT nullif(trim(a.album_artist), '') FROM albums a WHERE a.id = x.album_id),"
                       f" {LIB_SINGLE_ARTIST})")
# The same for a track alone: its album's artist when it is on one, else its own album artist, else its artist.
_LIB_TRACK_ALBUM_ARTIST = ("coalesce((SELECT nullif(trim(a2.album_artist), '') FROM album_tracks x2"
                           f" JOIN albums a2 ON a2.id = x2.album_id WHERE x2.track_id = t.id), {LIB_SINGLE_ARTIST})")
_LIB_KEY = re.compile(r"lib~((?:[0-9A-F]{2}){0,1024})")


def _folded_hex(name: str) -> str:
    """hex(lower(name)) as SQLite computes it (its lower() folds ASCII only)."""
    return "".join(c.lower() if c.isascii() else c for c in name).encode("utf-8").hex().upper()


def library_artist_key(name: str | None) -> str:
    """The artist key (what `ar-` prefixes) of a name a library track's tags give; the SQL's `'lib~' || hex(...)`."""
    return LIB_PREFIX + _folded_hex((name or "").strip(" "))


def is_library_key(key: str) -> bool:
    return key.startswith(LIB_PREFIX)


def _first_name(*values: Any) -> str:
    """The first of these tag values with text, trimmed of spaces as SQLite's trim() does ('' for none)."""
    for value in values:
        if isinstance(value, str) and value.strip(" "):
            return value.strip(" ")
    return ""


def shown_name(name: str | None) -> str:
    return name or UNKNOWN_ARTIST


def artist_tracks(keys: Sequence[str]) -> Where:
    """Tracks by any of these artists: the node's accounts by DID; a library artist's are the library tracks that
    name them as their artist or as their album's artist (a compilation's songs are Various Artists' too)."""
    dids = [k for k in keys if not is_library_key(k) and k != LIBRARY_DID]
    names = [k.removeprefix(LIB_PREFIX) for k in keys if is_library_key(k)]
    terms: list[str] = []
    params: list[Any] = []
    if dids:
        terms.append("t.artist_did IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(dids))
    if names:
        terms.append(f"{LIBRARY_TRACK} AND (hex(lower({LIB_TRACK_ARTIST})) IN (SELECT value FROM json_each(?))"
                     f" OR hex(lower({_LIB_TRACK_ALBUM_ARTIST})) IN (SELECT value FROM json_each(?)))")
        params += [json.dumps(names), json.dumps(names)]
    return Where.of(" OR ".join(f"({t})" for t in terms) or "0", *params)


# `song_artist_key` in SQL, on tracks t.
SONG_ARTIST_KEY = f"CASE WHEN {LIBRARY_TRACK} THEN 'lib~' || hex(lower({LIB_TRACK_ARTIST})) ELSE t.artist_did END"


def song_artist_key(row: sqlite3.Row) -> str:
    """The artist a song row is by (its `artistId` without `ar-`)."""
    if row["source"] != "library":
        return str(row["artist_did"])
    tags = file_tags(row)
    return library_artist_key(_first_name(tags.get("artist"), tags.get("album_artist")))


# The key of the album a track's `album` text names: its bytes in hex, after SQLite's trim and (ASCII) lower, so
# "Blue", "blue" and " Blue " are one album. '' when it names none. `named_album_id` computes the same in Python.
_NAMED_KEY = "hex(lower(trim(coalesce(t.album, ''))))"
_NAMED_ID = re.compile(r"al-(did:[a-z]+:[A-Za-z0-9._:%-]+)~((?:[0-9A-F]{2}){1,1024})")


def named_album_id(did: str, album: str | None) -> str | None:
    """The Subsonic id of the album `album` names for this artist (`_NAMED_KEY`), or None when it names none."""
    name = (album or "").strip(" ")
    if not name:
        return None
    folded = "".join(c.lower() if c.isascii() else c for c in name)  # SQLite's lower() folds ASCII only
    return f"al-{did}~{folded.encode('utf-8').hex().upper()}"


# The name of the artist a grouped `members` row is by: the account's display name, or the name the library's tags
# give (`artist_name` is NULL for accounts).
def _artist_name_sql(lib_name: str) -> str:
    return (f"CASE WHEN {lib_name} IS NULL THEN u.display_name WHEN {lib_name} = '' THEN '{UNKNOWN_ARTIST}'"
            f" ELSE {lib_name} END")


def album_select(audience: Audience, folder: Where = EVERYWHERE, only: Only = EVERY_ALBUM,
                 columns: str = "") -> tuple[str, list[Any]]:
    """Albums (`AlbumID3` rows) as this caller sees them; add WHERE/ORDER on `alb`, parameters after these. Every
    album's row costs its members' file tags and genres: narrow with `only` (or `albums_by_id`) to the ones wanted.
    `columns`: more columns on `alb` and `u` (", ..."), e.g. an order's rank."""
    cte, params = members(audience, folder, only)
    return cte + f"""
SELECT alb.*, u.handle AS artist_handle, {_artist_name_sql("alb.artist_name")} AS artist_display_name{columns}
FROM alb LEFT JOIN users u ON u.did = alb.artist_did
""", params


async def albums_by_id(db: Database, audience: Audience, sids: Sequence[str],
                       folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """The rows (`album_select`) of these albums, in the order asked, leaving out those the caller may not see."""
    if not sids:
        return []
    return await db.read_fn(read_albums_by_id, snapshot.of(db), audience, list(sids), folder)


def read_albums_by_id(conn: sqlite3.Connection, snaps: snapshot.Snapshots | None, audience: Audience,
                      sids: Sequence[str], folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """`albums_by_id` on a reader's thread: from the album summaries already computed for this caller and catalog
    (`snaps`) when there are some, else built for these albums only (never every album for a few)."""
    if not sids:
        return []
    kept = snaps.peek(conn, _summaries_key(conn, audience, folder)) if snaps is not None else None
    if isinstance(kept, AlbumSummaries):
        return [kept.by_sid[sid] for sid in sids if sid in kept.by_sid]
    sql, params = album_select(audience, folder, only_albums(sids))
    found = rows(conn, sql + " WHERE alb.sid IN (SELECT value FROM json_each(?))", [*params, json.dumps(list(sids))])
    by_sid = {r["sid"]: r for r in found}
    return [by_sid[sid] for sid in sids if sid in by_sid]


# How the album lists order albums, on `alb` (an album row, or `ranked`) and `u` (its artist's users row): the same
# expressions order the summaries (`AlbumSummaries`) and any SQL page pick.
BY_NAME = "lower(alb.name), alb.sid"
BY_ARTIST = "lower(coalesce(u.display_name, u.handle, alb.artist_name, alb.artist_did)), lower(alb.name), alb.sid"
NEWEST = "alb.created_at DESC, alb.sid"


@dataclass(eq=False)  # one per catalog epoch, known by identity (kept in weak maps beside it)
class AlbumSummaries:
    """Every album a class of callers sees in one music folder scope, as full rows (`album_select`), computed once per
    catalog change (plyrd.subsonic.snapshot) and kept in the orders the album lists page through. Rows carry two
    ranks besides (`by_name`, `by_artist`: their place in BY_NAME and BY_ARTIST)."""

    newest: list[sqlite3.Row]  # NEWEST
    by_name: list[sqlite3.Row]
    by_artist: list[sqlite3.Row]
    frequent: list[sqlite3.Row]  # played albums, most played first
    by_sid: dict[str, sqlite3.Row]
    _album_of: dict[int, str] | None = None
    _entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, conn: sqlite3.Connection, audience: Audience, folder: Where) -> AlbumSummaries:
        sql, params = album_select(audience, folder, columns=f", row_number() OVER (ORDER BY {BY_NAME}) AS by_name,"
                                                             f" row_number() OVER (ORDER BY {BY_ARTIST}) AS by_artist")
        newest = rows(conn, f"{sql} ORDER BY {NEWEST}", params)
        return cls(newest, sorted(newest, key=lambda r: r["by_name"]), sorted(newest, key=lambda r: r["by_artist"]),
                   sorted((r for r in newest if r["play_count"] > 0), key=lambda r: (-r["play_count"], r["sid"])),
                   {r["sid"]: r for r in newest})

    def album_of(self) -> dict[int, str]:
        """The album each song of these albums is on (track id -> sid), read from the rows' members when first
        asked (the lists that tally their songs' likes, plays or genres)."""
        if self._album_of is None:
            self._album_of = {member[0]: r["sid"] for r in self.newest
                              for member in json.loads(r["member_tags"] or "[]")}
        return self._album_of

    def entries(self, page: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
        """These albums' `AlbumID3` entries (`album`), each shaped once and kept (a caller must not change them)."""
        kept = self._entries
        return [kept.get(r["sid"]) or kept.setdefault(r["sid"], album(r)) for r in page]

    def tallied(self, values: Iterable[tuple[int, Any]], combine: Callable[[Any, Any], Any]) -> dict[str, Any]:
        """Each album's tally of (track id, value) pairs for its songs, by `combine` (max, sum...)."""
        album_of, found = self.album_of(), {}
        for track_id, value in values:
            if (sid := album_of.get(track_id)) is not None:
                found[sid] = value if sid not in found else combine(found[sid], value)
        return found


def _summaries_key(conn: sqlite3.Connection, audience: Audience, folder: Where) -> tuple[Any, ...]:
    return ("albums", snapshot.audience_class(conn, audience), folder)


def album_summaries(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience,
                    folder: Where = EVERYWHERE) -> AlbumSummaries:
    """Every album the caller sees in `folder`, computed when the catalog changed since it last was."""
    return snaps.get(conn, _summaries_key(conn, audience, folder),
                     lambda c: AlbumSummaries.read(c, audience, folder))


# A song row: TRACK_ALBUM_SELECT with where a library track's file is (its music folder and path in it) and its
# library album's artist.
_SONG_SELECT = TRACK_ALBUM_SELECT.replace(
    " u.handle AS artist_handle,", " lf.folder_id AS library_folder_id, lf.rel_path AS library_path,"
    " a.album_artist AS library_album_artist, u.handle AS artist_handle,", 1) + \
    " LEFT JOIN library_files lf ON lf.track_id = t.id"
assert "library_path" in _SONG_SELECT


async def song_rows(db: Database, where: Where, tail: str = "", tail_params: Sequence[Any] = (),
                    join: str = "") -> list[sqlite3.Row]:
    """Tracks with their album and file size (what `song` shapes) that meet `where`, then `tail` (ORDER BY, LIMIT)."""
    return await db.fetchall(f"{_SONG_SELECT} {join} WHERE {where.sql} {tail}", [*where.params, *tail_params])


def read_song_rows(conn: sqlite3.Connection, where: Where, tail: str = "", tail_params: Sequence[Any] = (),
                   join: str = "") -> list[sqlite3.Row]:
    """`song_rows` on a reader's thread."""
    return rows(conn, f"{_SONG_SELECT} {join} WHERE {where.sql} {tail}", [*where.params, *tail_params])


# What a song's artist is called, for substring searches on a song row (u: its users row): the account's display
# name and handle; a library track's artist and album artist tags (never the library account's name).
ARTIST_TEXT = (f"CASE WHEN {LIBRARY_TRACK} THEN coalesce(t.file_tags ->> '$.artist', '') || char(10) ||"
               " coalesce(t.file_tags ->> '$.album_artist', '')"
               " ELSE coalesce(u.display_name, '') || char(10) || coalesce(u.handle, '') END")


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
    """The artist key an `ar-` id names: an account's DID, or a library artist's `lib~<hex>`."""
    did = raw.removeprefix("ar-")
    if not raw.startswith("ar-") or not (_DID.fullmatch(did) or _LIB_KEY.fullmatch(did)) or did == LIBRARY_DID:
        raise not_found("artist")  # the library holds the music folder's files; it is nobody's artist
    return did


def uuid_of(raw: str, prefix: str, what: str) -> str:
    value = raw.removeprefix(prefix).lower()
    if not raw.startswith(prefix) or not _UUID.fullmatch(value):
        raise not_found(what)
    return value


def directory_id(folder_id: int, rel_dir: str) -> str:
    """A library directory's id: its folder (library_folders.id) and its '/'-separated path there ('' for the
    folder itself), so it stays the same across rescans and needs no table."""
    return f"dir-{folder_id}" + (f"-{rel_dir.encode('utf-8').hex()}" if rel_dir else "")


_DIR_ID = re.compile(r"dir-([1-9][0-9]{0,17})(?:-((?:[0-9a-f]{2}){1,4096}))?")


def directory_of(raw: str) -> tuple[int, str]:
    """(library folder id, path in it) a `directory_id` names; 70 for anything else."""
    if not (m := _DIR_ID.fullmatch(raw.lower() if raw.startswith("dir-") else raw)):
        raise not_found("directory")
    try:
        rel = bytes.fromhex(m.group(2) or "").decode("utf-8")
    except UnicodeDecodeError:
        raise not_found("directory") from None
    return int(m.group(1)), rel


def path_range(rel_dir: str) -> tuple[str, str]:
    """The `rel_path`s under a directory as a range the (folder_id, rel_path) index answers: [low, high)."""
    if not rel_dir:
        return "", "\U0010ffff"
    return rel_dir + "/", rel_dir + "0"  # '0' sorts right after '/'


def node_album_uuid(raw_id: str) -> str | None:
    """The node's album (`albums.id`) a Subsonic album id is, or None for a named album or Singles (no row)."""
    if raw_id.startswith("al-singles-") or _NAMED_ID.fullmatch(raw_id):
        return None
    return uuid_of(raw_id, "al-", "album")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _year(ts: float | None) -> int | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).year


def _person(row: sqlite3.Row, prefix: str = "artist") -> str:
    return row[f"{prefix}_display_name"] or row[f"{prefix}_handle"] or row["artist_did"]


# ---- entries ----------------------------------------------------------------------------------------------------


Liked = Mapping[int, float] | set[int] | frozenset[int]


def file_tags(row: sqlite3.Row) -> dict[str, Any]:
    tags = json.loads(row["file_tags"] or "{}")
    return tags if isinstance(tags, dict) else {}


def _text(tags: dict[str, Any], name: str) -> str | None:
    value = tags.get(name)
    return value if isinstance(value, str) and value.strip() else None


def _number(tags: dict[str, Any], name: str) -> int | None:
    value = tags.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _gain(tags: dict[str, Any], name: str) -> float | None:
    value = tags.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def album_id_of(row: sqlite3.Row) -> str:
    """The Subsonic album a song row is on (see `members`)."""
    if row["album_uuid"]:
        return f"al-{row['album_uuid']}"
    if row["source"] == "library":
        tags = file_tags(row)
        return "al-singles-" + library_artist_key(_first_name(tags.get("album_artist"), tags.get("artist")))
    return named_album_id(row["artist_did"], row["album"]) or f"al-singles-{row['artist_did']}"


def _library_place(row: sqlite3.Row) -> tuple[int, str] | None:
    """(library folder id, path in it) of a library song row, None for uploads (or rows without them)."""
    keys = row.keys()
    if "library_path" not in keys or row["library_path"] is None:
        return None
    return row["library_folder_id"], row["library_path"]


def _library_people(row: sqlite3.Row, tags: dict[str, Any]) -> tuple[str, str]:
    """(track artist, album artist) of a library song as `members` groups it ('' for unknown)."""
    album_artist = ""
    if row["album_uuid"] and "library_album_artist" in row.keys():
        album_artist = _first_name(row["library_album_artist"])
    return (_first_name(tags.get("artist"), tags.get("album_artist")),
            album_artist or _first_name(tags.get("album_artist"), tags.get("artist")))


def replay_gain(row: sqlite3.Row, tags: dict[str, Any]) -> dict[str, float] | None:
    """OpenSubsonic `ReplayGain`: the file's ReplayGain tags where it has them, else the node's own loudness
    analysis (its gain to the node's target and sample peak). Album values come from tags only."""
    gain: dict[str, float] = {}
    track_gain = _gain(tags, "rg_track_gain")
    if track_gain is None and row["track_gain_db"] is not None:
        track_gain = round(float(row["track_gain_db"]), 2)
    track_peak = _gain(tags, "rg_track_peak")
    if track_peak is None and row["sample_peak"] is not None:
        track_peak = round(float(row["sample_peak"]), 6)
    for name, value in (("trackGain", track_gain), ("trackPeak", track_peak),
                        ("albumGain", _gain(tags, "rg_album_gain")), ("albumPeak", _gain(tags, "rg_album_peak"))):
        if value is not None and not (name.endswith("Peak") and value < 0):
            gain[name] = value
    return gain or None


def song(row: sqlite3.Row, liked: Liked = frozenset()) -> dict[str, Any]:
    """A Subsonic `Child` for a track. suffix/contentType/size describe the original (what download sends);
    transcoded* name the MP3 rendition that stream sends when the original is not web-playable. `liked` is the
    caller's liked tracks with the time of each like (`liked_ids`); a plain set of ids also works (the like time is
    then unknown and the track's creation time stands in).

    Artist, album artist, year, disc and MusicBrainz id come from the file's tags when the uploader set them; the
    artist id is always the uploader's (the node's artists are its accounts)."""
    did = row["artist_did"]
    tags = file_tags(row)
    album_id = album_id_of(row)
    album = row["album_title"] or (row["album"] or "").strip() or SINGLES
    genres = json.loads(row["tags"] or "[]")
    duration = round(float(row["duration"] or 0))
    size = row["original_size"]
    track_id = row["id"]
    artist_id = album_artist_id = f"ar-{did}"
    place = _library_place(row)
    if row["source"] == "library":  # the people the tags name, never the library's account
        track_artist, lib_album_artist = _library_people(row, tags)
        artist_id = "ar-" + library_artist_key(track_artist)
        album_artist_id = "ar-" + library_artist_key(lib_album_artist)
        artist, album_artist = shown_name(track_artist), shown_name(lib_album_artist)
    else:
        person = artist_name(row)
        artist = _text(tags, "artist") or person
        album_artist = _text(tags, "album_artist") or person
    starred = None
    if track_id in liked:
        starred = _iso(liked[track_id]) if isinstance(liked, Mapping) else _iso(row["created_at"])
    entry: dict[str, Any] = {
        "id": f"tr-{track_id}",
        # A library song's parent is the directory its file is in (getMusicDirectory walks the real tree).
        "parent": album_id if place is None else directory_id(place[0], place[1].rpartition("/")[0]),
        "isDir": False,
        "title": row["title"],
        "album": album,
        "artist": artist,
        "track": row["album_position"] + 1 if row["album_position"] is not None else _number(tags, "track_number"),
        "discNumber": _number(tags, "disc_number"),
        "year": _number(tags, "year") or _year(row["created_at"]),
        "genre": genres[0] if genres else None,
        "coverArt": f"tr-{track_id}" if row["display_sha"] else album_id,
        "size": size,
        "contentType": row["original_mime"],
        "suffix": row["original_ext"],
        "duration": duration,
        "bitRate": int(size * 8 / duration / 1000) if size and duration else None,
        "bitDepth": row["bit_depth"] or None,
        "samplingRate": row["sample_rate"] or None,
        "channelCount": row["channels"] or None,
        "path": (place[1] if place is not None
                 else f"{artist}/{album}/{row['title']}.{row['original_ext']}".replace("\\", "_")),
        "playCount": row["play_count"],
        "created": _iso(row["created_at"]),
        "starred": starred,
        "albumId": album_id,
        "artistId": artist_id,
        "type": "music",
        "isVideo": False,
        # OpenSubsonic additions
        "mediaType": "song",
        "sortName": _text(tags, "title_sort"),
        "musicBrainzId": _text(tags, "mb_track_id"),
        "genres": [{"name": t} for t in genres],
        "artists": [{"id": artist_id, "name": artist}],
        "displayArtist": artist,
        "albumArtists": [{"id": album_artist_id, "name": album_artist}],
        "displayAlbumArtist": album_artist,
        "replayGain": replay_gain(row, tags),
    }
    if (sent := announced(row)) is not None:  # what a plain stream sends instead (plyrd.subsonic.streaming)
        entry["transcodedSuffix"], entry["transcodedContentType"] = sent
    return entry


def _album_genres(row: sqlite3.Row) -> list[str]:
    """The album's genres: its songs' tags, most used first (ties: first seen, the songs of a node's album taken
    oldest track first, others newest first), at most ten."""
    members = json.loads(row["member_tags"] or "[]")  # [track id, created_at, tags] of each song
    if row["sid"].startswith("al-singles-") or _NAMED_ID.fullmatch(row["sid"]):
        members.sort(key=lambda m: (-m[1], -m[0]))
    else:
        members.sort(key=lambda m: m[0])
    counts: dict[str, int] = {}
    for _, _, tags in members:
        for tag in tags if isinstance(tags, list) else []:
            if isinstance(tag, str):
                counts[tag] = counts.get(tag, 0) + 1
    return sorted(counts, key=lambda t: -counts[t])[:10]


def album(row: sqlite3.Row) -> dict[str, Any]:
    """An `AlbumID3`, with the `Child` fields too (title, isDir, parent) so getAlbumList (folder style) can use it.
    Its artist is the album artist its songs' tags name, else the uploader; its year the tags' year, else the
    year it was made."""
    did = row["artist_did"]
    release = not row["sid"].startswith("al-singles-")  # Singles gather releases: no one album artist or id
    library = is_library_key(did)  # its artist is the one `members` grouped it under
    artist = (row["tag_album_artist"] if release and not library else None) or _person(row)
    genres = _album_genres(row)
    entry: dict[str, Any] = {
        "id": row["sid"],
        "name": row["name"],
        "title": row["name"],
        "album": row["name"],
        "isDir": True,
        "parent": f"ar-{did}",
        "artist": artist,
        "artistId": f"ar-{did}",
        "coverArt": row["sid"],
        "songCount": row["song_count"],
        "duration": round(float(row["duration"] or 0)),
        "playCount": row["play_count"],
        "created": _iso(row["created_at"]),
        "year": row["year"],
        "genre": genres[0] if genres else None,
        # OpenSubsonic additions
        "genres": [{"name": g} for g in genres],
        "artists": [{"id": f"ar-{did}", "name": artist}],
        "displayArtist": artist,
        "musicBrainzId": row["mb_album_id"] if release else None,
        "sortName": row["album_sort"] if release else None,
        # A library album the scanner found to be a compilation (flagged, or by several artists) is Various Artists'.
        "isCompilation": release and (bool(row["compilation"]) or (library and artist == VARIOUS_ARTISTS)),
    }
    return entry


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


async def liked_ids(db: Database, did: str) -> dict[int, float]:
    """The caller's liked tracks, each with when they liked it (what `song` answers as `starred`)."""
    found = await db.fetchall("SELECT track_id, created_at FROM likes WHERE did = ?", (did,))
    return {r["track_id"]: r["created_at"] for r in found}


def read_liked(conn: sqlite3.Connection, did: str | None, songs: Sequence[sqlite3.Row]) -> dict[int, float]:
    """`liked_ids` of these songs only (what an answer listing them needs), on a reader's thread."""
    if did is None or not songs:
        return {}
    found = rows(conn, "SELECT track_id, created_at FROM likes WHERE did = ?"
                       " AND track_id IN (SELECT value FROM json_each(?))", (did, json.dumps([s["id"] for s in songs])))
    return {r["track_id"]: r["created_at"] for r in found}


async def get_song(db: Database, raw_id: str, audience: Audience) -> sqlite3.Row:
    found = await song_rows(db, Where.of("t.id = ?", track_id_of(raw_id)) & songs(audience))
    if not found:
        raise not_found("song")
    return found[0]


async def song_count(db: Database, audience: Audience) -> int:
    """The node's own songs the caller may stream (getScanStatus): not the network's tracks known by reference."""
    where = songs(audience) & on_node()
    row = await db.fetchone(f"SELECT count(*) AS n FROM tracks t WHERE {where.sql}", where.params)
    return row["n"] if row else 0


_ARTISTS = f"""
    SELECT m.artist_did, u.handle AS artist_handle, {_artist_name_sql("min(m.artist_name)")} AS artist_display_name,
           count(DISTINCT m.sid) AS album_count
    FROM members m LEFT JOIN users u ON u.did = m.artist_did"""


async def artists(db: Database, audience: Audience, folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """The artists with albums the caller may see (a library artist: an album artist of the music folder)."""
    return await db.read_fn(read_artists, snapshot.of(db), audience, folder)


def read_artists(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience,
                 folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """`artists` on a reader's thread, computed once per catalog change for each class of callers."""
    def read(c: sqlite3.Connection) -> list[sqlite3.Row]:
        cte, params = members(audience, folder)
        return rows(c, cte + _ARTISTS + " GROUP BY m.artist_did", params)

    return snaps.get(conn, ("artists", snapshot.audience_class(conn, audience), folder), read)  # type: ignore[no-any-return]


def index(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """Artists grouped by the first letter of their name ('#' for anything else), as getArtists answers."""
    return index_entries([artist(r) for r in rows])


def index_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with a name (artists, directories) grouped by its first letter ('#' for anything else)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda a: (a["name"].casefold(), a["id"])):
        first = entry["name"][:1].upper()
        groups.setdefault(first if first.isalpha() else "#", []).append(entry)
    return [{"name": k, "artist": v} for k, v in sorted(groups.items())]


async def get_artist(db: Database, raw_id: str, audience: Audience) -> tuple[dict[str, Any], list[sqlite3.Row]]:
    did = artist_did_of(raw_id)
    sql, params = album_select(audience, only=only_artist(did))
    albums = await db.fetchall(sql + " WHERE alb.artist_did = ? ORDER BY alb.name = ? , lower(alb.name)",
                               [*params, did, SINGLES])
    if not albums:
        if is_library_key(did) and (name := await _library_artist_name(db, did, audience)) is not None:
            # An artist only on others' albums (a compilation's track artist): their songs' artistId still opens.
            return {"id": f"ar-{did}", "name": name, "coverArt": f"ar-{did}", "albumCount": 0}, []
        raise not_found("artist")
    first = albums[0]
    entry = {"id": f"ar-{did}", "name": _person(first), "coverArt": f"ar-{did}", "albumCount": len(albums)}
    return entry, albums


async def _library_artist_name(db: Database, key: str, audience: Audience) -> str | None:
    """The name of a library artist that some song the caller may see names as its artist, else None."""
    where = songs(audience) & Where.of(f"{LIBRARY_TRACK} AND hex(lower({LIB_TRACK_ARTIST})) = ?",
                                       key.removeprefix(LIB_PREFIX))
    row = await db.fetchone(f"SELECT min({LIB_TRACK_ARTIST}) AS name FROM tracks t WHERE {where.sql}"
                            " HAVING count(*) > 0", where.params)
    return None if row is None else shown_name(row["name"])


async def get_album(db: Database, raw_id: str, audience: Audience) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    return await db.read_fn(read_album, snapshot.of(db), raw_id, audience)


def read_album(conn: sqlite3.Connection, snaps: snapshot.Snapshots | None, raw_id: str,
               audience: Audience) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    """An album's row and its songs (getAlbum), on a reader's thread: the row from the album summaries when they
    are computed for this catalog (a getAlbum alone never computes them all), its songs by their own indexes."""
    found = read_albums_by_id(conn, snaps, audience, [raw_id])
    if not found:
        raise not_found("album")
    row = found[0]
    if raw_id.startswith("al-singles-") and is_library_key(row["artist_did"]):
        where = (listed(audience) & Where.of("x.album_id IS NULL") & Where.of(
            f"{LIBRARY_TRACK} AND hex(lower({LIB_SINGLE_ARTIST})) = ?", row["artist_did"][len(LIB_PREFIX):]))
        return row, read_song_rows(conn, where, "ORDER BY lf.folder_id, lf.rel_path, t.id")
    if raw_id.startswith("al-singles-"):
        where = (Where.of("t.artist_did = ?", row["artist_did"]) & listed(audience) & Where.of("x.album_id IS NULL")
                 & Where.of(f"{_NAMED_KEY} = ''"))
        return row, read_song_rows(conn, where, "ORDER BY t.created_at DESC, t.id DESC")
    if named := _NAMED_ID.fullmatch(raw_id):
        where = (Where.of("t.artist_did = ?", named.group(1)) & listed(audience) & Where.of("x.album_id IS NULL")
                 & Where.of(f"{_NAMED_KEY} = ?", named.group(2)))
        return row, read_song_rows(conn, where, _NAMED_ORDER)
    where = Where.of("x.album_id = ?", raw_id.removeprefix("al-")) & songs(audience)
    return row, read_song_rows(conn, where, "ORDER BY x.position")


# A named album's songs in the order their tags give (disc, then track number), then as they were added.
_NAMED_ORDER = ("ORDER BY coalesce(json_extract(t.file_tags, '$.disc_number'), 1),"
                " coalesce(json_extract(t.file_tags, '$.track_number'), 1000000), t.created_at, t.id")


LIST_TYPES = ("random", "newest", "alphabeticalByName", "alphabeticalByArtist", "frequent", "recent", "starred",
              "highest", "byYear", "byGenre")


async def album_list(db: Database, params: dict[str, str], audience: Audience,
                     folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """getAlbumList(2): `type` picks the order; frequent = the node's play counts, recent = the caller's plays."""
    return await db.read_fn(read_album_list, snapshot.of(db), params, audience, folder)


def read_album_list(conn: sqlite3.Connection, snaps: snapshot.Snapshots, params: dict[str, str], audience: Audience,
                    folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """`album_list` on a reader's thread."""
    return read_album_page(conn, snaps, params, audience, folder)[1]


def read_album_page(conn: sqlite3.Connection, snaps: snapshot.Snapshots, params: dict[str, str], audience: Audience,
                    folder: Where = EVERYWHERE) -> tuple[AlbumSummaries, list[sqlite3.Row]]:
    """An album list's page and the summaries it comes from (for their kept entries), on a reader's thread. Every
    album's row comes from the album summaries (computed once per catalog change), already in the orders of newest,
    alphabeticalByName/-Artist and frequent: those pages are slices. The types that ask something of each song (the
    caller's last play, their like, its likes, its genre) read only that, one indexed read, and tally it per album
    in memory."""
    kind = params.get("type")
    if not kind:
        raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: type")
    size = bounded(params.get("size"), default=10)
    offset = bounded(params.get("offset"), default=0, maximum=10**9, name="offset")
    if kind == "byYear":
        if not params.get("fromYear") or not params.get("toYear"):
            raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: fromYear and toYear")
        lo = bounded(params.get("fromYear"), default=0, maximum=9999, name="fromYear")
        hi = bounded(params.get("toYear"), default=9999, maximum=9999, name="toYear")
    elif kind == "byGenre":
        genre = params.get("genre")
        if not genre:
            raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: genre")
    elif kind not in LIST_TYPES:
        raise SubsonicError(GENERIC, f"unknown album list type {kind!r}; one of {', '.join(LIST_TYPES)}")
    albums = album_summaries(conn, snaps, audience, folder)
    chosen: Sequence[sqlite3.Row]
    if kind == "random":
        return albums, random.sample(albums.newest, min(size, max(0, len(albums.newest) - offset)))
    if kind == "newest":
        chosen = albums.newest
    elif kind == "alphabeticalByName":
        chosen = albums.by_name
    elif kind == "alphabeticalByArtist":
        chosen = albums.by_artist
    elif kind == "frequent":
        chosen = albums.frequent
    elif kind == "byYear":  # an album's year: its songs' tagged year, else the year it was made
        low, high = min(lo, hi), max(lo, hi)
        chosen = sorted((r for r in albums.newest if low <= r["year"] <= high),
                        key=lambda r: (-r["year"] if lo > hi else r["year"], r["created_at"], r["sid"]))
    elif kind == "recent":  # the caller's last play of any of the album's songs
        last = albums.tallied(rows(conn, "SELECT track_id, max(played_at) FROM play_events WHERE listener = ?"
                                         " GROUP BY track_id", (audience.did,)), max)
        chosen = sorted((albums.by_sid[sid] for sid in last), key=lambda r: (-last[r["sid"]], r["sid"]))
    elif kind == "highest":  # likes of the album's songs, by anyone
        likes = albums.tallied(rows(conn, "SELECT track_id, count(*) FROM likes GROUP BY track_id"),
                               lambda a, b: a + b)
        chosen = sorted((albums.by_sid[sid] for sid in likes if likes[sid] > 0),
                        key=lambda r: (-likes[r["sid"]], r["sid"]))
    else:  # starred (albums with a song the caller likes), byGenre (with a song of that genre): by name
        if kind == "starred":
            found = rows(conn, "SELECT track_id, 1 FROM likes WHERE did = ?", (audience.did,))
        else:
            found = rows(conn, "SELECT track_id, 1 FROM track_tags WHERE tag = ?", (genre.strip().lower(),))
        having = albums.tallied(found, max)
        chosen = sorted((albums.by_sid[sid] for sid in having), key=lambda r: r["by_name"])
    return albums, list(chosen[offset:offset + size])


# A song's year as `song` answers it: its date tag's, else the year it was uploaded.
_SONG_YEAR = ("coalesce(CAST(json_extract(t.file_tags, '$.year') AS INTEGER),"
              " CAST(strftime('%Y', t.created_at, 'unixepoch') AS INTEGER))")


async def random_songs(db: Database, params: dict[str, str], audience: Audience,
                       folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    return await db.read_fn(read_random_songs, snapshot.of(db), params, audience, folder)


def read_random_songs(conn: sqlite3.Connection, snaps: snapshot.Snapshots, params: dict[str, str],
                      audience: Audience, folder: Where = EVERYWHERE) -> list[sqlite3.Row]:
    """getRandomSongs on a reader's thread: listed songs without the caller's hidden tags. Without a genre or years,
    picked among the ids of every such song, kept once per catalog change (and per set of hidden tags); then only
    the picked songs' rows are read. With them, SQLite picks."""
    size = bounded(params.get("size"), default=10)
    where = listed(audience) & folder
    if genre := params.get("genre"):
        where &= tagged(genre.strip().lower())
    if params.get("fromYear"):
        year = bounded(params.get("fromYear"), default=0, maximum=9999, name="fromYear")
        where &= Where.of(f"{_SONG_YEAR} >= ?", year)
    if params.get("toYear"):
        year = bounded(params.get("toYear"), default=9999, maximum=9999, name="toYear")
        where &= Where.of(f"{_SONG_YEAR} <= ?", year)
    hidden = read_hidden_tags(conn, audience)
    where &= without_tags(hidden)
    if genre or params.get("fromYear") or params.get("toYear"):
        return read_song_rows(conn, where, "ORDER BY random() LIMIT ?", [size])

    def read(c: sqlite3.Connection) -> list[int]:
        return [r[0] for r in rows(c, f"SELECT t.id FROM tracks t WHERE {where.sql}", where.params)]

    ids: list[int] = snaps.get(conn, ("songs", snapshot.audience_class(conn, audience), folder, tuple(hidden)), read)
    picked = random.sample(ids, min(size, len(ids)))
    found = {r["id"]: r for r in read_song_rows(conn, Where.of("t.id IN (SELECT value FROM json_each(?))",
                                                                json.dumps(picked)))}
    return [found[i] for i in picked if i in found]


async def genres(db: Database, audience: Audience) -> list[dict[str, Any]]:
    cte, params = members(audience)
    shown = listed(audience)
    rows = await db.fetchall(cte + f"""
        SELECT g.tag, count(DISTINCT t.id) AS songs, count(DISTINCT m.sid) AS albums
        FROM track_tags g JOIN tracks t ON t.id = g.track_id JOIN members m ON m.track_id = t.id
        WHERE {shown.sql} GROUP BY g.tag ORDER BY songs DESC, g.tag""", [*params, *shown.params])
    return [{"value": r["tag"], "songCount": r["songs"], "albumCount": r["albums"]} for r in rows]


async def starred(db: Database, audience: Audience) -> list[sqlite3.Row]:
    """The caller's liked songs in their list order."""
    where = Where.of("l.did = ?", audience.did) & songs(audience)
    return await song_rows(db, where, "ORDER BY l.position, l.created_at DESC",
                           join="JOIN likes l ON l.track_id = t.id")


def _playlist_select(audience: Audience) -> tuple[str, list[Any]]:
    """Playlists with how many of their songs the caller may play, and for how long; WHERE on `p` goes after."""
    where = songs(audience)
    return f"""
SELECT p.*, u.handle AS owner_handle,
       (SELECT count(*) FROM playlist_items i JOIN tracks t ON t.id = i.track_id
         WHERE i.playlist_id = p.id AND {where.sql}) AS song_count,
       (SELECT coalesce(sum(t.duration), 0) FROM playlist_items i JOIN tracks t ON t.id = i.track_id
         WHERE i.playlist_id = p.id AND {where.sql}) AS duration
FROM playlists p JOIN users u ON u.did = p.owner_did
""", [*where.params, *where.params]


async def playlists(db: Database, audience: Audience, username: str | None) -> list[sqlite3.Row]:
    """The caller's playlists (private ones too) and everyone else's public ones; `username` narrows to one owner."""
    sql, args = _playlist_select(audience)
    shown = playlist_visible(audience.did)
    sql += f" WHERE {shown.sql}"
    args += shown.params
    if username:
        sql += " AND (p.owner_did = ? OR u.handle = ?)"
        args += [username, username.lower().lstrip("@")]
    return await db.fetchall(sql + " ORDER BY p.owner_did != ?, p.created_at DESC, p.id", [*args, audience.did])


async def get_playlist(db: Database, raw_id: str, audience: Audience) -> tuple[sqlite3.Row, list[sqlite3.Row]]:
    playlist_id = uuid_of(raw_id, "pl-", "playlist")
    sql, args = _playlist_select(audience)
    row = await db.fetchone(sql + " WHERE p.id = ?", [*args, playlist_id])
    if row is None or not may_see_playlist(row, audience.did):
        raise not_found("playlist")  # someone else's private playlist does not exist for the caller
    where = Where.of("i.playlist_id = ?", playlist_id) & songs(audience)
    return row, await song_rows(db, where, "ORDER BY i.position", join="JOIN playlist_items i ON i.track_id = t.id")


# ---- files ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    sha256: str
    mime: str
    download_name: str | None = None


def stream_file(row: sqlite3.Row) -> File:
    """What stream sends: the MP3 rendition when there is one (the original is not web-playable), else the original."""
    if row["web_sha"]:
        return File(row["web_sha"], "audio/mpeg")
    return File(row["original_sha"], row["original_mime"])


def original(row: sqlite3.Row) -> File:
    if (place := _library_place(row)) is not None:  # a file of the music folder: under its own name
        return File(row["original_sha"], row["original_mime"], place[1].rpartition("/")[2])
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


async def _first_art(db: Database, where: Where, order: str = "", join: str = "") -> list[sqlite3.Row]:
    """The artwork columns of the first track with artwork that meets `where`."""
    where &= Where.of("t.display_sha IS NOT NULL")
    return await db.fetchall(f"SELECT t.display_sha, t.thumb_sha, t.image_sha, t.image_mime FROM tracks t {join}"
                             f" WHERE {where.sql} {order} LIMIT 1", where.params)


async def cover_art(db: Database, raw_id: str, size: int | None, audience: Audience) -> File:
    """Artwork of a song, album (its cover, else its first track's; a named album: its first track's), artist or
    Singles (their newest track's artwork) or playlist (its cover, else its first track's)."""
    rows: list[sqlite3.Row] = []
    if raw_id.startswith("tr-"):
        rows = await _first_art(db, Where.of("t.id = ?", track_id_of(raw_id)) & visible(audience))
    elif named := _NAMED_ID.fullmatch(raw_id):
        where = (Where.of("t.artist_did = ?", named.group(1)) & listed(audience) & Where.of(f"{_NAMED_KEY} = ?",
                 named.group(2)) & Where.of("NOT EXISTS (SELECT 1 FROM album_tracks x WHERE x.track_id = t.id)"))
        rows = await _first_art(db, where, _NAMED_ORDER)
    elif raw_id.startswith("ar-") and is_library_key(key := artist_did_of(raw_id)):
        # A library artist's image: their first album's cover (getArtist's order), else their songs' artwork.
        _, albums = await get_artist(db, raw_id, audience)
        for album_row in albums:
            try:
                return await cover_art(db, album_row["sid"], size, audience)
            except SubsonicError:
                continue
        rows = await _first_art(db, artist_tracks([key]) & listed(audience), "ORDER BY t.id")
    elif raw_id.startswith("al-singles-lib~"):
        _, singles = await get_album(db, raw_id, audience)
        rows = await _first_art(db, Where.of("t.id IN (SELECT value FROM json_each(?))",
                                             json.dumps([r["id"] for r in singles])), "ORDER BY t.id")
    elif raw_id.startswith(("ar-", "al-singles-")):
        did = artist_did_of("ar-" + raw_id.removeprefix("al-singles-")) if raw_id.startswith("al-singles-") \
            else artist_did_of(raw_id)
        rows = await _first_art(db, Where.of("t.artist_did = ?", did) & listed(audience), "ORDER BY t.created_at DESC")
    elif raw_id.startswith("al-"):
        album_id = uuid_of(raw_id, "al-", "album")
        shown = Where.of("a.id = ?", album_id) & album_visible(audience)
        rows = await db.fetchall("SELECT display_sha, thumb_sha, image_sha, image_mime FROM albums a"
                                 f" WHERE {shown.sql}", shown.params)
        rows += await _first_art(db, Where.of("x.album_id = ?", album_id) & visible(audience), "ORDER BY x.position",
                                 join="JOIN album_tracks x ON x.track_id = t.id")
    elif raw_id.startswith("dir-"):
        # A library directory's: the artwork of its first song (by path) that has any, its album's cover first.
        folder_id, rel = directory_of(raw_id)
        low, high = path_range(rel)
        where = songs(audience) & Where.of("lf.folder_id = ? AND lf.rel_path >= ? AND lf.rel_path < ?",
                                           folder_id, low, high) & Where.of(
            "t.display_sha IS NOT NULL OR (SELECT a.display_sha FROM albums a WHERE a.id = x.album_id) IS NOT NULL")
        first = await db.fetchone("SELECT t.id, x.album_id FROM library_files lf JOIN tracks t ON t.id = lf.track_id"
                                  f" LEFT JOIN album_tracks x ON x.track_id = t.id WHERE {where.sql}"
                                  " ORDER BY lf.rel_path LIMIT 1", where.params)
        if first is not None:
            return await cover_art(db, f"al-{first['album_id']}" if first["album_id"] else f"tr-{first['id']}",
                                   size, audience)
    elif raw_id.startswith("pl-"):
        row, _ = await get_playlist(db, raw_id, audience)
        rows = [row]
        rows += await _first_art(db, Where.of("i.playlist_id = ?", row["id"]) & visible(audience),
                                 "ORDER BY i.position", join="JOIN playlist_items i ON i.track_id = t.id")
    for row in rows:
        if (found := _pick(row, size)) is not None:
            return found
    raise not_found("cover art")
