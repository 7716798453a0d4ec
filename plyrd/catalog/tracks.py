"""Tracks: the read model every reader of tracks shares, and deleting a track with its files.

The read model is what reading a track gives and who may see which. Feeds, pages, embeds, oEmbed, albums,
playlists, likes, the queue, search and Subsonic all take it from here:

- the select: `TRACK_SELECT` (a track, its artist, the album it is in, its featured artists as people, and the
  audio blob its record keeps on the artist's PDS), `TRACK_ALBUM_SELECT` (the album's position and the original
  file's size too, for Subsonic), and plyr.fm's JSON shape of a row (its TrackResponse), `track_json`;
- who is looking: an `Audience` (nobody signed in, a signed-in person, perhaps one of the node's admins; being a
  track's owner is a clause comparing `t.artist_did` with the audience's DID, not a kind of audience);
- which tracks they see, as SQL conditions (`Where`): `visible` (may open it by id: its page, embed and oEmbed, and
  the lists that name tracks: an artist's page, an album, a playlist, a liked list, the queue), `listed` (what
  discovery shows them: feeds, tags, top, search, similar, Subsonic's lists), `playable` (ready to stream);
- the viewer's hidden tags (`hidden_tags`, default ["ai"]) and the filter that leaves out tracks carrying them
  (`without_tags`), which discovery applies.

A new kind of track (a taken-down track, another node's track) is a clause in `visible` for who may open it, and
in `listed` if discovery treats it differently, plus a row in tests/test_visibility.py. Library tracks (files of the
node's music folder, `source = 'library'`, plyrd.library) are the first: only an audience with `library` (signed-in
people allowed by auth.library_listeners, and admins; plyrd.auth.service `AuthService.audience`) sees them, and
nobody else can tell they exist. What is shared outside the node (embeds, oEmbed, OG tags) is read as `ANONYMOUS`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..atproto.outbox import synced_field_sql
from ..db import Database
from ..errors import Forbidden, InvalidInput, NotFound
from ..library import LIBRARY_DID
from ..storage import BlobStore
from .artwork import Artwork
from .downloads import downloadable, effective_policy
from .labels import is_sensitive
from .lists import album_ids_of_track, publish_album
from .publishing import unpublish_track
from .revisions import drop_revisions

# Featured artists as plyr.fm shows them ({did, handle, display_name, avatar_url}, in the order given), from the stored
# [{did, handle}] (plyr.fm's records may hold bare DIDs) and what the node knows of each person now.
FEATURES_SQL = """CASE WHEN t.features = '[]' THEN '[]' ELSE (
  SELECT json_group_array(json_object(
           'did', fd.did, 'handle', coalesce(fu.handle, fd.handle, fd.did),
           'display_name', coalesce(fu.display_name, fu.handle, fd.handle, fd.did), 'avatar_url', fu.avatar_url))
  FROM (SELECT CASE f.type WHEN 'object' THEN f.value ->> '$.did' ELSE f.value END AS did,
               CASE f.type WHEN 'object' THEN f.value ->> '$.handle' END AS handle
        FROM json_each(t.features) f WHERE f.type IN ('object', 'text')) fd
  LEFT JOIN users fu ON fu.did = fd.did WHERE fd.did IS NOT NULL) END"""

PDS_BLOB_SQL = synced_field_sql("fm.plyr.track", "t.artist_did", "t.rkey", '$.audioBlob.ref."$link"')

# A remote track's audioUrl and imageUrl as its record gives them (https, checked): what the node relays and shows when
# it holds no audio blob (a record with only an audioUrl) or cover for it. NULL for every other track.
REMOTE_URLS_SQL = """CASE WHEN t.source = 'remote' THEN (SELECT rt.audio_url FROM remote_tracks rt
                                                          WHERE rt.track_id = t.id) END AS remote_audio_url,
       CASE WHEN t.source = 'remote' THEN (SELECT rt.image_url FROM remote_tracks rt
                                            WHERE rt.track_id = t.id) END AS remote_image_url"""

# `artist_download_policy` is the artist's default download policy; with the track's own `download_policy` (NULL:
# the artist's) it decides who may download the original (plyrd.catalog.downloads). `ta`/`al`: the album the track
# is on (a track is on at most one); `pds_blob_cid`: the audio blob its record keeps on the artist's PDS, once the
# PDS has accepted that record.
# Every column of `tracks` but `peaks` (tests/test_track_columns.py keeps it in step with the schema): lists read
# these, and `NULL AS peaks`. A row's 1,000 waveform peaks are ~8 KB of JSON, which a list never shows: reading them
# made every row a string of that size in Python (a 200-song Subsonic read: 2.9 ms with them, 2.4 ms without).
TRACK_COLUMNS = (
    "id", "artist_did", "title", "album", "description", "tags", "original_sha", "original_ext", "original_mime",
    "web_sha", "image_sha", "image_mime", "thumb_sha", "display_sha", "container", "codec", "duration", "sample_rate",
    "channels", "bit_depth", "bitrate", "lossless", "file_tags", "loudness_lufs", "track_gain_db", "sample_peak",
    "status", "created_at", "updated_at", "rkey", "record_uri", "record_cid", "unlisted", "features", "self_labels",
    "play_count", "download_policy", "lyrics", "source", "taken_down", "taken_down_at", "purged_at", "operator_labels",
)
_WITHOUT_PEAKS = ", ".join(f"t.{c}" for c in TRACK_COLUMNS) + ", NULL AS peaks"

TRACK_SELECT = f"""
SELECT t.*, u.handle AS artist_handle, u.display_name AS artist_display_name,
       u.download_policy AS artist_download_policy,
       u.avatar_url AS artist_avatar_url, u.pds_url AS artist_pds_url,
       (SELECT p.prefs ->> '$.support_url' FROM preferences p WHERE p.did = t.artist_did) AS artist_support_url,
       ta.album_id AS album_uuid, al.slug AS album_slug, al.title AS album_title,
       al.display_sha AS album_display_sha, al.thumb_sha AS album_thumb_sha,
       {FEATURES_SQL} AS features_view,
       {PDS_BLOB_SQL} AS pds_blob_cid,
       {REMOTE_URLS_SQL}
