"""Artwork: a cover image as the blobs it is stored in, and the references rows hold on them.

Tracks, albums and playlists keep a cover in the same four columns: `image_sha` (the image as sent, or turned
upright without its EXIF), `image_mime`, `thumb_sha` (a 96 px WebP) and `display_sha` (a ~1000 px WebP). `Artwork` is
that value, and the one place that knows which blobs a cover is made of: how an image becomes one, how a row takes
and lets go of one, which files it holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..storage import BlobStore

if TYPE_CHECKING:
    from ..media.artwork import Artwork as RenderedImage

COLUMNS = ("image_sha", "image_mime", "thumb_sha", "display_sha")  # the same on tracks, albums and playlists
TABLES = ("tracks", "albums", "playlists")
_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"


@dataclass(frozen=True)
class Artwork:
    """A stored cover: three blobs and the type of the first."""

    image_sha: str
    image_mime: str
    thumb_sha: str
    display_sha: str

    @classmethod
    def of(cls, value: Mapping[str, Any] | sqlite3.Row | None) -> Artwork | None:
        """The artwork a row's four columns (or a job's payload, which holds the same keys) name; None for none."""
        if value is None or not value["image_sha"]:
            return None
        return cls(*(value[c] for c in COLUMNS))

    def blobs(self) -> list[str]:
        return [self.image_sha, self.thumb_sha, self.display_sha]

    def columns(self) -> dict[str, str]:
        """Column -> value; also what an upload's job payload holds."""
        return asdict(self)

    async def incref(self, conn: aiosqlite.Connection, store: BlobStore) -> None:
        """Take a reference on each of its blobs, inside the caller's transaction."""
        for sha in self.blobs():
            await store.incref(conn, sha)

    async def decref(self, conn: aiosqlite.Connection, store: BlobStore) -> list[str]:
        """Drop a reference on each of its blobs, inside the caller's transaction; returns those nothing references
        any more (for store.remove_unreferenced once the transaction has committed)."""
        return [sha for sha in self.blobs() if await store.decref(conn, sha) == 0]


def column_values(artwork: Artwork | None) -> tuple[str | None, ...]:
    """What the four columns hold for this artwork, in the order of COLUMNS (all None for none)."""
    return tuple(getattr(artwork, c) if artwork is not None else None for c in COLUMNS)


async def store_rendered(store: BlobStore, image: RenderedImage) -> Artwork:
    """Store a checked image and its renditions (unreferenced until a row takes them); on failure nothing stays."""
    async with store.releasing() as stored:
        for data, mime in ((image.original_bytes, image.original_mime), (image.thumb_webp, "image/webp"),
                           (image.display_webp, "image/webp")):
            stored.append((await store.put_bytes(data, mime)).sha256)
        artwork = Artwork(stored[0], image.original_mime, stored[1], stored[2])
        stored.clear()  # stored whole: the caller's to reference (or to release) now
    return artwork


async def set_artwork(conn: aiosqlite.Connection, store: BlobStore, table: str, row_id: int | str,
                      artwork: Artwork | None) -> list[str]:
    """Point a track, album or playlist at this artwork (None: at none) inside the caller's transaction. The new
    references are taken before the old ones are dropped, so the same image sent again never reaches zero. Returns
    the blobs let go of (for store.remove_unreferenced once the transaction has committed)."""
    if table not in TABLES:
        raise ValueError(f"{table} has no artwork")
    async with conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE id = ?", (row_id,)) as cur:
        old = Artwork.of(await cur.fetchone())
    if artwork is not None:
        await artwork.incref(conn, store)
    await conn.execute(
        f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in COLUMNS)}, updated_at = {_NOW_SQL} WHERE id = ?",
        (*column_values(artwork), row_id))
    return await old.decref(conn, store) if old is not None else []
