"""Following and discovery, as plyr.fm does it: whom the node's users follow on Bluesky, and what that finds.

- A node user (an account that has signed in here: the `node_users` table) has their `app.bsky.graph.follow`
  records read from their own PDS (the public com.atproto.repo.listRecords, through the SSRF-guarded client; no
  AppView): on every sign-in and daily after (`Follows.run`, the node's "follows" worker). At most MAX_FOLLOWS
  records are read per user, the newest (listRecords' order); past that the read is marked incomplete. A read that
  fails keeps what the node had. Single creates and deletes (ingest) apply through `follow_created` and
  `follow_deleted`.
- "Artists you follow" (`followed_artists`): the followed accounts with tracks the node knows, local or remote,
  counted by what discovery shows the viewer (plyrd.catalog.tracks `listed`).
- The network feed's reach (`network_reach`, for plyrd.catalog.feeds `network`): remote tracks by artists the viewer
  follows, or liked by one of the node's users.
- Backfill without ingest: on a refresh, the followed artists the node already knows by their remote tracks have
  their newest fm.plyr.track records (BACKFILL_TRACKS) read from their PDS and handed to the remote tracks'
  `adopt`, a few artists at a time; failures are logged, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from ..atproto.identity import IdentityResolver
from ..atproto.lexicon import is_datetime, is_did, is_record_key
from ..atproto.net import get_json
from ..catalog.publishing import TRACK_COLLECTION
from ..catalog.tracks import INACTIVE_REPOS, REMOTE_SOURCE, Audience, Where, artist_shown, listed
from ..db import Database
from ..errors import InvalidInput, PlyrdError, UpstreamError

log = logging.getLogger("plyrd.network.follows")

FOLLOW_COLLECTION = "app.bsky.graph.follow"
MAX_FOLLOWS = 10_000  # follow records read per user: the newest; a bound on one read (100 listRecords pages)
LIST_PAGE = 100  # listRecords' largest page
PAGE_MAX_BYTES = 2_000_000  # one page of 100 follow records is ~25 kB; of 20 track records, well under this
REFRESH_AFTER = 86400.0  # a node user's follows are read again after a day
REFRESH_CHECK = 3600.0  # how often the worker looks for follows due for a read
DORMANT_AFTER = 90 * 86400.0  # follows of someone who has not signed in for this long are no longer read daily
DAILY_BATCH = 100  # users read per check (the next check takes the rest)
BACKFILL_TRACKS = 20  # an artist's newest track records read on a refresh
BACKFILL_CONCURRENCY = 4  # PDSes are other people's servers: a few artists at a time
BACKFILL_AGAIN_AFTER = 3600.0  # an artist's records are not read again sooner (many followers signing in)
MAX_ARTISTS = 1000  # "artists you follow" in one answer


class Adopter(Protocol):
    """What backfill needs of plyrd.network.remote_tracks `RemoteTracks`."""

    async def adopt(self, did: str, rkey: str, cid: str, value: Any, *, pds_url: str | None = None,
                    handle: str | None = None) -> int | None: ...


@dataclass(frozen=True)
class Follow:
    """One app.bsky.graph.follow record of a node user: its key, whom it follows, when (unix seconds)."""

    rkey: str
    subject_did: str
    created_at: float


@dataclass(frozen=True)
class FollowRead:
    """A user's follows as read from their PDS: `complete` is False when they hold more than the node reads;
    `skipped` counts records that were not valid follows."""

    follows: list[Follow]
    complete: bool
    skipped: int


def parse_follow(rkey: Any, value: Any) -> Follow:
    """A follow record as its lexicon says it is (subject: a DID; createdAt: a datetime), or InvalidInput."""
    if not isinstance(rkey, str) or not is_record_key(rkey):
        raise InvalidInput(f"{rkey!r} is not a valid record key")
    if not isinstance(value, Mapping):
        raise InvalidInput("a follow record must be an object")
    if value.get("$type", FOLLOW_COLLECTION) != FOLLOW_COLLECTION:
        raise InvalidInput(f"a follow record's $type must be {FOLLOW_COLLECTION}")
    subject, created = value.get("subject"), value.get("createdAt")
    if not isinstance(subject, str) or not is_did(subject):
        raise InvalidInput("a follow record's subject must be a DID")
    if not isinstance(created, str) or not is_datetime(created):
        raise InvalidInput("a follow record's createdAt must be a datetime")
    return Follow(rkey, subject, datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


async def list_records(http: httpx.AsyncClient, pds_url: str, did: str, collection: str, *, limit: int,
                       cursor: str | None = None) -> dict[str, Any]:
    """One page of the public com.atproto.repo.listRecords of `did`'s repo on `pds_url` (newest first)."""
    params = {"repo": did, "collection": collection, "limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    page = await get_json(http, f"{pds_url.rstrip('/')}/xrpc/com.atproto.repo.listRecords", params=params,
                          max_bytes=PAGE_MAX_BYTES)
    if not isinstance(page.get("records"), list):
        raise UpstreamError(f"{did}'s PDS listed {collection} without a records list")
    return page


