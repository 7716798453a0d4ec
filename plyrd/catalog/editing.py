"""Editing a track: validate each changed field, apply them in one transaction, swap artwork references."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..atproto.identity import IdentityResolver, is_did, normalize_handle
from ..config import Config
from ..db import Database
from ..errors import InvalidInput, PlyrdError
from ..storage import BlobStore
from .albums import album_ids_of_track, resync_album
from .publishing import publish_track
from .tracks import owned_track_for_update, set_track_tags
from .uploads import (
    MAX_DESCRIPTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_TITLE_CHARS,
    parse_bool,
    parse_fields,
    parse_json_list,
)

EDITABLE = {"title", "album", "description", "tags", "features", "self_labels", "unlisted", "remove_image"}
MAX_FEATURES = 10
ARTWORK_COLUMNS = ("image_sha", "thumb_sha", "display_sha")


@dataclass
class TrackChanges:
    values: dict[str, Any] = field(default_factory=dict)  # column -> new value
    tags: list[str] | None = None
    artwork: dict[str, str] | None = None  # new artwork blobs, already stored
    remove_image: bool = False


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
    if "remove_image" in fields:
        changes.remove_image = parse_bool("remove_image", fields["remove_image"])
    return changes


async def apply_changes(db: Database, store: BlobStore, track_id: int, did: str, changes: TrackChanges,
                        config: Config) -> list[str]:
    """Apply an edit the caller is allowed to make and republish the record; returns the blobs it released."""
    released: list[str] = []
    async with db.write() as conn:
        row = await owned_track_for_update(conn, track_id, did, "edit")
        values = dict(changes.values)
        if changes.tags is not None:
            values["tags"] = json.dumps(changes.tags)
            await set_track_tags(conn, track_id, changes.tags)
        if changes.artwork is not None or changes.remove_image:
            for column in ARTWORK_COLUMNS:
                if row[column] and await store.decref(conn, row[column]) == 0:
                    released.append(row[column])
            new = changes.artwork or {}
            for column in ARTWORK_COLUMNS:
                values[column] = new.get(column)
                if new.get(column):
                    await store.incref(conn, new[column])
            values["image_mime"] = new.get("image_mime")
        if values:
            sets = ", ".join(f"{column} = ?" for column in values)
            await conn.execute(
                f"UPDATE tracks SET {sets}, updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ?",
                [*values.values(), track_id],
            )
        await publish_track(conn, track_id, config)
        # The track's record has a new CID: albums holding it point at it by strongRef and are rewritten too.
        for album_id in await album_ids_of_track(conn, track_id):
            await resync_album(conn, album_id)
    return released
