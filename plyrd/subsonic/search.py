"""Subsonic's search3 (and search2, its folder-style form): the node's search index decides what matches and in
which order, as GET /search/ does; plyrd.db says what the caller may see and what each entry shows.

A query asks the index (plyrd.search.Search.keys: one hop to a search thread, no rows read) for its best tracks,
artists and albums, then reads every row the answer needs in one function on a reader's thread (`Database.read_fn`):
the music folder, the songs, the artists, the albums, the caller's stars and likes of just those. So a typo or an
accent still finds ("snog", "beyonce"), and the order is relevance, not the catalog's. Artists and album rows come
from what the album lists keep for the catalog (plyrd.subsonic.snapshot) when they have computed it, else from SQL
over the hits' albums alone (a search never pays for the whole catalog).

- Songs: the index's tracks, read with Subsonic's discovery rule (the read model's `listed`, the node's own catalog)
  less the caller's hidden tags (`without_tags`), except a tag the query names exactly, as /search/ unhides it.
- Artists: the index's artists (the node's accounts), and the music folder's tag artists of the listed library songs
  it found by their artist; each only when they have an album the caller sees (getArtists' rule, `members`), with
  its album count.
- Albums: the index's albums (node and library albums), the albums named by the text of the songs it found by their
  album (uploads whose tags name one), and every album of the artists above, their Singles too (an album matches by
  its name or its artist, as the index's album docs do; "Singles" is no name to search for), each only when the
  caller sees it.

Artists and albums are merged from their sources by the index's score (0..1 across kinds), then paged.
`artistOffset`/`albumOffset`/`songOffset` page the ranked lists; a page past what the first answer holds (the
counts asked for, a few more songs for hidden ones), or left short by the caller's visibility, hidden tags or a
music folder (`musicFolderId`: the hits are filtered by the folder, the index knows none), asks the index once more,
deeper (four times as deep, at least REFILL, at most DEEPEST of each kind: the index ranks no more than that); a page
can still come back short when hidden or out-of-folder hits crowd even those. There is no substring path any more:
a page past DEEPEST is empty. An empty query lists everything (how clients sync a library): newest songs first (a
page in SQL), artists and albums by name (from the kept artists and album rows, computed once per catalog change).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..catalog.tracks import Audience, Where, listed, read_hidden_tags, without_tags
from ..db import Database
from ..db.queries import rows
from ..errors import PlyrdError
from ..search.service import HIDE_SLACK, Key, Search, hidden_for_query
from . import catalog as sc
from . import folders, snapshot, state
from .catalog import _ARTISTS, _artist_name_sql  # the artist rows catalog shapes (`artist`)
from .envelope import GENERIC, SubsonicError

DEEPEST = 1000   # most hits of a kind asked of the index (its BROAD: it ranks no more matches than that)
REFILL = 200     # at least this deep when a page had to be asked for again
_IN = "IN (SELECT value FROM json_each(?))"


@dataclass(frozen=True)
class Page:
    count: int
    offset: int

    @property
    def end(self) -> int:
        return self.offset + self.count


def pages(params: Mapping[str, str]) -> dict[str, Page]:
    """artistCount/artistOffset, albumCount/albumOffset, songCount/songOffset, bounded as every list is."""
    return {name: Page(sc.bounded(params.get(f"{name}Count"), default=20),
                       sc.bounded(params.get(f"{name}Offset"), default=0, maximum=10**9, name=f"{name}Offset"))
            for name in ("artist", "album", "song")}


async def search3(db: Database, search: Search, params: Mapping[str, str],
                  audience: Audience) -> dict[str, list[dict[str, Any]]]:
    """searchResult3's artists (`ArtistID3`), albums (`AlbumID3`) and songs (`Child`) for `query`, in the music
    folder `musicFolderId` names (every one the caller may see without it); the caller's stars and likes marked."""
    query = (params.get("query") or "").strip().strip('"')
    wanted = pages(params)
    folder = params.get("musicFolderId")
    if not query:
        found = await db.read_fn(_everything, snapshot.of(db), audience, folder, wanted)
    else:
        found = await _ranked(db, search, query, audience, folder, wanted)
    return {"artist": found.artists, "album": found.albums, "song": found.songs}


@dataclass(frozen=True)
class Found:
    """A search3 answer's entries, shaped and marked."""

    artists: list[dict[str, Any]]
    albums: list[dict[str, Any]]
    songs: list[dict[str, Any]]
    short: bool = False  # a page came back short while the index had more to give