FROM tracks t JOIN users u ON u.did = t.artist_did
LEFT JOIN album_tracks ta ON ta.track_id = t.id LEFT JOIN albums al ON al.id = ta.album_id
"""

# The same row with the album the track is in (album_tracks x, albums a; a track is in at most one) and the size of
# its original file: what a Subsonic `Child` needs besides.
# A list of tracks: the same row without the waveform peaks (track_json's `peaks=False`).
TRACK_LIST_SELECT = TRACK_SELECT.replace("SELECT t.*,", f"SELECT {_WITHOUT_PEAKS},", 1)

TRACK_ALBUM_SELECT = f"""
SELECT {_WITHOUT_PEAKS}, u.handle AS artist_handle, u.display_name AS artist_display_name,
       u.download_policy AS artist_download_policy,
       x.album_id AS album_uuid, x.position AS album_position, a.title AS album_title, ob.size AS original_size
FROM tracks t JOIN users u ON u.did = t.artist_did
LEFT JOIN album_tracks x ON x.track_id = t.id LEFT JOIN albums a ON a.id = x.album_id
LEFT JOIN blobs ob ON ob.sha256 = t.original_sha
"""


@dataclass(frozen=True)
class Audience:
    """Who is looking at tracks: nobody signed in (`ANONYMOUS`), or a signed-in person, perhaps an admin.
    `library`: they may see the node's library tracks (made only by plyrd.auth.service `AuthService.audience`)."""

    did: str | None = None
    is_admin: bool = False
    library: bool = False


ANONYMOUS = Audience()
# Everything any listener of the node may discover: what the search index holds (each search applies the
# searcher's own audience again when it reads the results).
NODE_LISTENERS = Audience(library=True)

LIBRARY_SOURCE = "library"
# Another repo's track that the node knows by reference (plyrd.network.remote_tracks): played from its artist's PDS.
REMOTE_SOURCE = "remote"
# The DIDs whose repos are not active (users.repo_status set from #account events or a PDS's answer).
INACTIVE_REPOS = "SELECT did FROM users WHERE repo_status IS NOT NULL"


