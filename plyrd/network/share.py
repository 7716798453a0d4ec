"""Sharing a track to Bluesky: an `app.bsky.feed.post` in the listener's own repo, with a link card
(`app.bsky.embed.external`) to the track's page on this node, its artwork as the card's picture, and the words the
listener wrote.

    draft = await prepare(db, blobs, track_id, audience, text, public_url)   # every check, nothing written
    shared = await post(pds_session, draft)                                   # the picture, then the post

The post is written straight through the listener's PDS session, not through plyrd.atproto.outbox: it is no part of
the catalog (nothing here is changed by it, reconcile never reads it back) but a one-off action whose result the
person waits for, so a failure is their answer at once rather than a retry in the background. Nothing is stored on
the node: a post that fails leaves at most its picture on the PDS, which the PDS deletes when no record uses it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..atproto.lexicon import grapheme_count, validate
from ..atproto.records import format_datetime
from ..atproto.xrpc import PDSSession
from ..catalog.labels import is_sensitive
from ..catalog.tracks import Audience, artist_name, is_library, open_track
from ..db import Database
from ..errors import Forbidden, InvalidInput, UpstreamError
from ..inputs import check_text
from ..storage import BlobStore

POST = "app.bsky.feed.post"
CARD = "app.bsky.embed.external"
# app.bsky.feed.post's text limits: 300 graphemes (what Bluesky counts and shows) and 3000 UTF-8 bytes.
MAX_TEXT_GRAPHEMES = 300
MAX_TEXT_BYTES = 3000
# app.bsky.embed.external's limit on the card's picture.
MAX_THUMB_BYTES = 1_000_000
ARTWORK_MIME = "image/webp"  # the node's display and thumbnail renditions of artwork (plyrd.media.artwork)

# A URL the listener typed, made a link facet (Bluesky shows only faceted URLs as links). Trailing punctuation is
# the sentence's, not the URL's.
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


@dataclass(frozen=True)
class Draft:
    """A share that passed every check: what the post will say and link to, and the artwork file for its card."""

    track_id: int
    text: str
    page_url: str
    title: str
    description: str
    thumb: Path | None


@dataclass(frozen=True)
class Shared:
    """The post as written: its record (AT-URI and CID) and where people see it on Bluesky."""

    uri: str
    cid: str
    url: str

    def to_json(self) -> dict[str, str]:
        return {"uri": self.uri, "cid": self.cid, "url": self.url}


def clean_text(value: Any) -> str:
    """The listener's words: optional, at most 300 characters as Bluesky counts them (graphemes)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("text must be a string")
    text = check_text(value, field="text").strip()
    graphemes = grapheme_count(text)
    if graphemes > MAX_TEXT_GRAPHEMES:
        raise InvalidInput(f"a bluesky post can hold at most {MAX_TEXT_GRAPHEMES} characters; this text has "
                           f"{graphemes}")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise InvalidInput(f"a bluesky post can hold at most {MAX_TEXT_BYTES} bytes of text")
    return text


def link_facets(text: str) -> list[dict[str, Any]]:
    """`app.bsky.richtext.facet` links for the URLs in `text`, by UTF-8 byte range."""
    facets = []
    for m in _URL.finditer(text):
        url = m.group().rstrip(_TRAILING)
        if len(url) <= len("https://"):
            continue
        start = len(text[: m.start()].encode("utf-8"))
        facets.append({
            "index": {"byteStart": start, "byteEnd": start + len(url.encode("utf-8"))},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}],
        })
    return facets


def card_artwork(row: sqlite3.Row, blobs: BlobStore) -> Path | None:
    """The artwork file for the card: the ~1000 px rendition when it fits the card's limit, else the thumbnail.
    None without artwork, and for artwork the artist labelled sensitive (the page's own link preview leaves it
    out too: a feed would show it unblurred)."""
    if is_sensitive(row["self_labels"]):
        return None
    for sha in (row["display_sha"], row["thumb_sha"]):
        if not sha:
            continue
        path = blobs.path_for(sha)
        try:
            if path.stat().st_size <= MAX_THUMB_BYTES:
                return path
        except FileNotFoundError:
            continue
    return None


async def prepare(db: Database, blobs: BlobStore, track_id: int, audience: Audience, text: Any,
                  public_url: str) -> Draft:
    """Check a share before anything goes out: the track is one `audience` may see (NotFound otherwise) and not
    the node's own library (Forbidden: it is never offered outside the node), the text fits a post."""
    row = await open_track(db, track_id, audience)
    if is_library(row):
        raise Forbidden("this track is from the node's music folder, which stays on this node: it cannot be shared")
    words = clean_text(text)
    title = row["title"]
    return Draft(
        track_id=track_id,
        text=words,
        page_url=f"{public_url}/track/{track_id}",
        title=title,
        description=f"{artist_name(row)} — {title}",
        thumb=card_artwork(row, blobs),
    )


def post_record(draft: Draft, *, thumb: dict[str, Any] | None, created_at: datetime | str) -> dict[str, Any]:
    """The post, validated against app.bsky.feed.post: the listener's text (its URLs as link facets) and a link
    card to the track's page. The link is only in the card: the text stays the listener's, all 300 characters."""
    external: dict[str, Any] = {"uri": draft.page_url, "title": draft.title, "description": draft.description}
    if thumb is not None:
        external["thumb"] = thumb
    record: dict[str, Any] = {"$type": POST, "text": draft.text, "createdAt": format_datetime(created_at),
                              "embed": {"$type": CARD, "external": external}}
    if facets := link_facets(draft.text):
        record["facets"] = facets
    validate(POST, record)
    return record


def bsky_url(did: str, uri: str) -> str:
    """Where a post is seen on Bluesky's web app: its author's DID and the record key."""
    return f"https://bsky.app/profile/{did}/post/{uri.rsplit('/', 1)[-1]}"


async def post(pds: PDSSession, draft: Draft, *, now: datetime | None = None) -> Shared:
    """Upload the card's picture as a blob, then write the post referencing it (the PDS keeps a blob only once a
    record uses it, so they go together). PDS refusals keep their meaning (plyrd.atproto.xrpc maps them)."""
    thumb = None
    if draft.thumb is not None:
        data = await asyncio.to_thread(draft.thumb.read_bytes)
        thumb = await pds.upload_blob(data, ARTWORK_MIME)
    record = post_record(draft, thumb=thumb, created_at=now or datetime.now(UTC))
    out = await pds.create_record(POST, record)
    uri, cid = out.get("uri"), out.get("cid")
    if not isinstance(uri, str) or not isinstance(cid, str) or f"/{POST}/" not in uri:
        raise UpstreamError("your PDS did not say where it wrote the post")
    return Shared(uri=uri, cid=cid, url=bsky_url(pds.did, uri))