def _rkey_of(rec: Any, did: str, collection: str) -> str | None:
    """The record key of a listed record, when its URI is one of `did`'s `collection` records."""
    uri = rec.get("uri") if isinstance(rec, Mapping) else None
    prefix = f"at://{did}/{collection}/"
    return uri[len(prefix):] if isinstance(uri, str) and uri.startswith(prefix) else None


async def read_follows(http: httpx.AsyncClient, pds_url: str, did: str, *, cap: int = MAX_FOLLOWS) -> FollowRead:
    """`did`'s follow records from their PDS, page by page, at most `cap` of them (the newest)."""
    follows: list[Follow] = []
    skipped = 0
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        read = len(follows) + skipped
        if read >= cap:
            return FollowRead(follows, False, skipped)
        page = await list_records(http, pds_url, did, FOLLOW_COLLECTION, limit=min(LIST_PAGE, cap - read),
                                  cursor=cursor)
        for rec in page["records"][:cap - read]:
            try:
                follows.append(parse_follow(_rkey_of(rec, did, FOLLOW_COLLECTION), rec.get("value")))
            except (InvalidInput, AttributeError):
                skipped += 1
        next_cursor = page.get("cursor")
        # the end, or a PDS that pages in circles
        if not page["records"] or not isinstance(next_cursor, str) or not next_cursor or next_cursor in seen:
            return FollowRead(follows, True, skipped)
        seen.add(next_cursor)
        cursor = next_cursor


_NOW_SQL = "(julianday('now') - 2440587.5) * 86400.0"


async def mark_node_user(db: Database, did: str) -> None:
    """`did` signed in here: a node user from now on (their follows are read, their likes make the network feed)."""
    await db.execute(f"INSERT INTO node_users(did) VALUES (?) ON CONFLICT(did) DO UPDATE SET signed_in_at = {_NOW_SQL}",
                     (did,))


async def store_follows(db: Database, did: str, read: FollowRead) -> None:
    """Replace `did`'s follows with a complete read of them (one transaction: readers see the old set or the new)."""
    async with db.write() as conn:
        await conn.execute("DELETE FROM follows WHERE did = ?", (did,))
        await conn.executemany(
            "INSERT OR REPLACE INTO follows(did, rkey, subject_did, created_at) VALUES (?, ?, ?, ?)",
            [(did, f.rkey, f.subject_did, f.created_at) for f in read.follows])
        await conn.execute(
            "INSERT INTO node_users(did, follows_read_at, follows_count, follows_complete)"
            f" VALUES (?, {_NOW_SQL}, ?, ?) ON CONFLICT(did) DO UPDATE SET follows_read_at = excluded.follows_read_at,"
            " follows_count = excluded.follows_count, follows_complete = excluded.follows_complete",
            (did, len(read.follows), int(read.complete)))


async def follow_created(db: Database, did: str, rkey: str, record: Any) -> Follow | None:
    """A follow record written in `did`'s repo (an ingest event): kept when `did` is a node user (the network's
    other follows are none of the node's business). Returns what was kept (hand its subject to `Follows.followed`
    for a backfill), or None; InvalidInput for a record that is not a valid follow."""
    follow = parse_follow(rkey, record)
    async with db.write() as conn:
        async with conn.execute("SELECT 1 FROM node_users WHERE did = ?", (did,)) as cur:
            if await cur.fetchone() is None:
                return None
        await conn.execute("INSERT OR REPLACE INTO follows(did, rkey, subject_did, created_at) VALUES (?, ?, ?, ?)",
                           (did, follow.rkey, follow.subject_did, follow.created_at))
    return follow


async def follow_deleted(db: Database, did: str, rkey: str) -> bool:
    """A follow record deleted from `did`'s repo (an ingest event). True when the node had it."""
    return await db.execute("DELETE FROM follows WHERE did = ? AND rkey = ?", (did, rkey)) > 0


async def is_followed(db: Database, did: str) -> bool:
    """Whether one of the node's users follows `did` (ingest keeps the track records of followed artists)."""
    return await db.fetchone("SELECT 1 FROM follows WHERE subject_did = ? LIMIT 1", (did,)) is not None