@dataclass(frozen=True)
class Where:
    """An SQL condition made of terms that must all hold, with the parameters of their `?`s in order.

    `a & b` is both; `.sql` is the text to put after WHERE or AND ("1" when there is no term)."""

    terms: tuple[str, ...] = ()
    params: tuple[Any, ...] = ()

    @classmethod
    def of(cls, term: str, *params: Any) -> Where:
        return cls((term,), params)

    def __and__(self, other: Where) -> Where:
        return Where(self.terms + other.terms, self.params + other.params)

    @property
    def sql(self) -> str:
        return " AND ".join(f"({t})" for t in self.terms) or "1"


def visible(audience: Audience, t: str = "t") -> Where:
    """Tracks `audience` may open by id, and see in the lists that name tracks (an artist's page, an album, a
    playlist, a liked list, the queue): every track, whatever its state (a remote track whose record is gone is
    shown as unavailable), except library tracks for an audience without `library`, and tracks of repos that are
    not active (deactivated or taken down on their PDS: users.repo_status) for anyone but admins. A kind of track
    that only some may open (its owner `{t}.artist_did = audience.did`, admins, signed-in people) adds its clause
    here. The clauses are literal SQL (no parameters for these), so the search index can use them as text."""
    if audience.is_admin:  # admins see everything, taken down or not
        return Where() if audience.library else Where.of(f"{t}.source != '{LIBRARY_SOURCE}'")
    active = Where.of(f"{t}.artist_did NOT IN ({INACTIVE_REPOS})") & up(audience, t)
    if audience.library:
        return active
    return Where.of(f"{t}.source != '{LIBRARY_SOURCE}'") & active


def up(audience: Audience, t: str = "t") -> Where:
    """Not taken down by the node's admins (plyrd.moderation), except for its owner, who sees it and why. The
    term without the owner's clause (no one signed in, or the search index) is literal SQL."""
    if audience.did is None:
        return Where.of(f"{t}.taken_down IS NULL")
    return Where.of(f"({t}.taken_down IS NULL OR {t}.artist_did = ?)", audience.did)


def seen_as_owner(audience: Audience, t: str = "t") -> Where:
    """The tracks `audience` may open only because they are theirs (`up`'s owner clause): all that makes one
    person's `visible` differ from another's with the same `is_admin` and `library`. A reader that shares one answer
    among callers (plyrd.subsonic.snapshot) shares it only with callers for whom no track meets this."""
    if audience.did is None or audience.is_admin:  # admins see every track whoever owns it
        return Where.of("0")
    return Where.of(f"{t}.taken_down IS NOT NULL AND {t}.artist_did = ?", audience.did)


def album_visible(audience: Audience, a: str = "a") -> Where:
    """Albums `audience` may open: the same rule as `visible` for the albums of the node's library (grouped from
    the music folder's tags, `library_key` set), which exist only for an audience with `library`."""
    if audience.library:
        return Where()
    return Where.of(f"{a}.library_key IS NULL")


def artist_shown(did_column: str = "u.did") -> Where:
    """People who may be shown as artists (profiles, artist lists, search's artists): anyone but the node's library,
    which holds the music folder's tracks but made none of them (their artists are in the files' tags)."""
    return Where.of(f"{did_column} != '{LIBRARY_DID}'")


def on_node(t: str = "t") -> Where:
    """The node's own catalog (its uploads and library), not the network's tracks likes and follows brought here:
    what the node's totals count."""
    return Where.of(f"{t}.source != '{REMOTE_SOURCE}'")


def playable(t: str = "t") -> Where:
    """Ready to stream: the original plays in browsers, or its MP3 rendition exists ('processing' until then)."""
    return Where.of(f"{t}.status = 'ready'")


def listed(audience: Audience, t: str = "t", reach: str = "node") -> Where:
    """Tracks discovery shows `audience`: visible to them, playable, and not unlisted, from where `reach` says:

    - "node" (feeds, tags, top, similar, Subsonic's lists): the node's own catalog, uploads (and the library for an
      audience with `library`), not the network's tracks that likes and follows brought here;
    - "network" (the network feed): only those remote tracks;
    - "all" (search: a remote track is searchable once known).

    The literal terms let SQLite use the feed indexes (tracks_feed_public, tracks_feed, tracks_remote)."""
    # a taken-down track is never discovered, not even by its owner (who still opens it by id, and sees why)
    where = visible(audience, t) & playable(t) & Where.of(f"{t}.unlisted = 0") & Where.of(f"{t}.taken_down IS NULL")
    if reach == "node":
        own = f"{t}.source != '{REMOTE_SOURCE}'" if audience.library else f"{t}.source = 'upload'"
        return where & Where.of(own)
    if reach == "network":
        return where & Where.of(f"{t}.source = '{REMOTE_SOURCE}'")
    if reach == "all":
        return where
    raise ValueError(f"unknown reach {reach!r}")