def _found(conn: sqlite3.Connection, audience: Audience, artists: Sequence[Any], albums: list[dict[str, Any]],
           songs: Sequence[sqlite3.Row], short: bool = False) -> Found:
    """The entries of these rows, with the caller's stars and likes of them."""
    stars = state.read_artist_stars(conn, audience.did) if artists else {}
    liked = sc.read_liked(conn, audience.did, songs)
    return Found([state.marked(sc.artist(r), stars) for r in artists], state.marked_entries(conn, audience.did, albums),
                 [sc.song(r, liked) for r in songs], short)


async def _ranked(db: Database, search: Search, query: str, audience: Audience, folder: str | None,
                  wanted: dict[str, Page]) -> Found:
    """The index's answer, then its rows; once more, deeper, when visibility or the folder left a page short."""
    if not any(p.count for p in wanted.values()):
        return Found([], [], [])
    kinds = ["tracks"]  # tracks always: the library's artists and the named albums come from songs
    if wanted["artist"].count or wanted["album"].count:
        kinds.append("artists")  # (their Singles are albums too)
    if wanted["album"].count:
        kinds.append("albums")
    limit = min(DEEPEST, max(p.end for p in wanted.values() if p.count) + HIDE_SLACK)
    for again in (False, True):
        try:
            hits = await search.keys(query, kinds, limit, audience, columns=True)
        except PlyrdError as e:  # the search worker is not running (a node started without it): say so
            raise SubsonicError(GENERIC, f"search is unavailable: {e}") from None
        found = await db.read_fn(_read, snapshot.of(db), audience, folder, query, hits, wanted, limit)
        if again or not found.short or limit >= DEEPEST:
            break
        limit = min(DEEPEST, max(4 * limit, REFILL))  # once: a page can still come back short, as /search/'s
    return found


def _any(wheres: Sequence[Where]) -> Where:
    """Any of these conditions (none: nothing)."""
    if not wheres:
        return Where.of("0")
    return Where.of(" OR ".join(f"({w.sql})" for w in wheres), *[p for w in wheres for p in w.params])


def _merged(*sources: Iterable[tuple[str, float]]) -> list[str]:
    """Keys from several ranked sources, best score first (the earlier source first among equals), each once."""
    best: dict[str, tuple[float, int]] = {}
    n = 0
    for source in sources:
        for key, score in source:
            if key not in best or best[key][0] < score:
                best[key] = (score, best[key][1] if key in best else n)
            n += 1
    return sorted(best, key=lambda k: (-best[k][0], best[k][1]))