async def forget_follows(conn: Any, did: str) -> None:
    """Inside account deletion's transaction: `did` is no node user any more, and whom they followed is gone."""
    await conn.execute("DELETE FROM follows WHERE did = ?", (did,))
    await conn.execute("DELETE FROM node_users WHERE did = ?", (did,))


async def due_for_refresh(db: Database, now: float, limit: int = DAILY_BATCH) -> list[str]:
    """The node users whose follows were read more than REFRESH_AFTER ago (or never), longest ago first, leaving out
    those who have not signed in for DORMANT_AFTER."""
    rows = await db.fetchall(
        "SELECT did FROM node_users WHERE coalesce(follows_read_at, 0) < ? AND signed_in_at > ?"
        " ORDER BY coalesce(follows_read_at, 0) LIMIT ?", (now - REFRESH_AFTER, now - DORMANT_AFTER, limit))
    return [r["did"] for r in rows]


# ---- reading ---------------------------------------------------------------------------------------------------

# liked by someone who signed in here (likes from the network at large do not count)
LIKED_BY_NODE_USERS = "{t}.id IN (SELECT l.track_id FROM node_users n CROSS JOIN likes l ON l.did = n.did)"


def network_reach(viewer_did: str | None, t: str = "t") -> Where:
    """The tracks the network feed draws from (with plyrd.catalog.tracks `listed(..., reach="network")`): liked by
    one of the node's users, or, for a signed-in viewer, by an artist they follow."""
    liked = LIKED_BY_NODE_USERS.format(t=t)
    if viewer_did is None:
        return Where.of(liked)
    return Where.of(f"{t}.artist_did IN (SELECT subject_did FROM follows WHERE did = ?) OR {liked}", viewer_did)


async def followed_artists(db: Database, did: str, audience: Audience) -> list[dict[str, Any]]:
    """plyr.fm's /discover/network answer: the accounts `did` follows that have tracks discovery shows `audience`
    on the node (its own or the network's), each {did, handle, display_name, avatar_url, track_count}; as plyr.fm
    orders them, the longest followed first."""
    where = listed(audience, reach="all") & artist_shown()
    rows = await db.fetchall(
        "SELECT u.did, u.handle, u.display_name, u.avatar_url, count(*) AS track_count, f.followed_at"
        " FROM (SELECT subject_did, min(created_at) AS followed_at FROM follows WHERE did = ? GROUP BY subject_did) f"
        " JOIN users u ON u.did = f.subject_did JOIN tracks t ON t.artist_did = u.did"
        f" WHERE {where.sql} GROUP BY u.did ORDER BY f.followed_at, u.did LIMIT ?",
        (did, *where.params, MAX_ARTISTS))
    return [{"did": r["did"], "handle": r["handle"] or r["did"],
             "display_name": r["display_name"] or r["handle"] or r["did"], "avatar_url": r["avatar_url"],
             "track_count": r["track_count"]} for r in rows]


async def known_artists(db: Database, dids: list[str]) -> list[str]:
    """Those of `dids` whose tracks the node knows from the network (remote tracks), with an active repo."""
    rows = await db.fetchall(
        "SELECT value AS did FROM json_each(?) d WHERE"
        f" EXISTS (SELECT 1 FROM tracks t WHERE t.artist_did = d.value AND t.source = '{REMOTE_SOURCE}')"
        f" AND d.value NOT IN ({INACTIVE_REPOS})", (json.dumps(dids),))
    return [r["did"] for r in rows]


async def known_followed_artists(db: Database, did: str) -> list[str]:
    """The accounts `did` follows whose tracks the node knows from the network (remote tracks), with an active
    repo: the ones worth reading new tracks of."""
    rows = await db.fetchall(
        "SELECT DISTINCT f.subject_did FROM follows f WHERE f.did = ?"
        f" AND EXISTS (SELECT 1 FROM tracks t WHERE t.artist_did = f.subject_did AND t.source = '{REMOTE_SOURCE}')"
        f" AND f.subject_did NOT IN ({INACTIVE_REPOS})", (did,))
    return [r["subject_did"] for r in rows]


# ---- the service -----------------------------------------------------------------------------------------------