def tagged(tag: str, t: str = "t") -> Where:
    """Tracks carrying this tag (already normalized: lowercase, trimmed)."""
    return Where.of(f"EXISTS (SELECT 1 FROM track_tags g WHERE g.track_id = {t}.id AND g.tag = ?)", tag)


DEFAULT_HIDDEN_TAGS = ("ai",)


async def hidden_tags(db: Database, audience: Audience) -> list[str]:
    """The tags whose tracks discovery hides from `audience`: their preference, else the default (["ai"])."""
    if audience.did is None:
        return list(DEFAULT_HIDDEN_TAGS)
    return await db.read_fn(read_hidden_tags, audience)


def read_hidden_tags(conn: sqlite3.Connection, audience: Audience) -> list[str]:
    """`hidden_tags` inside a function run on a connection's thread (Database.read_fn / write_fn)."""
    if audience.did is None:
        return list(DEFAULT_HIDDEN_TAGS)
    row = conn.execute("SELECT prefs FROM preferences WHERE did = ?", (audience.did,)).fetchone()
    if row is None:
        return list(DEFAULT_HIDDEN_TAGS)
    tags = json.loads(row["prefs"]).get("hidden_tags", DEFAULT_HIDDEN_TAGS)
    return [tag for tag in tags if isinstance(tag, str)]


def without_tags(tags: Sequence[str], t: str = "t") -> Where:
    """Leaves out tracks carrying any of these tags (no condition when there are none)."""
    if not tags:
        return Where()
    marks = ",".join("?" * len(tags))
    return Where((f"NOT EXISTS (SELECT 1 FROM track_tags h WHERE h.track_id = {t}.id AND h.tag IN ({marks}))",),
                 tuple(tags))


def track_blobs(row: sqlite3.Row) -> list[str]:
    """The files a track holds references on: its original, its web rendition once made, its artwork."""
    if row["purged_at"] is not None:  # its files went when the admins purged it (plyrd.moderation.actions)
        return []
    artwork = Artwork.of(row)
    audio = (row["web_sha"],) if is_remote(row) else (row["original_sha"], row["web_sha"])  # see is_remote
    return [sha for sha in audio if sha] + (artwork.blobs() if artwork else [])


@dataclass(frozen=True)
class AudioFile:
    """A file /audio can serve: which blob, its type, and the track it belongs to."""

    sha256: str
    mime: str
    ext: str
    track: sqlite3.Row


async def get_track_row(db: Database, track_id: int) -> sqlite3.Row:
    """The track, whoever may see it: for code that acts on it and checks its own rules (an edit, a comment).
    A read for someone uses `open_track`."""
    row = await db.fetchone(TRACK_SELECT + " WHERE t.id = ?", (track_id,))
    if row is None:
        raise NotFound(f"track {track_id} not found")
    return row


async def open_track(db: Database, track_id: int, audience: Audience) -> sqlite3.Row:
    """A track `audience` asked for by id (its page, detail, embed, oEmbed); NotFound when they may not see it,
    exactly as when it does not exist."""
    return await db.read_fn(read_track, track_id, audience)


def read_track(conn: sqlite3.Connection, track_id: int, audience: Audience) -> sqlite3.Row:
    """`open_track` inside a function run on a connection's thread (Database.read_fn / write_fn): reading it inside
    a write transaction is how a like, a comment or a play acts for `audience`."""
    where = Where.of("t.id = ?", track_id) & visible(audience)
    row = conn.execute(f"{TRACK_SELECT} WHERE {where.sql}", where.params).fetchone()
    if row is None:
        raise NotFound(f"track {track_id} not found")
    return row  # type: ignore[no-any-return]


async def open_track_by_uri(db: Database, uri: str, audience: Audience) -> sqlite3.Row:
    """A track `audience` asked for by its fm.plyr.track record's AT-URI (plyr.fm's /tracks/by-uri), as open_track."""
    if not uri:
        raise InvalidInput("add ?uri=at://... of the track's record")
    where = Where.of("t.record_uri = ?", uri) & visible(audience)
    row = await db.fetchone(f"{TRACK_SELECT} WHERE {where.sql}", where.params)
    if row is None:
        raise NotFound("track not found")
    return row


