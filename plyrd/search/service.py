"""Search for the node: owns search.db and its indexer, answers GET /search/ and "more like this".

The index says which things match and how well; what a result shows (names, artwork, counts) is read from plyrd.db
when answering, so it is never stale, and visibility is checked again there (a track made unlisted a moment ago
is not shown while the indexer catches up). All apsw work runs in threads, a few at a time.

Search is discovery, so it shows what the discovery feeds show: the tracks listed for the searcher (the read
model's rule, plyrd.catalog.tracks, applied again when reading the results), less those carrying one of their
hidden tags (their preference; anonymous viewers get the default, ["ai"]), and those tags themselves in the tags
group. A query that is exactly a hidden tag (folded: "AI", "ai-slop") asks for it by name, so that tag is not hidden
for that search, as its tag page shows its tracks whatever the viewer hides; the viewer's other hidden tags still
are. Artists, albums and playlists are not filtered by hidden tags (their pages show everything), and tag counts
count every listed track, as the tag page and /tracks/tags do. The filter is the read model's `without_tags` in the
SQL that reads the results. To fill the page anyway, the index is asked for a few tracks more than the page
(HIDE_SLACK), and once more, deeper, in the rare case that even those were not enough.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog.labels import is_sensitive
from ..catalog.playlists import playlist_visible
from ..catalog.tracks import (
    TRACK_SELECT,
    Audience,
    Where,
    album_summary,
    artist_name,
    artist_shown,
    hidden_tags,
    listed,
    open_track,
    without_tags,
)
from ..db import Database
from ..errors import InvalidInput, Unavailable
from ..threads import ThreadSlots
from .index import KIND_CODE, KINDS, Hit, SearchIndex
from .indexer import Indexer
from .text import edit_distance, fold

log = logging.getLogger("plyrd.search")

MIN_QUERY, MAX_QUERY = 2, 100   # characters, as plyr.fm
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
HIDE_SLACK = 5                  # tracks asked of the index beyond the page when some tags are hidden
REFILL_MAX = 200                # most tracks asked of it again when even those were not enough
RECOMMEND_SEEDS = 20            # a playlist's tracks whose similar tracks recommendations merge, at most
RRF_K = 60                      # reciprocal rank fusion's constant, as plyr.fm's recommendations
CATCH_UP = 1.0                  # seconds a search waits for the indexer to apply changes committed before it
OPEN_WAIT = 10.0                # seconds a search waits for the index to open at start-up
INDEX_FILE = "search.db"
LOCK_FILE = "search.lock"


class IndexLocked(Exception):
    """Another process (a running node) holds search.db."""


def lock_index(data_dir: Path) -> int:
    """An exclusive lock on <data>/search.lock for as long as the returned descriptor stays open.

    A node holds it while its index is open, so `plyrd reindex` can tell it would pull the file from under a
    running node."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise IndexLocked(f"{data_dir / INDEX_FILE} is in use by a running node") from None
    return fd


def parse_query(q: str | None) -> str:
    text = (q or "").strip()
    if not MIN_QUERY <= len(text) <= MAX_QUERY:
        raise InvalidInput(f"q must be {MIN_QUERY} to {MAX_QUERY} characters")
    return text


def parse_types(raw: str | None) -> list[str]:
    """The kinds asked for (comma-separated); as plyr.fm, an unknown one is ignored, and none known means all."""
    if raw is None or not raw.strip():
        return list(KINDS)
    types = []
    for part in raw.split(","):
        t = part.strip().lower()
        if t in KINDS and t not in types:
            types.append(t)
    return types or list(KINDS)