def _read(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience, music_folder: str | None,
          query: str, hits: dict[str, list[Key]], wanted: dict[str, Page], limit: int) -> Found:
    """Every row search3 answers for these hits, in one read snapshot."""
    folder = folders.read_scope(conn, audience, music_folder).where
    full = {kind: len(found) >= limit for kind, found in hits.items()}  # the index may hold more of this kind
    short = False

    # Songs: the hits the caller may discover here, best first; those carrying a hidden tag only feed artists and
    # albums (whose pages show every listed song, as /search/'s artists and albums do).
    tracks = hits.get("tracks", [])
    ids = [int(k.key) for k in tracks]
    shown = listed(audience) & folder
    where = Where.of(f"t.id {_IN}", json.dumps(ids)) & shown
    by_id = {r["id"]: r for r in sc.read_song_rows(conn, where)} if ids else {}
    hide = hidden_for_query(query, read_hidden_tags(conn, audience))
    unhidden = set(by_id)
    if hide and by_id:
        ok = Where.of(f"t.id {_IN}", json.dumps(list(by_id))) & without_tags(hide)
        unhidden = {r["id"] for r in rows(conn, f"SELECT t.id FROM tracks t WHERE {ok.sql}", ok.params)}
    song_rows = [by_id[i] for i in ids if i in unhidden]
    page = wanted["song"]
    songs = song_rows[page.offset:page.end]
    short |= len(songs) < page.count and full.get("tracks", False)

    # Artists: accounts the index found; the library's tag artists of the library songs found by their artist.
    found_by = [(by_id[int(k.key)], k) for k in tracks if int(k.key) in by_id]
    library = [(sc.song_artist_key(r), k.score) for r, k in found_by if r["source"] == "library"
               and "artist" in k.columns]
    artist_keys = _merged(((k.key, k.score) for k in hits.get("artists", [])), library)
    page, album_page = wanted["artist"], wanted["album"]
    # What getArtists and the album lists computed for this catalog, when they have (every album this caller sees in
    # this folder, as rows): artists, their albums and album rows come from it; else from narrow SQL.
    kept = _kept_albums(conn, snaps, audience, folder)
    if kept is not None:
        artist_rows, their_albums = kept.artists(artist_keys)
    else:
        artist_rows, their_albums = _artist_rows(conn, audience, folder, artist_keys, albums=album_page.count > 0)
    ranked_artists = [artist_rows[k] for k in artist_keys if k in artist_rows]
    artists = ranked_artists[page.offset:page.end]
    # (more accounts may match; more library artists when songs by them may be past the songs the index gave)
    short |= len(artists) < page.count and (full.get("artists", False) or (bool(library) and full.get("tracks", False)))

    # Albums: the index's, the named albums of songs found by their album text, every album of the artists above
    # (an album matches by its artist too, as the index's album docs do: their Singles and named albums are in no
    # doc of their own), each at its artist's score.
    albums: list[dict[str, Any]] = []
    page = album_page
    if page.count:
        named = [(sid, k.score) for r, k in found_by if "album" in k.columns
                 and not (sid := sc.album_id_of(r)).startswith("al-singles-")]
        found_albums = [*((f"al-{k.key}", k.score) for k in hits.get("albums", [])), *named]
        scores: dict[str, float] = {}
        for key, score in [*library, *((k.key, k.score) for k in hits.get("artists", []))]:
            scores[key] = max(score, scores.get(key, 0.0))
        sids = _merged(found_albums, ((sid, scores.get(artist, 0.0)) for sid, artist in their_albums))
        known = {sid for sid, _ in their_albums}  # (an artist's albums are those the caller sees)
        if kept is not None:
            sids = [sid for sid in sids if sid in kept.summaries.by_sid]
            albums = kept.summaries.entries([kept.summaries.by_sid[sid] for sid in sids[page.offset:page.end]])
        elif page.offset:  # which albums before the page the caller sees, on cheap columns
            before = sids[:page.end]
            seen = known | _visible_albums(conn, audience, folder, [s for s in before if s not in known])
            sids = [sid for sid in before if sid in seen] + sids[page.end:]
        # The page's rows (kept ones when the album lists computed them for this catalog), leaving out albums the
        # caller does not see, then the next ones in their place.
        start = page.offset + len(albums)
        while len(albums) < page.count and start < len(sids):
            window = sids[start:start + page.count - len(albums)]
            albums += [sc.album(r) for r in sc.read_albums_by_id(conn, snaps, audience, window, folder)]
            start += len(window)
        short |= len(albums) < page.count and (full.get("albums", False) or full.get("artists", False)
                                               or (bool(named or library) and full.get("tracks", False)))

    return _found(conn, audience, artists, albums, songs, short)