def is_remote(row: sqlite3.Row) -> bool:
    """Another repo's track known by reference: its audio is its artist's PDS blob (cached here) or an https URL;
    it holds no reference on its original_sha."""
    return bool(row["source"] == REMOTE_SOURCE)


def is_library(row: sqlite3.Row) -> bool:
    """A track of the node's music folder (plyrd.library): never published, seen only by `Audience.library`."""
    return bool(row["source"] == LIBRARY_SOURCE)


def artist_name(row: sqlite3.Row) -> str:
    """Who made the track as people read it: the artist's name, or a library track's tagged artist (its artist_did
    is the node's library, which made nothing)."""
    if is_library(row):
        tags = orjson.loads(row["file_tags"] or "{}")
        return tags.get("artist") or tags.get("album_artist") or "Unknown artist"
    if name := row["artist_display_name"] or row["artist_handle"]:  # (no need to decode the file's tags)
        return str(name)
    return orjson.loads(row["file_tags"] or "{}").get("artist") or row["artist_did"]


def iso_time(ts: float | None) -> str | None:
    """Unix seconds as plyr.fm's API writes times (`datetime.isoformat()` in UTC)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def album_summary(row: sqlite3.Row, public_url: str) -> dict[str, Any] | None:
    """plyr.fm's AlbumSummary of the album a TRACK_SELECT row is on, or None: its cover, else (as plyr.fm) the
    artist's avatar."""
    if not row["album_uuid"]:
        return None
    cover = f"{public_url}/lists/covers/{row['album_display_sha']}" if row["album_display_sha"] else None
    return {
        "id": row["album_uuid"],
        "slug": row["album_slug"],
        "title": row["album_title"],
        "image_url": cover or row["artist_avatar_url"],
        "thumbnail_url": f"{public_url}/lists/covers/{row['album_thumb_sha']}" if row["album_thumb_sha"] else None,
    }


def record_url(row: sqlite3.Row) -> str | None:
    """Where anyone can read the track's record: its artist's PDS's public getRecord (plyr.fm's form)."""
    if not row["record_uri"] or not row["rkey"] or not row["artist_pds_url"]:
        return None
    return (f"{row['artist_pds_url'].rstrip('/')}/xrpc/com.atproto.repo.getRecord"
            f"?repo={row['artist_did']}&collection=fm.plyr.track&rkey={row['rkey']}")


def artwork_urls(row: sqlite3.Row, public_url: str) -> dict[str, str | None]:
    """The track's artwork; a library track without its own shows its album's cover (the embedded picture or the
    cover image beside the files, which the scan gives the album)."""
    if not row["display_sha"] and is_library(row) and row["album_display_sha"]:
        return {"image_url": f"{public_url}/lists/covers/{row['album_display_sha']}",
                "thumbnail_url": f"{public_url}/lists/covers/{row['album_thumb_sha'] or row['album_display_sha']}"}
    if not row["display_sha"] and is_remote(row) and row["remote_image_url"]:
        return {"image_url": row["remote_image_url"], "thumbnail_url": row["remote_image_url"]}
    return {"image_url": f"{public_url}/images/{row['display_sha']}" if row["display_sha"] else None,
            "thumbnail_url": f"{public_url}/images/{row['thumb_sha']}" if row["thumb_sha"] else None}


