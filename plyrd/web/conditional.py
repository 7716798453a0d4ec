"""Conditional GETs: an ETag on public answers that change rarely, and 304 Not Modified (no body) when the client
already holds the answer (`If-None-Match`).

Two kinds of tag:

- `catalog_answer`: the catalog's change count (`catalog_epoch`, migration 0030: triggers bump it in the writing
  transaction whenever tracks, albums, album_tracks, track_tags, library_files or an artist's name or repo status
  change). For answers that read nothing else (the node's totals, the tag list, an artist's albums) the tag is known
  before any of the answer is computed: a client that holds it gets a 304 for one indexed read instead of an
  aggregate over every track, and a caller without the tag gets the bytes made for an earlier caller at the same
  count (a few kept per app). The count is read before the answer, so an answer is never older than its tag (at
  worst a client fetches once more than it had to).
- `body_tagged`: a hash of the answer itself, for answers that read more than the catalog (the feed's like and
  comment counts, avatars): it saves the bytes and the gzip; and the anonymous answer is kept for a moment (MOMENT)
  while the catalog count stands still, so a crowd of visitors costs one feed page a second, not one each.

Only answers everyone gets carry a shared tag: a view whose answer depends on who asks tags its anonymous answer only
(with `Vary: Authorization, Cookie`, so no cache hands it to a signed-in caller) and answers signed-in callers
without a tag, so their If-None-Match never matches a tag of the anonymous answer. Tags start with a token of this
process: a restarted node (new code or configuration, which may shape answers differently) matches no older tag.
Answers carry `Cache-Control: no-cache`: clients keep them, and ask again each time with the tag.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from quart import Response, current_app, jsonify, request

from ..subsonic.snapshot import epoch as catalog_epoch  # its one reader
from .context import node
from .viewer import current_viewer

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

BOOT = secrets.token_hex(4)  # this process's part of every tag
KEEP = 32  # shared answers kept per app (a few paths, a few queries each: the tag list's prefixes)
ANSWERS_KEY = "plyrd.conditional"
MOMENTS_KEY = "plyrd.conditional.moments"
# How long an anonymous feed page is kept while the catalog stands still (`body_tagged`): its counts may be this far
# behind. Under load it turns every visitor's request for the home page's feed into one small read.
MOMENT = 1.0
VARY = ("Authorization", "Cookie")
CACHE_CONTROL = "no-cache"


def catalog_tag(version: tuple[int, int]) -> str:
    """A tag from the catalog's change count and play count (plyrd.subsonic.snapshot.epoch): plays move it too."""
    return f"c{BOOT}.{version[0]}.{version[1]}"


def _matches(tag: str) -> bool:
    # Weak comparison: a gzipped answer carries the same tag as W/"..." (plyrd.web.compression), which matches too.
    return request.if_none_match.contains_weak(tag)


def _finish(response: Response, tag: str | None, *, viewer_dependent: bool) -> Response:
    if tag is not None:
        response.set_etag(tag)
        response.headers["Cache-Control"] = CACHE_CONTROL
    if viewer_dependent:
        response.vary.update(VARY)
    return response


def not_modified(tag: str, *, viewer_dependent: bool = False) -> Response:
    """304 with the tag and no body."""
    return _finish(Response(b"", status=304), tag, viewer_dependent=viewer_dependent)


def _shared(viewer_dependent: bool) -> bool:
    """Whether this request gets the answer everyone gets (and so a shared tag)."""
    return not viewer_dependent or current_viewer() is None


class Answers:
    """Shared answers kept for the tag they were made under, per request path and query, most recently used last:
    while the catalog stands still, an answer is made once and every caller after gets its bytes."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._kept: OrderedDict[tuple[str, bytes], tuple[str, bytes]] = OrderedDict()

    def get(self, key: tuple[str, bytes], tag: str) -> bytes | None:
        found = self._kept.get(key)
        if found is None or found[0] != tag:
            return None
        self._kept.move_to_end(key)
        return found[1]

    def put(self, key: tuple[str, bytes], tag: str, body: bytes) -> None:
        self._kept[key] = (tag, body)
        self._kept.move_to_end(key)
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)


def _answers() -> Answers:
    kept: Answers = current_app.extensions.setdefault(ANSWERS_KEY, Answers())  # per app: each has its own database
    return kept


async def catalog_answer(make: Callable[[], Awaitable[Any]], *, viewer_dependent: bool = False) -> Response:
    """JSON of `await make()`, tagged with the catalog's change count: a 304 without calling `make` when the
    client's tag is current, and the bytes made for an earlier caller while the count has not moved. `make` must
    read only what `catalog_epoch` counts. `viewer_dependent`: the answer differs for signed-in callers (only the
    anonymous answer is tagged and kept)."""
    if not _shared(viewer_dependent):
        return _finish(jsonify(await make()), None, viewer_dependent=True)
    tag = catalog_tag(await node().db.read_fn(catalog_epoch))  # before the answer: the answer is at least this new
    if _matches(tag):
        return not_modified(tag, viewer_dependent=viewer_dependent)
    key = (request.path, request.query_string)
    answers = _answers()
    body = answers.get(key, tag)
    if body is None:
        response = jsonify(await make())
        answers.put(key, tag, await response.get_data())
    else:
        response = Response(body, mimetype="application/json")
    return _finish(response, tag, viewer_dependent=viewer_dependent)


class Moments:
    """Anonymous answers kept for a moment: path and query -> (catalog count, when, tag, body), most recent last."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._kept: OrderedDict[tuple[str, bytes], tuple[int, float, str, bytes]] = OrderedDict()

    def get(self, key: tuple[str, bytes], count: int) -> tuple[str, bytes] | None:
        found = self._kept.get(key)
        if found is None or found[0] != count or time.monotonic() - found[1] > MOMENT:
            return None
        return found[2], found[3]

    def put(self, key: tuple[str, bytes], count: int, since: float, tag: str, body: bytes) -> None:
        self._kept[key] = (count, since, tag, body)
        self._kept.move_to_end(key)
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)


def body_tagged(view: F) -> F:
    """Tag the view's anonymous 200 JSON answers with a hash of their body (answers to signed-in callers, which may
    differ, get none), and answer 304 when the client holds that body already. The anonymous answer is also kept for
    MOMENT seconds while the catalog's change count stands still: every visitor of a busy node's home page asks for
    the same feed page, and its like, comment and play counts may be that much behind, never a track taken down,
    hidden, added or edited (those move the count)."""

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_viewer() is not None:
            response = await view(*args, **kwargs)
            if isinstance(response, Response):
                response.vary.update(VARY)
            return response
        since = time.monotonic()
        count = (await node().db.read_fn(catalog_epoch))[0]  # before the answer: it is at least this new
        key = (request.path, request.query_string)
        moments: Moments = current_app.extensions.setdefault(MOMENTS_KEY, Moments())
        kept = moments.get(key, count)
        if kept is not None:
            tag, body = kept
            if _matches(tag):
                return not_modified(tag, viewer_dependent=True)
            return _finish(Response(body, mimetype="application/json"), tag, viewer_dependent=True)
        response = await view(*args, **kwargs)
        if not isinstance(response, Response):
            return response
        response.vary.update(VARY)
        if response.status_code != 200 or response.mimetype != "application/json":
            return response
        body = await response.get_data()
        tag = "h" + hashlib.blake2b(body, digest_size=12).hexdigest()
        moments.put(key, count, since, tag, body)
        if _matches(tag):
            return not_modified(tag, viewer_dependent=True)
        return _finish(response, tag, viewer_dependent=True)

    return cast(F, wrapper)