def tag_id(name: str) -> int:
    """A stable whole number standing for a tag (plyr.fm's clients read a tag result's `id` as an integer; plyrd's
    tags are their names): the first 48 bits of the name's SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big")


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value


class Search:
    def __init__(self, db: Database, data_dir: Path, public_url: str, *, readers: int = 2) -> None:
        self.db = db
        self.data_dir = data_dir
        self.public_url = public_url
        self.readers = readers
        self.index: SearchIndex | None = None
        self.indexer: Indexer | None = None
        self._slots = ThreadSlots(readers)
        self._opened = asyncio.Event()
        self._lock_fd: int | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / INDEX_FILE

    # ---- the worker ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """The "search" worker: open search.db, keep it in step with the catalog, close it on stop."""
        try:
            if self.index is None:
                if self._lock_fd is None:  # (kept across a failed open: flock is per descriptor)
                    self._lock_fd = await asyncio.to_thread(lock_index, self.data_dir)
                self.index = await asyncio.to_thread(SearchIndex, self.path, readers=self.readers)
                self.indexer = Indexer(self.db, self.index)
                self._opened.set()
            assert self.indexer is not None
            await self.indexer.run(stop)
        finally:
            if stop.is_set():
                await self._close()

    async def _close(self) -> None:
        self._opened.clear()
        index, self.index, self.indexer = self.index, None, None
        if index is not None:
            await asyncio.to_thread(index.close)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _ready(self) -> tuple[SearchIndex, Indexer]:
        """The open index, once changes committed before this call are in it (as far as CATCH_UP allows)."""
        if self.index is None:
            try:
                await asyncio.wait_for(self._opened.wait(), OPEN_WAIT)
            except TimeoutError:
                raise Unavailable("search is starting; try again in a moment") from None
        index, indexer = self.index, self.indexer
        if index is None or indexer is None:
            raise Unavailable("search is not running")
        if not indexer.ready.is_set():  # rebuilding or catching up at start-up: a small catalog takes a moment
            try:
                await asyncio.wait_for(indexer.ready.wait(), CATCH_UP)
            except TimeoutError:
                log.info("search answered while the index is being built")
        elif not indexer.rebuilding:
            seq = await indexer.high_water()
            if seq > indexer.applied and not await indexer.wait_for(seq, CATCH_UP):
                log.warning("search answered before the index caught up",
                            extra={"fields": {"behind": seq - indexer.applied}})
        return index, indexer

    # ---- queries ------------------------------------------------------------------------------------------------

    async def search(self, q: str | None, types: str | None, limit: str | None,
                     audience: Audience) -> dict[str, Any]:
        """GET /search/: plyr.fm's shape (`results` by relevance, `counts` per type) plus `groups` per type.

        Tracks carrying one of the viewer's hidden tags (anonymous: the default, ["ai"]) are left out, and so are
        those tags in the tags group, unless the query is exactly that tag (see the module docstring). `counts` and
        `results` are made from the groups after that, so all three agree."""
        text, kinds, n = parse_query(q), parse_types(types), parse_limit(limit)
        index, _ = await self._ready()
        hide = await self.hidden_for(text, audience)
        # With tags to hide, a few more tracks than the page, so that hidden ones rarely leave it short: a second
        # index search for the rest every time one is hidden cost ~1.7 ms more at p50 on 100k tracks, 3% "ai".
        ask = n + HIDE_SLACK if hide and "tracks" in kinds else n
        hits = await self._slots.run(index.search, text, kinds, limit=ask, viewer=audience.did)
        groups: dict[str, list[dict[str, Any]]] = {}
        for kind in kinds:
            found = hits[kind] if kind == "tracks" else hits[kind][:n]
            groups[kind] = (await self._hydrate(kind, found, audience, hide))[:n]
        if "tracks" in kinds and hide and len(hits["tracks"]) == ask and len(groups["tracks"]) < n:
            # More hidden tracks than the slack in a full answer: ask once more, deeper. Rare, so only these pay;
            # a page can still come back short when hidden tracks crowd the top matches even more.
            more = await self._slots.run(index.search, text, ["tracks"], limit=min(REFILL_MAX, 4 * ask),
                                         viewer=audience.did)
            groups["tracks"] = (await self._hydrate("tracks", more["tracks"], audience, hide))[:n]
        results = sorted((r for kind in kinds for r in groups[kind]), key=lambda r: -r["relevance"])
        counts = {k: len(groups.get(k, ())) for k in KINDS}  # as plyr.fm: every type, 0 when not asked for
        return {"query": text, "results": results, "counts": counts, "groups": groups}

    async def hidden_for(self, text: str, audience: Audience) -> list[str]:
        """The tags this search hides: the searcher's hidden tags, less one the query names exactly."""
        return hidden_for_query(text, await hidden_tags(self.db, audience))

    async def keys(self, text: str, kinds: Sequence[str], limit: int, audience: Audience, *,
                   columns: bool = False) -> dict[str, list[Key]]:
        """The index's best `limit` keys of each kind for `text`, straight from search.db (nothing read from
        plyrd.db, nothing shaped: the caller reads its own rows, with its own visibility rule, as `search` does).
        `columns`: for tracks, also which of their fields hold the query (`matched_columns`), so a caller can tell
        a song found by its artist or album from one found by its title. One hop to a search thread."""
        index, _ = await self._ready()
        return await self._slots.run(_keys, index, text[:MAX_QUERY], list(kinds), max(1, limit), audience.did,
                                     columns)

    async def similar(self, track_id: int, limit: str | None, audience: Audience) -> dict[str, Any]:
        """GET /tracks/{id}/similar: tracks sharing the rarest words of this one's artist, album, tags, title.
        Discovery too: only tracks listed for the asker, less those carrying one of their hidden tags, unless this
        track carries it (whoever listens to it asked for that tag). A track they may not open is not found."""
        from ..catalog.social import tracks_json

        n = parse_limit(limit, default=10)
        track = await open_track(self.db, track_id, audience)
        index, _ = await self._ready()
        own = set(json.loads(track["tags"] or "[]"))
        hide = [t for t in await hidden_tags(self.db, audience) if t not in own]
        hits = await self._slots.run(index.similar, str(track_id), limit=n + (HIDE_SLACK if hide else 0))
        rows = await self._tracks([int(h.key) for h in hits], audience, hide)
        by_id = {str(r["id"]): r for r in rows}
        ordered = [(h, by_id[h.key]) for h in hits if h.key in by_id][:n]
        shaped = await tracks_json(self.db, [r for _, r in ordered], audience.did, self.public_url)
        return {"tracks": [{**t, "relevance": h.score} for (h, _), t in zip(ordered, shaped, strict=True)]}

    async def recommend(self, seeds: Sequence[Any], limit: int, audience: Audience) -> dict[str, Any]:
        """Tracks like these (a playlist's tracks, as rows): each seed's similar tracks (the index's `similar`)
        merged by reciprocal rank fusion (k=60, as plyr.fm merges its per-track queries), less the seeds. Discovery
        again: only tracks listed for `audience`, less those carrying one of their hidden tags unless a seed carries
        it. plyr.fm's PlaylistRecommendations shape; `available` is false when there is nothing to go on."""
        if not seeds:
            return {"tracks": [], "available": False}
        index, _ = await self._ready()
        own = {t for s in seeds for t in json.loads(s["tags"] or "[]")}
        hide = [t for t in await hidden_tags(self.db, audience) if t not in own]
        exclude = {str(s["id"]) for s in seeds}
        step = -(-len(seeds) // RECOMMEND_SEEDS)  # a long playlist is sampled evenly, RECOMMEND_SEEDS tracks
        keys = [str(s["id"]) for s in seeds[::step]]
        depth = min(limit + len(exclude) + HIDE_SLACK, REFILL_MAX)
        found = await self._slots.run(lambda: [index.similar(k, limit=depth) for k in keys])
        fused: dict[str, float] = {}
        for hits in found:
            for rank, h in enumerate(hits, start=1):
                if h.key not in exclude:
                    fused[h.key] = fused.get(h.key, 0.0) + 1.0 / (RRF_K + rank)
        ranked = sorted(fused, key=lambda k: (-fused[k], int(k)))
        rows = {str(r["id"]): r for r in await self._tracks([int(k) for k in ranked], audience, hide)}
        picked = [k for k in ranked if k in rows][:limit]
        return {"available": True, "tracks": [
            {"id": rows[k]["id"], "title": rows[k]["title"],
             "artist_handle": rows[k]["artist_handle"] or rows[k]["artist_did"],
             "artist_display_name": artist_name(rows[k]), "artist_did": rows[k]["artist_did"],
             "image_url": self._image("images", rows[k]["display_sha"]),
             "thumbnail_url": self._image("images", rows[k]["thumb_sha"]), "duration": rows[k]["duration"],
             "sensitive": is_sensitive(rows[k]["self_labels"]), "relevance": round(fused[k], 6)}
            for k in picked]}

    # ---- results as the UI shows them ---------------------------------------------------------------------------

    async def _tracks(self, ids: list[int], audience: Audience, hide: Sequence[str]) -> list[Any]:
        """The tracks of these ids that discovery shows `audience`, less those carrying a tag in `hide`."""
        where = (Where.of("t.id IN (SELECT value FROM json_each(?))", json.dumps(ids)) & listed(audience, reach="all")
                 & without_tags(hide))
        return await self.db.fetchall(f"{TRACK_SELECT} WHERE {where.sql}", where.params)

    async def _hydrate(self, kind: str, hits: Sequence[Hit], audience: Audience,
                       hide: Sequence[str] = ()) -> list[dict[str, Any]]:
        if not hits:
            return []
        if kind == "tracks":
            rows = {str(r["id"]): r for r in await self._tracks([int(h.key) for h in hits], audience, hide)}
        else:
            found = await self.db.fetchall(*_hydrate_query(kind, [h.key for h in hits], audience, hide))
            rows = {str(r["key"]): r for r in found}
        shaped = []
        for h in hits:
            row = rows.get(h.key)
            if row is not None:  # gone or hidden since it was indexed
                shaped.append({"type": kind[:-1], **self._shape(kind, row), "relevance": h.score, "match": h.tier})
        return shaped

    def _image(self, path: str, sha: str | None) -> str | None:
        return f"{self.public_url}/{path}/{sha}" if sha else None

    def _shape(self, kind: str, r: Any) -> dict[str, Any]:
        if kind == "tracks":
            return {"id": r["id"], "title": r["title"], "artist": artist_name(r),
                    "artist_handle": r["artist_handle"] or r["artist_did"],
                    "artist_display_name": artist_name(r), "artist_did": r["artist_did"],
                    "album": album_summary(r, self.public_url),
                    "image_url": self._image("images", r["display_sha"]),
                    "thumbnail_url": self._image("images", r["thumb_sha"]), "duration": r["duration"],
                    "sensitive": is_sensitive(r["self_labels"])}
        if kind == "artists":
            return {"did": r["key"], "handle": r["handle"] or r["key"],
                    "display_name": r["display_name"] or r["handle"] or r["key"],
                    "avatar_url": r["avatar_url"], "track_count": r["track_count"]}
        if kind == "albums":
            return {"id": r["key"], "title": r["title"], "slug": r["slug"], "artist_did": r["artist_did"],
                    "artist_handle": r["handle"] or r["artist_did"],
                    "artist_display_name": r["display_name"] or r["handle"] or r["artist_did"],
                    "image_url": self._image("lists/covers", r["display_sha"]),
                    "thumbnail_url": self._image("lists/covers", r["thumb_sha"]), "track_count": r["track_count"]}
        if kind == "tags":
            return {"id": tag_id(r["key"]), "name": r["key"], "track_count": r["track_count"]}
        return {"id": r["key"], "name": r["name"], "owner_did": r["owner_did"],
                "owner_handle": r["handle"] or r["owner_did"],
                "owner_display_name": r["display_name"] or r["handle"] or r["owner_did"],
                "is_private": bool(r["is_private"]),
                "image_url": self._image("lists/covers", r["display_sha"]),
                "thumbnail_url": self._image("lists/covers", r["thumb_sha"]), "track_count": r["track_count"]}


def hidden_for_query(text: str, hidden: Sequence[str]) -> list[str]:
    """The tags a search for `text` hides of the searcher's `hidden` ones: all but one the query names exactly."""
    asked = fold(text)
    return [t for t in hidden if fold(t) != asked]


@dataclass(frozen=True)
class Key:
    """One thing the index found: its key, score (0..1, comparable across kinds) and, when asked, the fields of
    its doc that hold the query ("title", "artist", "album", "tags")."""

    key: str
    score: float
    columns: frozenset[str] = frozenset()


def _keys(index: SearchIndex, text: str, kinds: list[str], limit: int, viewer: str | None,
          columns: bool) -> dict[str, list[Key]]:
    hits = index.search(text, kinds, limit=limit, viewer=viewer)
    fields: dict[str, tuple[str, ...]] = {}
    if columns and hits.get("tracks"):
        # Read on a reader connection (index.docs takes the writer's lock, which the indexer holds while writing).
        wanted = json.dumps([h.key for h in hits["tracks"]])
        with index.reader() as conn:
            fields = {r[0]: tuple(r[1:]) for r in conn.execute(
                "SELECT key, title, artist, album, tags FROM docs WHERE kind = ? AND key IN"
                " (SELECT value FROM json_each(?))", (KIND_CODE["tracks"], wanted))}
    toks = fold(text).split()
    return {kind: [Key(h.key, h.score, matched_columns(toks, fields[h.key], fuzzy=h.tier == "fuzzy")
                       if h.key in fields else frozenset()) for h in found] for kind, found in hits.items()}


_FIELDS = ("title", "artist", "album", "tags")


def matched_columns(toks: Sequence[str], fields: Sequence[str], *, fuzzy: bool = False) -> frozenset[str]:
    """The fields (folded, as a doc holds them) in which every query word is, the way the index's tiers match it: a
    word it begins or is inside of (every tier but the fuzzy one finds only those); for a `fuzzy` hit also a word
    one edit away (two for words of six letters or more; a word maybe still being typed: its beginning)."""

    def near(tok: str, w: str) -> bool:
        limit = 1 if len(tok) < 6 else 2
        return len(tok) >= 3 and (edit_distance(tok, w, limit) <= limit
                                  or (len(tok) >= 4 and edit_distance(tok, w[:len(tok)], 1) <= 1))

    def holds(tok: str, words: list[str]) -> bool:
        if any(tok in w if len(tok) >= 3 else w.startswith(tok) for w in words):  # (as the substring tier)
            return True
        return fuzzy and any(near(tok, w) for w in words)

    if not toks:
        return frozenset()
    return frozenset(name for name, field in zip(_FIELDS, fields, strict=True)
                     if (words := field.split()) and all(holds(t, words) for t in toks))


def _hydrate_query(kind: str, keys: list[str], audience: Audience, hide: Sequence[str]) -> tuple[str, list[Any]]:
    """What each artist, album, tag or playlist result shows, read when answering from its keys, with the tracks
    behind it those listed for `audience` (a playlist: one they may see; tags: less the hidden ones)."""
    shown = listed(audience, reach="all")
    keys_json = json.dumps(keys)
    if kind == "artists":
        person = artist_shown("u.did")  # the node's library holds tracks but is nobody's artist
        return f"""
        SELECT u.did AS key, u.handle, u.display_name, u.avatar_url,
               (SELECT count(*) FROM tracks t WHERE t.artist_did = u.did AND {shown.sql}) AS track_count
        FROM users u WHERE u.did IN (SELECT value FROM json_each(?)) AND {person.sql} AND
              EXISTS (SELECT 1 FROM tracks t WHERE t.artist_did = u.did AND {shown.sql})""", \
            [*shown.params, keys_json, *person.params, *shown.params]
    if kind == "albums":
        return f"""
        SELECT a.id AS key, a.title, a.slug, a.artist_did, a.display_sha, a.thumb_sha, u.handle,
               CASE WHEN a.library_key IS NULL THEN u.display_name ELSE a.album_artist END AS display_name,
               (SELECT count(*) FROM album_tracks x JOIN tracks t ON t.id = x.track_id
                 WHERE x.album_id = a.id AND {shown.sql}) AS track_count
        FROM albums a JOIN users u ON u.did = a.artist_did
        WHERE a.id IN (SELECT value FROM json_each(?)) AND track_count > 0""", [*shown.params, keys_json]
    if kind == "tags":
        return f"""
        SELECT g.tag AS key, count(*) AS track_count FROM track_tags g JOIN tracks t ON t.id = g.track_id
        WHERE g.tag IN (SELECT value FROM json_each(?)) AND {shown.sql}
          AND g.tag NOT IN (SELECT value FROM json_each(?))
        GROUP BY g.tag""", [keys_json, *shown.params, json.dumps(list(hide))]
    seen = playlist_visible(audience.did)
    return f"""
        SELECT p.id AS key, p.name, p.owner_did, p.is_private, p.display_sha, p.thumb_sha, u.handle, u.display_name,
               (SELECT count(*) FROM playlist_items i WHERE i.playlist_id = p.id) AS track_count
        FROM playlists p JOIN users u ON u.did = p.owner_did
        WHERE p.id IN (SELECT value FROM json_each(?)) AND {seen.sql}""", \
        [keys_json, *seen.params]