class _Kept:
    """The album summaries kept for this catalog (`catalog.AlbumSummaries`), with each artist's albums in the order
    getArtist lists them (made once per summaries)."""

    def __init__(self, summaries: sc.AlbumSummaries) -> None:
        self.summaries = summaries
        self.by_artist: dict[str, list[sqlite3.Row]] = {}
        for r in sorted(summaries.newest, key=lambda r: (r["name"] == sc.SINGLES, _lower(r["name"] or ""), r["sid"])):
            self.by_artist.setdefault(r["artist_did"], []).append(r)

    def artists(self, keys: Sequence[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """`_artist_rows` for these artists (and all their albums), from the kept rows."""
        found: dict[str, Any] = {}
        theirs: list[tuple[str, str]] = []
        for key in keys:  # (in their order, each one's albums by name, as `_artist_rows`)
            albums = self.by_artist.get(key)
            if not albums:
                continue
            # The artist's name as `_ARTISTS` gives it: a library artist's least tagged name over their albums.
            names = [r["artist_name"] for r in albums if r["artist_name"] is not None]
            first = min((r for r in albums if r["artist_name"] is not None), key=lambda r: r["artist_name"]) \
                if names else albums[0]
            found[key] = {"artist_did": key, "artist_handle": first["artist_handle"],
                          "artist_display_name": first["artist_display_name"], "album_count": len(albums)}
            theirs += [(r["sid"], key) for r in albums]
        return found, theirs


# By the summaries' identity (they are not hashable), for as long as they live: the snapshots drop old ones.
_KEPT: dict[int, tuple[weakref.ref[sc.AlbumSummaries], _Kept]] = {}
_KEPT_LOCK = threading.Lock()


def _kept_albums(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience,
                 folder: Where) -> _Kept | None:
    """The album summaries the album lists keep for this caller, catalog and folder, if they computed them (never
    computed here: a search after each change would pay for every album)."""
    summaries = snaps.peek(conn, sc._summaries_key(conn, audience, folder))
    if not isinstance(summaries, sc.AlbumSummaries):
        return None
    with _KEPT_LOCK:
        found = _KEPT.get(id(summaries))
        if found is not None and found[0]() is summaries:
            return found[1]
        for key in [k for k, (ref, _) in _KEPT.items() if ref() is None]:
            del _KEPT[key]
    kept = _Kept(summaries)  # (two threads may both make it: either is right)
    with _KEPT_LOCK:
        _KEPT[id(summaries)] = (weakref.ref(summaries), kept)
    return kept


def _artists_only(keys: Sequence[str]) -> sc.Only:
    """`members` narrowed to these artists' albums (accounts by DID, the music folder's artists by their key)."""
    accounts = [k for k in keys if not sc.is_library_key(k)]
    narrowed = [sc.only_artist(k) for k in keys if sc.is_library_key(k)]
    by_did = [sc.artist_tracks(accounts)] if accounts else []
    return sc.Only(_any(by_did + [o.albums for o in narrowed]), _any(by_did + [o.singles for o in narrowed]))


def _artist_rows(conn: sqlite3.Connection, audience: Audience, folder: Where, keys: Sequence[str], *,
                 albums: bool) -> tuple[dict[str, sqlite3.Row], list[tuple[str, str]]]:
    """These artists' rows (what `catalog.artist` shapes) for the caller, those with an album they see; and when
    `albums`, those albums (sid, artist), each artist's by name, Singles last, as getArtist lists them."""
    if not keys:
        return {}, []
    cte, params = sc.members(audience, folder, _artists_only(keys))
    if not albums:
        found = rows(conn, cte + _ARTISTS + f" WHERE m.artist_did {_IN} GROUP BY m.artist_did",
                     [*params, json.dumps(list(keys))])
        return {r["artist_did"]: r for r in found}, []
    # Both from one pass over their albums (`ranked`): each album with its artist's row (the name as `_ARTISTS`
    # computes it, over all their albums).
    name = _artist_name_sql("min(r.artist_name) OVER artist")
    found = rows(conn, cte + f"""
        SELECT r.sid, r.artist_did, u.handle AS artist_handle, {name} AS artist_display_name,
               count(*) OVER artist AS album_count
        FROM ranked r LEFT JOIN users u ON u.did = r.artist_did WHERE r.artist_did {_IN}
        WINDOW artist AS (PARTITION BY r.artist_did)
        ORDER BY r.name = '{sc.SINGLES}', lower(r.name), r.sid""", [*params, json.dumps(list(keys))])
    artists: dict[str, sqlite3.Row] = {}
    for r in found:
        artists.setdefault(r["artist_did"], r)
    place = {k: i for i, k in enumerate(keys)}  # the artists in their order, each one's albums by name
    return artists, sorted(((r["sid"], r["artist_did"]) for r in found), key=lambda a: place[a[1]])


def _visible_albums(conn: sqlite3.Connection, audience: Audience, folder: Where, sids: Sequence[str]) -> set[str]:
    """Which of these albums the caller sees (`members`' cheap `ranked` columns: no album row built)."""
    if not sids:
        return set()
    cte, params = sc.members(audience, folder, sc.only_albums(sids))
    return {r["sid"] for r in rows(conn, cte + f"SELECT sid FROM ranked WHERE sid {_IN}",
                                   [*params, json.dumps(list(sids))])}


def _everything(conn: sqlite3.Connection, snaps: snapshot.Snapshots, audience: Audience, music_folder: str | None,
                wanted: dict[str, Page]) -> Found:
    """The empty query: every artist and album by name (from what getArtists and the album lists keep for this
    catalog, computed when they have not), every song newest first (a page in SQL)."""
    folder = folders.read_scope(conn, audience, music_folder).where
    artists: list[sqlite3.Row] = []
    albums: list[dict[str, Any]] = []
    songs: list[sqlite3.Row] = []
    if (page := wanted["artist"]).count:
        every = sc.read_artists(conn, snaps, audience, folder)
        artists = sorted(every, key=lambda r: (_lower(r["artist_display_name"] or r["artist_handle"]
                                                      or r["artist_did"]), r["artist_did"]))[page.offset:page.end]
    if (page := wanted["album"]).count:
        summaries = sc.album_summaries(conn, snaps, audience, folder)
        albums = summaries.entries(summaries.by_name[page.offset:page.end])
    if (page := wanted["song"]).count:
        where = listed(audience) & without_tags(read_hidden_tags(conn, audience)) & folder
        songs = sc.read_song_rows(conn, where, "ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?",
                                  [page.count, page.offset])
    return _found(conn, audience, artists, albums, songs)


def _lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)  # as SQLite's lower(), which orders the lists
