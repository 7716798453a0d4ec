"""What the node keeps of the network's events: one handler behind both transports (plyrd.ingest: a firehose or
Jetstream), so what the tests check on the PDS's firehose holds for Jetstream too.

It keeps, and drops everything else before touching the database:

- likes and comments from any repo on tracks this node has (its own, or remote tracks it already knows), and a
  node user's likes and comments of any track (resolved to a remote track when new): so an artist here sees the
  likes plyr.fm listeners leave, and a listener's likes made in plyr.fm appear here within seconds;
- deletes of those likes and comments;
- the node users' other fm.plyr.* records (tracks, playlists, profile) written elsewhere: their reconciliation runs
  (debounced), as at sign-in, so it is no longer only at sign-in;
- track records of artists the node's users follow, and new versions of remote tracks it knows (a delete makes the
  track unavailable);
- Bluesky profile changes of people the node shows (read again from their PDS), and node users' follows;
- `#identity` (a known DID's handle is resolved again) and `#account` (an inactive repo's tracks are hidden until
  it is active again).

A bad event (a record the lexicon does not allow, a subject that is not an AT-URI) is counted and skipped; one
event never stops the batch. Every write is idempotent, so an event handled twice (at-least-once delivery after a
restart) changes nothing the second time. Records arriving this way are not verified against the repo's signature
(Jetstream is JSON with no proofs): a track record is adopted as the event says and read again from its PDS at the
next sync (plyrd.network.remote_tracks), and likes and comments only ever point at tracks the node already has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..atproto.outbox import queued_rkeys
from ..catalog.reconcile import adopt_comment, adopt_like, drop_record, valid_record
from ..errors import InvalidInput, PlyrdError
from ..ingest.events import AccountEvent, Event, IdentityEvent, RecordOp
from .follows import follow_created, follow_deleted, is_followed
from .remote_tracks import parse_track_uri

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("plyrd.network.events")

SOCIAL = ("fm.plyr.like", "fm.plyr.comment")
RECONCILED = ("fm.plyr.track", "fm.plyr.list", "fm.plyr.actor.profile")
PEOPLE_REFRESH_SECONDS = 30.0  # how stale the in-memory sets of known people may get (new ones are added at once)
RECONCILE_DEBOUNCE_SECONDS = 1.0  # a burst of a user's records (an import of 50 likes) is one reconciliation


class NetworkEvents:
    """The node's ingest handler (plyrd.ingest.events.Handler)."""

    wanted_collections = frozenset({*SOCIAL, *RECONCILED, "app.bsky.actor.profile", "app.bsky.graph.follow"})

    def __init__(self, node: Node) -> None:
        self.node = node
        self.db = node.db
        self._users: set[str] = set()  # the node's users (node_users)
        self._people: set[str] = set()  # everyone with a users row: artists, likers, followed people
        self._loaded_at = 0.0
        self._reconciles: dict[str, asyncio.Task[None]] = {}
        self.counts: dict[str, int] = {"kept": 0, "ignored": 0, "invalid": 0, "failed": 0}

    async def _refresh_people(self) -> None:
        if time.monotonic() - self._loaded_at < PEOPLE_REFRESH_SECONDS:
            return
        self._users = {r["did"] for r in await self.db.fetchall("SELECT did FROM node_users")}
        self._people = {r["did"] for r in await self.db.fetchall("SELECT did FROM users")}
        self._loaded_at = time.monotonic()

    async def _is_user(self, did: str) -> bool:
        """Whether `did` is one of the node's users. fm.plyr.* events are few: one who signed in since the sets were
        read is found in the database at once (follows, which are many, wait for the next read)."""
        if did in self._users:
            return True
        if await self.db.fetchone("SELECT 1 FROM node_users WHERE did = ?", (did,)) is None:
            return False
        self._users.add(did)
        self._people.add(did)
        return True

    async def _is_known(self, did: str) -> bool:
        """Whether the node has a users row for `did` (an artist, a liker...): asked of the database when the set
        read a moment ago does not have them (identity and account events are few enough; one index seek)."""
        if did in self._people:
            return True
        if await self.db.fetchone("SELECT 1 FROM users WHERE did = ?", (did,)) is None:
            return False
        self._people.add(did)
        return True

    def forget_cache(self) -> None:
        """Read who the node knows again at the next event (a sign-in, a new follow)."""
        self._loaded_at = 0.0

    async def handle(self, events: Sequence[Event]) -> None:
        await self._refresh_people()
        for event in events:
            try:
                kept = await self._one(event)
            except PlyrdError as e:  # a PDS that is down, a record that will not resolve: the next sync retries
                self.counts["failed"] += 1
                log.info("network event not applied", extra={"fields": {"event": _describe(event), "error": e.detail}})
                continue
            except Exception:  # one event must never stop the others, nor the stream
                self.counts["failed"] += 1
                log.warning("network event failed", exc_info=True, extra={"fields": {"event": _describe(event)}})
                continue
            self.counts["kept" if kept else "ignored"] += 1

    async def _one(self, event: Event) -> bool:
        if isinstance(event, RecordOp):
            return await self._record(event)
        if isinstance(event, IdentityEvent):
            return await self._identity(event)
        if isinstance(event, AccountEvent):
            return await self._account(event)
        return False

    # ---- records -------------------------------------------------------------------------------------------------

    async def _record(self, op: RecordOp) -> bool:
        if op.action != "delete" and (op.record is None or op.cid is None):
            return False
        if op.collection in SOCIAL:
            return await self._social(op)
        if op.collection == "fm.plyr.track" and not await self._is_user(op.did):
            return await self._remote_track(op)
        if op.collection in RECONCILED:
            return await self._is_user(op.did) and self._reconcile_soon(op.did)
        if op.collection == "app.bsky.actor.profile":
            if op.did not in self._people or op.rkey != "self":
                return False
            await self.node.sync_bsky_profile(op.did)
            return True
        if op.collection == "app.bsky.graph.follow":
            return await self._follow(op)
        return False

    async def _social(self, op: RecordOp) -> bool:
        """A like or comment: kept when it points at a track here; a node user's is kept whatever it points at."""
        mine = await self._is_user(op.did)
        if mine and op.rkey in await queued_rkeys(self.db, op.did, op.collection):
            return False  # a write of this node's on its way: the PDS's version says nothing yet
        if op.action == "delete":
            async with self.db.write() as conn:
                return await drop_record(conn, op.did, op.collection, op.rkey)
        if not valid_record(op.collection, op.record):
            self.counts["invalid"] += 1
            return False
        assert op.record is not None and op.cid is not None
        subject = op.record["subject"]
        if parse_track_uri(subject.get("uri")) is None:
            return False
        if mine:
            await self.node.remote_tracks.resolve(subject["uri"], subject.get("cid"))
        elif await self.node.remote_tracks.known(subject["uri"]) is None:
            return False  # someone else's like of a track this node does not have
        rec = {"uri": op.uri, "cid": op.cid, "value": op.record}
        adopt = adopt_like if op.collection == "fm.plyr.like" else adopt_comment
        async with self.db.write() as conn:
            if op.did not in self._people:  # a liker the node has not met: a row to name them by
                await conn.execute("INSERT OR IGNORE INTO users(did) VALUES (?)", (op.did,))
            changed = await adopt(conn, op.did, op.rkey, rec, keep=mine)
        if op.did not in self._people:
            self._people.add(op.did)
            self._spawn(self._name(op.did), f"plyrd-name-{op.did}")
        return changed

    async def _remote_track(self, op: RecordOp) -> bool:
        """A track record of someone who is not a node user: adopted when a node user follows its artist or the
        node already knows the track; its delete makes a known one unavailable."""
        if op.action == "delete":
            return await self.node.remote_tracks.mark_gone(op.uri, "its record was deleted")
        if not await is_followed(self.db, op.did) and await self.node.remote_tracks.known(op.uri) is None:
            return False
        assert op.cid is not None
        return await self.node.remote_tracks.adopt(op.did, op.rkey, op.cid, op.record) is not None

    async def _follow(self, op: RecordOp) -> bool:
        if op.did not in self._users:
            return False
        if op.action == "delete":
            changed = await follow_deleted(self.db, op.did, op.rkey)
        else:
            try:
                kept = await follow_created(self.db, op.did, op.rkey, op.record)
            except InvalidInput:
                self.counts["invalid"] += 1
                return False
            changed = kept is not None
            if kept is not None:
                self.node.follows.followed(kept.subject_did)  # their newest tracks, read by the follows worker
        self.forget_cache()
        return bool(changed)

    def _reconcile_soon(self, did: str) -> bool:
        """A node user's track, playlist or profile written elsewhere: their reconciliation, once per burst."""
        if did not in self._users:  # _record asked the database for fm.plyr.* authors already
            return False
        if did in self._reconciles and not self._reconciles[did].done():
            return True

        async def later() -> None:
            await asyncio.sleep(RECONCILE_DEBOUNCE_SECONDS)
            await self.node.reconcile_did(did)

        self._reconciles[did] = self._spawn(later(), f"plyrd-ingest-reconcile-{did}")
        return True

    # ---- identities ----------------------------------------------------------------------------------------------

    async def _name(self, did: str) -> None:
        """Someone met through an event: their handle (resolved both ways), so lists show a name, not a DID."""
        try:
            ident = await self.node.identity.resolve(did)
        except PlyrdError:
            return
        await _set_handle(self.db, did, ident.handle, ident.pds_url)

    async def _identity(self, event: IdentityEvent) -> bool:
        if not await self._is_known(event.did):
            return False
        self.node.identity.invalidate(event.did)
        await self._name(event.did)
        return True

    async def _account(self, event: AccountEvent) -> bool:
        if not await self._is_known(event.did):
            return False
        status = None if event.active else (event.status or "inactive")
        await self.node.remote_tracks.set_repo_status(event.did, status)
        return True

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self.node._tasks.add(task)
        task.add_done_callback(self.node._tasks.discard)
        return task


async def _set_handle(db: Any, did: str, handle: str | None, pds_url: str | None) -> None:
    """A person's verified handle and PDS; a handle another row still holds moves here (handles move between
    accounts; the other row learns its own when it is next resolved)."""
    async with db.write() as conn:
        if handle is not None:
            await conn.execute("UPDATE users SET handle = NULL WHERE handle = ? AND did != ?", (handle, did))
        await conn.execute("UPDATE users SET handle = ?, pds_url = coalesce(?, pds_url) WHERE did = ?",
                           (handle, pds_url, did))


def _describe(event: Event) -> str:
    if isinstance(event, RecordOp):
        return f"{event.action} {event.uri}"
    return f"{type(event).__name__} {event.did}"