def stored_json(text: str | None) -> Any:
    """A JSON column plyrd wrote (tags, labels, features, peaks) as a value; NULL and '[]' (most rows' labels and
    features) without decoding anything. orjson decodes the rest several times faster than the stdlib, which still
    reads what orjson refuses (NaN, written by json.dumps)."""
    if not text or text == "[]":
        return []
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def track_json(row: sqlite3.Row, public_url: str, *, peaks: bool = True, viewer_did: str | None = None
               ) -> dict[str, Any]:
    """A TRACK_SELECT row as plyr.fm's TrackResponse (every field its clients read, with its name and type:
    tests/test_plyrfm_shapes.py compares them), plus plyrd's own fields. `viewer_did` is who is asking (None:
    nobody signed in), which `downloadable` depends on. The like and comment counts and `is_liked` come from
    plyrd.catalog.social.tracks_json, which every API answer goes through.

    A library track (`source` "library", plyrd's field) is shown by its file's tags: `artist` is the tagged artist,
    `artist_handle` the library's DID (a string, as plyr.fm's clients need; pages link no profile for it), `album`
    its library album.

    plyr.fm's fields plyrd has no use for hold their "nothing here" values: `gated` false and `support_gate` null
    (no supporter gating), the copyright fields null (not scanned), `operator_labels` empty. `audio_storage` is
    "both" once the track's record keeps its audio on the artist's PDS (`pds_blob_cid`), else "r2" (plyr.fm's name
    for the service's own storage, here the node's). `album` is the album the track is on; `album_name` (plyrd's)
    is the album name its record carries.

    Lists leave the 1000-point waveform out (`peaks=False`): decoding and re-encoding it for 50 tracks cost 20 ms
    a page (bench/catalog.py); the track's own page, and the player, fetch it with the track.
    """
    # A remote track with only an audioUrl has no file here: the node relays it (plyrd.web.relay; same origin, so the
    # player's Web Audio loudness gain can read it) under a file id of its own, as plyr.fm's clients need one.
    playable_sha = row["web_sha"] or row["original_sha"] or f"remote-{row['id']}"
    playable_type = "mp3" if row["web_sha"] else row["original_ext"]
    labels = stored_json(row["self_labels"])
    operator = stored_json(row["operator_labels"])
    audio_url = f"{public_url}/audio/{playable_sha}"
    return {
        "id": row["id"],
        "title": row["title"],
        "artist": artist_name(row),
        "artist_handle": row["artist_handle"] or row["artist_did"],  # never null: plyr.fm's clients need a string
        "artist_did": row["artist_did"],
        "artist_avatar_url": row["artist_avatar_url"],
        "artist_support_url": row["artist_support_url"],
        "album": album_summary(row, public_url),
        "album_name": row["album"],
        "features": stored_json(row["features_view"]),
        "description": row["description"],
        "tags": stored_json(row["tags"]),
        "file_id": playable_sha,
        "file_type": playable_type,
        "original_file_id": row["original_sha"],
        "original_file_type": row["original_ext"],
        "audio_url": audio_url,
        "r2_url": audio_url,
        "download_url": f"{public_url}/audio/{row['original_sha']}/download",
        "downloadable": downloadable(row, viewer_did),
        "download_policy": effective_policy(row),
        "audio_storage": "both" if row["pds_blob_cid"] else "r2",
        "pds_blob_cid": row["pds_blob_cid"],
        "atproto_record_uri": row["record_uri"],
        "atproto_record_cid": row["record_cid"],
        "atproto_record_url": record_url(row),
        **artwork_urls(row, public_url),
        "duration": row["duration"],
        "codec": row["codec"],
        "sample_rate": row["sample_rate"],
        "channels": row["channels"],
        "bit_depth": row["bit_depth"],
        "lossless": bool(row["lossless"]),
        "peaks": stored_json(row["peaks"]) if peaks and row["peaks"] else None,
        "loudness_lufs": row["loudness_lufs"],
        "track_gain_db": row["track_gain_db"],
        "status": row["status"],
        "playable": row["status"] == "ready",
        "is_optimizing": row["status"] == "processing",
        "created_at": iso_time(row["created_at"]),
        "play_count": row["play_count"],
        "visibility": "unlisted" if row["unlisted"] else "public",
        "unlisted": bool(row["unlisted"]),
        "self_labels": labels,
        "labels": labels,
        "operator_labels": operator,
        "sensitive": is_sensitive(labels) or is_sensitive(operator),
        "gated": False,
        "support_gate": None,
        "copyright_flagged": None,
        "copyright_match": None,
        "copyright_song_uri": None,
        "copyright_recording_uri": None,
        "source": row["source"],
        # plyrd's: why the node's admins took it down (only its owner and admins ever see a taken-down track)
        "taken_down": row["taken_down"],
    }