class Follows:
    """The node's follow reader (`node.follows`): `signed_in` queues a read, `run` (a worker) reads the queued and
    the daily ones, one user at a time, and backfills the artists they follow."""

    def __init__(self, db: Database, http: httpx.AsyncClient, identity: IdentityResolver,
                 adopter: Adopter | None) -> None:
        self.db = db
        self.http = http
        self.identity = identity
        self.adopter = adopter  # node.remote_tracks; None: no backfill
        self._pending: dict[str, None] = {}  # users who signed in, in order, each once
        self._artists_pending: dict[str, None] = {}  # artists newly followed (ingest), to backfill
        self._wake = asyncio.Event()
        self._fetches = asyncio.Semaphore(BACKFILL_CONCURRENCY)
        self._artists_read: dict[str, float] = {}  # artist DID -> when backfill last read them (monotonic)

    def signed_in(self, did: str) -> None:
        """A sign-in hook (plyrd.node `_signed_in`): read their follows soon."""
        self._pending[did] = None
        self._wake.set()

    def followed(self, subject_did: str) -> None:
        """A node user followed `subject_did` (ingest: `follow_created` kept it): read their newest tracks soon,
        if the node knows them as an artist (the worker does it; an ingest handler must not wait on their PDS)."""
        self._artists_pending[subject_did] = None
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The worker: sign-ins as they come, and every REFRESH_CHECK the users whose follows are a day old."""
        next_check = 0.0
        while not stop.is_set():
            while self._pending and not stop.is_set():
                did = next(iter(self._pending))
                del self._pending[did]
                await mark_node_user(self.db, did)
                await self.refresh(did)
            if self._artists_pending and not stop.is_set():
                artists, self._artists_pending = list(self._artists_pending), {}
                await self.backfill(await known_artists(self.db, artists))
                continue
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + REFRESH_CHECK
                for did in await due_for_refresh(self.db, time.time()):
                    if stop.is_set() or self._pending:
                        break  # a sign-in goes first; the rest are due at the next check
                    await self.refresh(did)
                continue
            await self._wait(stop, next_check - time.monotonic())

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        if self._pending or self._artists_pending:
            return
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            self._wake.clear()

    async def refresh(self, did: str) -> FollowRead | None:
        """Read `did`'s follows from their PDS and keep them, then backfill the known artists among them. None when
        the read failed (logged; what the node had is kept)."""
        try:
            ident = await self.identity.resolve(did)
            read = await read_follows(self.http, ident.pds_url, did)
        except PlyrdError as e:
            log.info("follows not read", extra={"fields": {"did": did, "error": e.detail}})
            # tried: the next daily read is a day away (a PDS gone for good must not hold the head of the queue)
            await self.db.execute(f"UPDATE node_users SET follows_read_at = {_NOW_SQL} WHERE did = ?", (did,))
            return None
        await store_follows(self.db, did, read)
        log.info("follows read", extra={"fields": {"did": did, "follows": len(read.follows),
                                                    "complete": read.complete, "skipped": read.skipped}})
        await self.backfill(await known_followed_artists(self.db, did))
        return read

    async def backfill(self, dids: Iterable[str]) -> int:
        """Read the newest track records of these artists from their PDSes and adopt them (BACKFILL_CONCURRENCY at
        a time; an artist read within BACKFILL_AGAIN_AFTER is skipped). Returns how many tracks were adopted."""
        if self.adopter is None:
            return 0
        now = time.monotonic()
        if len(self._artists_read) > 10_000:
            self._artists_read = {d: at for d, at in self._artists_read.items() if now - at < BACKFILL_AGAIN_AFTER}
        todo = [d for d in dict.fromkeys(dids) if now - self._artists_read.get(d, -BACKFILL_AGAIN_AFTER)
                >= BACKFILL_AGAIN_AFTER]
        for did in todo:
            self._artists_read[did] = now
        return sum(await asyncio.gather(*(self._backfill_artist(self.adopter, did) for did in todo)))

    async def _backfill_artist(self, adopter: Adopter, did: str) -> int:
        async with self._fetches:
            try:
                ident = await self.identity.resolve(did)
                page = await list_records(self.http, ident.pds_url, did, TRACK_COLLECTION, limit=BACKFILL_TRACKS)
            except PlyrdError as e:
                log.info("followed artist's tracks not read", extra={"fields": {"did": did, "error": e.detail}})
                return 0
            adopted = 0
            for rec in page["records"][:BACKFILL_TRACKS]:
                rkey = _rkey_of(rec, did, TRACK_COLLECTION)
                cid = rec.get("cid") if isinstance(rec, Mapping) else None
                if rkey is None or not isinstance(cid, str):
                    continue
                try:
                    if await adopter.adopt(did, rkey, cid, rec.get("value"), pds_url=ident.pds_url,
                                           handle=ident.handle) is not None:
                        adopted += 1
                except Exception:  # one bad record (or a bug in adopting it) must not stop the others
                    log.warning("followed artist's track not adopted", exc_info=True,
                                extra={"fields": {"did": did, "rkey": rkey}})
            return adopted
