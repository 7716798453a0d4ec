"""fm.plyr.list records, which albums and playlists both publish: the name a record can hold, the write through the
outbox, and an album's record rebuilt from its tracks in order.

Track code rewrites the records of the albums holding a track it changes or removes (`album_ids_of_track`,
`publish_album`); they live here, below albums.py and tracks.py, so that neither has to import the other for it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import aiosqlite

from ..atproto import lexicon, outbox, records, tids
from ..db.queries import fetchall, fetchone

LIST_COLLECTION = "fm.plyr.list"
MAX_ITEMS = 500  # the lexicon's limit on a list's items
RECORD_NAME_GRAPHEMES = 64  # the lexicon's limits on a list's name
RECORD_NAME_BYTES = 256


def record_time(ts: float) -> str:
    return records.format_datetime(datetime.fromtimestamp(ts, UTC))


def grapheme_len(text: str) -> int:
    return lexicon.grapheme_count(text)


def record_name(text: str) -> str:
    """`text` cut to what a list record's name may hold (64 graphemes, 256 UTF-8 bytes), at a character boundary.
    Album titles may be longer (256 characters, like a track's album field); the record carries what fits."""
    if grapheme_len(text) <= RECORD_NAME_GRAPHEMES and len(text.encode()) <= RECORD_NAME_BYTES:
        return text
    end = 0
    for i in range(1, len(text)):
        prefix = text[:i]
        if grapheme_len(prefix) > RECORD_NAME_GRAPHEMES or len(prefix.encode()) > RECORD_NAME_BYTES:
            break
        if grapheme_len(text[:i + 1]) > grapheme_len(prefix):  # text[i] starts a new character: a clean cut
            end = i
    return text[:end].rstrip()


async def put_list_record(conn: aiosqlite.Connection, table: str, row: sqlite3.Row, *, list_type: str, name: str,
                          items: list[dict[str, str]], did: str) -> None:
    """Write a list record through the outbox (a new TID the first time) and keep its uri/cid on the row."""
    rkey = row["rkey"] or tids.new_tid()
    record = records.list_record(list_type, record_name(name), items, created_at=record_time(row["created_at"]),
                                 updated_at=datetime.now(UTC))
    uri, cid = await outbox.enqueue_put(conn, did=did, collection=LIST_COLLECTION, rkey=rkey, record=record)
    await conn.execute(f"UPDATE {table} SET rkey = ?, record_uri = ?, record_cid = ? WHERE id = ?",
                       (rkey, uri, cid, row["id"]))


async def publish_album(conn: aiosqlite.Connection, album_id: str) -> None:
    """Rewrite the album's list record from its current tracks, in order (not before it has any), inside the
    caller's transaction: after any change to the album, and from track code after a member track was removed or
    its record's CID changed (the album's strongRefs name the old version until then). Library albums have none."""
    album = await fetchone(conn, "SELECT * FROM albums WHERE id = ?", (album_id,))
    assert album is not None
    if album["library_key"] is not None:
        return  # the node's library album (the music folder's): never published, its rkey stays NULL
    rows = await fetchall(
        conn,
        "SELECT t.record_uri, t.record_cid FROM album_tracks x JOIN tracks t ON t.id = x.track_id"
        " WHERE x.album_id = ? AND t.record_uri IS NOT NULL AND t.record_cid IS NOT NULL ORDER BY x.position",
        (album_id,))
    if album["rkey"] is None and not rows:
        return
    items = [{"uri": r["record_uri"], "cid": r["record_cid"]} for r in rows]
    await put_list_record(conn, "albums", album, list_type="album", name=album["title"], items=items,
                          did=album["artist_did"])


async def album_ids_of_track(conn: aiosqlite.Connection, track_id: int) -> list[str]:
    return [r["album_id"] for r in await fetchall(conn, "SELECT album_id FROM album_tracks WHERE track_id = ?",
                                                  (track_id,))]