async def audio_file(db: Database, file_id: str, audience: Audience) -> AudioFile:
    """The audio blob behind a file id (a track's original or its web rendition) of a track `audience` may see;
    NotFound for anything else, exactly as for a file that does not exist (a library file's bytes are the
    library's: nobody without `Audience.library` gets them)."""
    if not re.fullmatch(r"[0-9a-f]{64}", file_id):
        raise NotFound("no such audio file")
    seen = visible(audience)
    row = await db.fetchone(f"{TRACK_SELECT} WHERE t.web_sha = ? AND {seen.sql} LIMIT 1", (file_id, *seen.params))
    if row is not None:
        return AudioFile(file_id, "audio/mpeg", "mp3", row)
    # the same audio may be several tracks' (an upload and another node's record of it): a playable one answers
    row = await db.fetchone(f"{TRACK_SELECT} WHERE t.original_sha = ? AND {seen.sql}"
                            " ORDER BY t.status = 'ready' DESC, t.source = 'remote' LIMIT 1", (file_id, *seen.params))
    if row is not None:
        return AudioFile(file_id, row["original_mime"], row["original_ext"], row)
    raise NotFound("no such audio file")


@dataclass(frozen=True)
class ImageFile:
    """An artwork blob /images can serve: its type, and whether only the library's tracks use it (then no shared
    cache may keep it: it is for the node's listeners only)."""

    mime: str
    library_only: bool


async def image_file(db: Database, sha: str, audience: Audience) -> ImageFile:
    """The artwork blob of a track `audience` may see; NotFound for anything else."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise NotFound("no such image")
    seen = visible(audience)
    row = await db.fetchone(
        "SELECT t.image_sha, t.image_mime, t.source FROM tracks t"
        f" WHERE (t.image_sha = ? OR t.thumb_sha = ? OR t.display_sha = ?) AND {seen.sql}"
        f" ORDER BY t.source = '{LIBRARY_SOURCE}' LIMIT 1",
        (sha, sha, sha, *seen.params),
    )
    if row is None:
        raise NotFound("no such image")
    return ImageFile(row["image_mime"] if row["image_sha"] == sha else "image/webp", is_library(row))


async def owned_track_for_update(conn: Any, track_id: int, did: str, verb: str) -> sqlite3.Row:
    """The track row, read inside the caller's write transaction, if `did` is its artist (404 / 403 otherwise)."""
    async with conn.execute("SELECT * FROM tracks WHERE id = ?", (track_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"track {track_id} not found")
    if row["artist_did"] != did:
        raise Forbidden(f"only the artist can {verb} this track")
    return row


async def delete_track(db: Database, store: BlobStore, track_id: int, *, did: str) -> None:
    """Delete a track the caller owns, its record on their PDS, and its files no other track uses."""
    async with db.write() as conn:
        released = await remove_track(conn, store, await owned_track_for_update(conn, track_id, did, "delete"))
    await store.remove_unreferenced(released)


async def remove_track(conn: Any, store: BlobStore, row: sqlite3.Row, *, unpublish: bool = True) -> list[str]:
    """Remove a track inside the caller's write transaction, the one way every path does it (the artist deleting
    it, an upload that failed, account deletion): the deletion of its record queued, unless `unpublish` is False
    (a failed import leaves the record it came from alone; account deletion settles the user's records itself);
    the albums holding it rewritten without it; its earlier audio (revisions) dropped; the row gone; its references
    on its files dropped. Returns the blobs nothing references any more, for store.remove_unreferenced once the
    transaction has committed."""
    if unpublish:
        await unpublish_track(conn, row)
    if is_library(row):  # its playlist items are the node's own (no record names it): they go with it, as likes do
        await conn.execute("DELETE FROM playlist_items WHERE track_id = ?", (row["id"],))
    albums = await album_ids_of_track(conn, row["id"])
    released = await drop_revisions(conn, store, row["id"])
    await conn.execute("DELETE FROM tracks WHERE id = ?", (row["id"],))
    for album_id in albums:  # the album's list record must stop naming the removed track
        await publish_album(conn, album_id)
    return released + [sha for sha in track_blobs(row) if await store.decref(conn, sha) == 0]


async def set_track_tags(conn: Any, track_id: int, tags: list[str]) -> None:
    """Replace a track's tag rows (inside the caller's transaction); tracks.tags keeps the ordered JSON copy."""
    await conn.execute("DELETE FROM track_tags WHERE track_id = ?", (track_id,))
    await conn.executemany("INSERT OR IGNORE INTO track_tags(tag, track_id) VALUES (?, ?)",
                           [(t, track_id) for t in tags])
