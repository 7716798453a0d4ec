"""What the index knows of each catalog row: the SQL that reads plyrd.db and the docs made from its rows.

Shared by the indexer (aiosqlite), `plyrd reindex` (the stdlib sqlite3, node stopped) and the benchmark, so all three
index exactly the same text. Only what discovery may show is indexed: listed, ready tracks; artists, albums and tags
with at least one of those; every playlist, private ones marked with their owner (only they find them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..catalog.tracks import NODE_LISTENERS, artist_shown, listed
from .index import Doc
from .text import fold_many, handle_forms

# The index holds what discovery may show any listener of the node, library tracks included (the read model's rule,
# without parameters for that audience); each search applies the searcher's own rule again when it reads the results
# (plyrd.search.service), so anonymous visitors never see a library track. The node's library is no artist.
VISIBLE_TRACK = listed(NODE_LISTENERS, reach="all").sql  # remote tracks are searchable once known
ARTIST_SHOWN = artist_shown("u.did").sql
# A library track's artist is its file's tagged artist (its artist_did is the node's library, which made nothing).
TRACK_ARTIST = "CASE WHEN t.source = 'library' THEN coalesce(t.file_tags ->> '$.artist', t.file_tags ->> " \
               "'$.album_artist') ELSE u.display_name END"

# Each query takes the keys to read as a JSON array (one bound parameter, whatever the count), or reads everything
# after a key when paging through a rebuild: {where} is replaced by one of the two.
SQL: dict[str, str] = {
    "tracks": f"""
        SELECT t.id AS key, t.artist_did, t.title, t.album, t.tags, t.features, u.handle,
               {TRACK_ARTIST} AS display_name,
               (SELECT json_group_array(json_array(a.id, a.title))
                  FROM album_tracks x JOIN albums a ON a.id = x.album_id WHERE x.track_id = t.id) AS albums
        FROM tracks t JOIN users u ON u.did = t.artist_did
        WHERE {VISIBLE_TRACK} AND {{where}} ORDER BY t.id""",
    "artists": f"""
        SELECT u.did AS key, u.handle, u.display_name FROM users u
        WHERE EXISTS (SELECT 1 FROM tracks t WHERE t.artist_did = u.did AND {VISIBLE_TRACK}) AND {ARTIST_SHOWN}
          AND {{where}}
        ORDER BY u.did""",
    "albums": f"""
        SELECT a.id AS key, a.artist_did, a.title, u.handle,
               CASE WHEN a.library_key IS NULL THEN u.display_name ELSE a.album_artist END AS display_name
        FROM albums a JOIN users u ON u.did = a.artist_did
        WHERE EXISTS (SELECT 1 FROM album_tracks x JOIN tracks t ON t.id = x.track_id
                      WHERE x.album_id = a.id AND {VISIBLE_TRACK}) AND {{where}}
        ORDER BY a.id""",
    "tags": f"""
        SELECT g.tag AS key FROM track_tags g JOIN tracks t ON t.id = g.track_id
        WHERE {VISIBLE_TRACK} AND {{where}} GROUP BY g.tag ORDER BY g.tag""",
    "playlists": """
        SELECT p.id AS key, p.owner_did, p.name, p.is_private, u.handle, u.display_name
        FROM playlists p JOIN users u ON u.did = p.owner_did
        WHERE {where} ORDER BY p.id""",
}

# The key column of each query, for the two forms of {where}.
KEY_COLUMN = {"tracks": "t.id", "artists": "u.did", "albums": "a.id", "tags": "g.tag", "playlists": "p.id"}


def sql_for_keys(kind: str) -> str:
    """Rows for the keys in one JSON array parameter."""
    return SQL[kind].format(where=f"{KEY_COLUMN[kind]} IN (SELECT value FROM json_each(?))")


def sql_after(kind: str) -> str:
    """The next rows after a key (parameters: the key, then how many), for paging through everything."""
    return SQL[kind].format(where=f"{KEY_COLUMN[kind]} > ?") + " LIMIT ?"


def first_key(kind: str) -> Any:
    return 0 if kind == "tracks" else ""


def make_doc(kind: str, row: Mapping[str, Any]) -> Doc:
    if kind == "tracks":
        albums = [a for a in json.loads(row["albums"] or "[]") if a and a[0]]
        features = [f.get("handle") for f in json.loads(row["features"] or "[]") if isinstance(f, dict)]
        tags = json.loads(row["tags"] or "[]")
        return Doc(
            "tracks", str(row["key"]),
            title=fold_many([row["title"]]),
            artist=fold_many([row["display_name"], *handle_forms(row["handle"]),
                              *[h for f in features if f for h in handle_forms(f)]]),
            album=fold_many([row["album"], *[a[1] for a in albums]]),
            tags=fold_many(tags),
            owner=row["artist_did"],
            extra={"tags": tags, "albums": [a[0] for a in albums]},
        )
    if kind == "artists":
        return Doc("artists", row["key"], title=fold_many([row["display_name"] or row["handle"]]),
                   artist=fold_many(handle_forms(row["handle"])), owner=row["key"])
    if kind == "albums":
        return Doc("albums", row["key"], title=fold_many([row["title"]]),
                   artist=fold_many([row["display_name"], *handle_forms(row["handle"])]), owner=row["artist_did"])
    if kind == "tags":
        return Doc("tags", row["key"], title=fold_many([row["key"]]))
    if kind == "playlists":
        return Doc("playlists", row["key"], title=fold_many([row["name"]]),
                   artist=fold_many([row["display_name"], *handle_forms(row["handle"])]),
                   owner=row["owner_did"], private=bool(row["is_private"]))
    raise ValueError(f"unknown kind {kind}")
