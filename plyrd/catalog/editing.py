"""Editing a track: validate each changed field, apply them in one transaction, swap artwork references."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..atproto.identity import IdentityResolver, is_did, normalize_handle
from ..config import Config
from ..db import Database
from ..errors import InvalidInput, PlyrdError
from ..inputs import check_text
from ..media.lyrics import MAX_LYRICS_CHARS, clean_lyrics
from ..storage import BlobStore
from . import albums
from .artwork import Artwork, set_artwork
from .downloads import parse_track_policy
from .lists import album_ids_of_track, publish_album
from .publishing import publish_track
from .tracks import owned_track_for_update, set_track_tags
from .uploads import (
    MAX_DESCRIPTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_TITLE_CHARS,
    StoredFile,
    Uploads,
    parse_bool,
    parse_fields,
    parse_json_list,
)

EDITABLE = {"title", "album", "description", "tags", "features", "self_labels", "unlisted", "remove_image",
            "download_policy", "lyrics"}
MAX_FEATURES = 10


@dataclass
class TrackChanges:
    values: dict[str, Any] = field(default_factory=dict)  # column -> new value
    tags: list[str] | None = None
    artwork: Artwork | None = None  # new artwork, already stored
    remove_image: bool = False


async def edit_track(db: Database, store: BlobStore, uploads: Uploads, resolver: IdentityResolver, config: Config,
                     track_id: int, did: str, fields: Mapping[str, str], files: Mapping[str, StoredFile]) -> None:
    """plyr.fm's edit as the client sent it: the form's fields to change, and perhaps a new cover as the file
    `image` (already in the store). Whatever was stored for it that the track does not keep, and the artwork it
    replaced, are removed, however this ends."""
    async with store.releasing(f.sha256 for f in files.values()) as stored:
        if set(files) - {"image"}:
            raise InvalidInput("only 'image' may be a file when editing a track")
        changes = await parse_changes(fields, resolver, owner_did=did)
        if (image := files.get("image")) is not None:
            changes.artwork = await uploads.store_image(image.path)
            stored += changes.artwork.blobs()
        stored += await apply_changes(db, store, track_id, did, changes, config)


async def parse_changes(fields: dict[str, str], resolver: IdentityResolver, *, owner_did: str) -> TrackChanges:
    unknown = set(fields) - EDITABLE
    if unknown:
        raise InvalidInput(f"cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(sorted(EDITABLE))}")
    changes = TrackChanges()
    parsed = parse_fields({k: v for k, v in fields.items() if k in ("title", "album", "description", "tags")})
    if "title" in fields:
        if not parsed.title:
            raise InvalidInput(f"title must be 1 to {MAX_TITLE_CHARS} characters")
        changes.values["title"] = parsed.title
    if "album" in fields:
        changes.values["album"] = parsed.album
    if "description" in fields:
        if parsed.description and len(parsed.description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(f"description must be at most {MAX_DESCRIPTION_CHARS} characters")
        changes.values["description"] = parsed.description
    if "tags" in fields:
        changes.tags = parsed.tags
    if "unlisted" in fields:
        changes.values["unlisted"] = int(parse_bool("unlisted", fields["unlisted"]))
    if "self_labels" in fields:
        changes.values["self_labels"] = json.dumps(
            parse_json_list("self_labels", fields["self_labels"], limit=MAX_LABELS, item_chars=MAX_LABEL_CHARS))
    if "features" in fields:
        names = parse_json_list("features", fields["features"], limit=MAX_FEATURES, item_chars=253)
        features: list[dict[str, Any]] = []
        for name in names:
            ident = name if is_did(name) else normalize_handle(name)
            try:
                identity = await resolver.resolve(ident)
            except PlyrdError as e:
                raise InvalidInput(f"featured artist {name} could not be found: {e.detail}") from None
            if identity.did == owner_did:
                raise InvalidInput("you cannot feature yourself on your own track")
            if all(f["did"] != identity.did for f in features):
                features.append({"did": identity.did, "handle": identity.handle})
        changes.values["features"] = json.dumps(features)
    if "download_policy" in fields:  # the track's own (tracks.download_policy); "" or "default": the artist's
        changes.values["download_policy"] = parse_track_policy("download_policy", fields["download_policy"])
    if "lyrics" in fields:  # the node's own (not in the record); empty removes them
        text = check_text(fields["lyrics"], field="lyrics")
        if len(text) > MAX_LYRICS_CHARS:
            raise InvalidInput(f"lyrics must be at most {MAX_LYRICS_CHARS} characters")
        changes.values["lyrics"] = clean_lyrics(text)
    if "remove_image" in fields:
        changes.remove_image = parse_bool("remove_image", fields["remove_image"])
    return changes


async def apply_changes(db: Database, store: BlobStore, track_id: int, did: str, changes: TrackChanges,
                        config: Config) -> list[str]:
    """Apply an edit the caller is allowed to make and republish the record; returns the blobs it released."""
    released: list[str] = []
    async with db.write() as conn:
        await owned_track_for_update(conn, track_id, did, "edit")
        values = dict(changes.values)
        if changes.tags is not None:
            values["tags"] = json.dumps(changes.tags)
            await set_track_tags(conn, track_id, changes.tags)
        if changes.artwork is not None or changes.remove_image:
            released += await set_artwork(conn, store, "tracks", track_id, changes.artwork)
        left: list[str] = []
        if "album" in values:
            values["album"], left = await _move_to_album(conn, track_id, did, values["album"])
        if values:
            sets = ", ".join(f"{column} = ?" for column in values)
            await conn.execute(
                f"UPDATE tracks SET {sets}, updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ?",
                [*values.values(), track_id],
            )
        if set(values) == {"lyrics"} and changes.tags is None and changes.artwork is None and not changes.remove_image:
            return released  # lyrics are the node's own, not in the record: nothing to republish
        await publish_track(conn, track_id, config)
        # The track's record has a new CID: albums holding it point at it by strongRef and are rewritten too, and
        # an album it left stops naming it.
        for album_id in dict.fromkeys([*await album_ids_of_track(conn, track_id), *left]):
            await publish_album(conn, album_id)
    return released


async def _move_to_album(conn: Any, track_id: int, did: str, title: str | None) -> tuple[str | None, list[str]]:
    """plyr.fm's edit of `album`, inside the edit's transaction: a title puts the track on the artist's album of
    that title (found by its slug, or made: albums.find_or_create_album), at its end, off any other album; an empty
    one takes it off its album. Returns the album name the record will carry (the album's own title) and the albums
    the track left."""
    current = await album_ids_of_track(conn, track_id)
    if not title:
        await conn.execute("DELETE FROM album_tracks WHERE track_id = ?", (track_id,))
        return None, current
    album = await albums.find_or_create_album(conn, did, title)
    if album["id"] in current:
        return album["title"], []
    await conn.execute("DELETE FROM album_tracks WHERE track_id = ?", (track_id,))
    if not await albums.link_track(conn, album["id"], track_id):
        raise InvalidInput(f"the album {album['title']!r} already holds {albums.MAX_ITEMS} tracks, the most it can")
    return album["title"], current
