"""The audio of remote tracks (plyrd.network.remote_tracks): fetched from the artist's PDS on first play, verified,
and kept in the blob store as a bounded cache.

A remote track's record names its audio by blob CID, and a blob CID's digest is the SHA-256 the blob store keys by
(tracks.original_sha). So what `com.atproto.sync.getBlob` answers is verified while it is stored: streamed into
tmp/ through a BlobWriter (never held in memory), hashed as it goes, capped at the size the record declares (and the
lexicon's 100 MB), and stored only when its digest is the one the CID names. Otherwise nothing stays (no file, no
row) and the caller gets errors.UpstreamError, a 502.

The cache: one `remote_audio` row per blob it keeps, holding one reference on it (BlobStore.incref), taken in the
transaction that inserts the row. Past `network.remote_audio_cache_mb` the least recently played go first: rows
deleted and references dropped in one transaction, files freed by the store afterwards (remove_unreferenced), and
only when nothing else references them (a remote track whose bytes are also a local upload's keeps them). A blob
being served right now (`held`) is never evicted under its response; with a cap of 0 MB a fetched file is served
and released when its response has its file open (every play fetches again; nothing is kept).

- Played again: the row's last_played_at is touched at most once a minute (a player's range requests are one play).
- One download per blob: concurrent plays of the same audio wait for the same fetch, which is cancelled only when
  every one of them has gone (then its partial file goes too). At most CONCURRENT_FETCHES run at once (tmp/ holds
  each until it is verified); plays of other audio wait their turn.
- A HEAD of uncached audio fetches it too: its length and ETag are those of the verified file.
- A PDS that answers a 4xx, or cannot be reached, may be one the artist has left: the DID is resolved again and,
  when it names another PDS, users.pds_url is updated and the fetch tried there once.
- A record with only an audioUrl has no blob to verify: `open_url` streams it through the guarded client,
  uncached, one range at a time when the listener asks for one (Subsonic's stream, and the web player's
  /audio/remote/<id>: same origin, which Web Audio needs to play it at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

import aiosqlite
import httpx

from ..atproto.cbor import blob_cid
from ..atproto.identity import IdentityResolver
from ..atproto.net import BlockedAddress, UpstreamStatusError, describe_url
from ..catalog.tracks import is_remote
from ..db import Database
from ..db.queries import fetchall, fetchone
from ..errors import InvalidInput, NotFound, PlyrdError, UpstreamError
from ..storage import DEFAULT_MIME, BlobStore, BlobWriter
from ..urls import check_url

log = logging.getLogger("plyrd.network.remote_audio")

MAX_AUDIO_BYTES = 104_857_600  # fm.plyr.track's audioBlob maxSize
TOUCH_EVERY = 60.0  # seconds: a replay marks its row played at most this often
CHUNK = 256 * 1024
# Downloads at once: each may hold up to 100 MB in tmp/ until it is verified, and PDSes are other people's servers.
CONCURRENT_FETCHES = 4
_RANGE = re.compile(r"bytes=(\d{1,15}-\d{0,15}|-\d{1,15})")
_CONTENT_RANGE = re.compile(r"bytes \d{1,15}-\d{1,15}/(\d{1,15}|\*)")
MAX_REDIRECTS = 3  # an audioUrl's hops (a storage service's redirect to its CDN), each checked again
_ERROR_BODY_LIMIT = 64 * 1024
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"
# 4xx statuses that say nothing about where the repo lives
_NOT_A_MOVE = {408, 413, 429}

def served_mime(row: sqlite3.Row) -> str:
    """The Content-Type a remote track's audio is served with: the record's type when it is audio, else bytes. The
    type comes from someone else's record, and the node's origin must never serve their bytes as a page."""
    return served_mime_of(str(row["original_mime"] or ""))


def served_mime_of(mime: str) -> str:
    return mime if mime.startswith("audio/") and all(c.isalnum() or c in "/.+-" for c in mime) else DEFAULT_MIME


@dataclass(frozen=True)
class _Source:
    """Where a remote track's audio blob is and what it must be."""

    track_id: int
    did: str
    sha256: str
    cid: str
    size: int | None
    pds_url: str | None
    mime: str


class _Unreachable(UpstreamError):
    """The PDS did not answer at all (the artist may have moved away from it)."""


@dataclass
class _Fetch:
    task: asyncio.Task[None]
    waiters: int = 0


@dataclass
class UpstreamAudio:
    """An audioUrl's response, open: its body is read with `chunks()` (capped at MAX_AUDIO_BYTES); `aclose()` ends it
    (safe to call more than once). `partial`: the body is the range asked for, `content_range` says which; `size` is
    the body's length when the host told it."""

    response: httpx.Response
    mime: str
    size: int | None
    service: str
    partial: bool = False
    content_range: str | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in self.response.aiter_bytes(CHUNK):
                sent += len(chunk)
                if sent > MAX_AUDIO_BYTES:
                    raise UpstreamError(f"{self.service} sent more than the {MAX_AUDIO_BYTES} bytes a track may have")
                yield chunk
        except httpx.HTTPError as e:
            raise UpstreamError(f"{self.service} stopped sending the audio: {e or type(e).__name__}") from e

    async def aclose(self) -> None:
        await self.response.aclose()


class RemoteAudio:
    def __init__(self, db: Database, blobs: BlobStore, http: httpx.AsyncClient, identity: IdentityResolver,
                 max_bytes: int) -> None:
        self.db = db
        self.blobs = blobs
        self.http = http
        self.identity = identity
        self.max_bytes = max_bytes
        self._fetches: dict[str, _Fetch] = {}
        self._pins: Counter[str] = Counter()  # blobs whose responses are being set up right now (`held`)
        self._deferred = False  # over the cap, but what would go was pinned: evict again when a pin is let go
        self._evicting: asyncio.Task[int] | None = None
        self._slots = asyncio.Semaphore(CONCURRENT_FETCHES)

    # ---- playing -----------------------------------------------------------------------------------------------

    async def ensure(self, row: sqlite3.Row) -> str:
        """The sha256 of the remote track's audio, stored in the blob store: from the cache (marked as played), or
        fetched from the artist's PDS and verified now. Raises NotFound for a track that has no audio blob to play
        (unavailable, or only an audioUrl), UpstreamError when the PDS fails or sends other bytes."""
        src = await self._source(row)
        if not await self._kept(src.sha256):
            await self._fetch_shared(src)
        return src.sha256

    @contextlib.asynccontextmanager
    async def held(self, row: sqlite3.Row) -> AsyncIterator[str]:
        """`ensure`, with the blob kept from eviction until the block ends: open the file (serve it, start its
        transcode) inside the block; once it is open, eviction may remove the name, never the bytes being read."""
        sha = row["original_sha"] or ""
        self._pins[sha] += 1
        try:
            yield await self.ensure(row)
        finally:
            self._pins[sha] -= 1
            if self._pins[sha] <= 0:
                del self._pins[sha]
            if self._deferred:
                self._evict_soon()

    async def _source(self, row: sqlite3.Row) -> _Source:
        if not is_remote(row):
            raise ValueError("not a remote track")
        if row["status"] != "ready":
            raise NotFound("this track is no longer available from its artist")
        sha = row["original_sha"]
        found = await self.db.fetchone(
            "SELECT r.audio_cid, r.audio_size, u.pds_url FROM tracks t JOIN users u ON u.did = t.artist_did"
            " LEFT JOIN remote_tracks r ON r.track_id = t.id WHERE t.id = ?", (row["id"],))
        if not sha or found is None or not found["audio_cid"]:
            raise NotFound("this track's audio is not a blob in its artist's repository (it plays from its audioUrl)")
        if blob_cid(sha) != found["audio_cid"]:  # the catalog's own bookkeeping is off: refuse rather than guess
            raise UpstreamError(f"the track's record names audio blob {found['audio_cid']}, whose digest is not {sha}")
        return _Source(int(row["id"]), str(row["artist_did"]), sha, found["audio_cid"], found["audio_size"],
                       found["pds_url"], served_mime(row))

    async def _kept(self, sha: str) -> bool:
        """Whether the blob is in the store (its cache row touched, or taken when the bytes were there already)."""
        found = await self.db.fetchone(
            "SELECT b.external, a.last_played_at FROM blobs b LEFT JOIN remote_audio a ON a.sha256 = b.sha256"
            " WHERE b.sha256 = ?", (sha,))
        if found is None:
            return False
        if found["external"]:
            # A library file is named by its fingerprint, not its hash: a record naming one must not reach it.
            log.warning("a remote track names a library file's fingerprint", extra={"fields": {"sha256": sha}})
            raise NotFound("this track's audio cannot be played here")
        if not await asyncio.to_thread(self.blobs.path_for(sha).is_file):
            return False
        if found["last_played_at"] is None:
            return await self._adopt(sha)
        if found["last_played_at"] < time.time() - TOUCH_EVERY:
            async with self.db.write() as conn:
                await conn.execute(f"UPDATE remote_audio SET last_played_at = {_NOW_SQL} WHERE sha256 = ?", (sha,))
        return True

    async def _adopt(self, sha: str) -> bool:
        """The bytes are stored already (a local track's, or unreferenced ones not collected yet): the cache takes its
        own reference, so they stay while it keeps them whatever the other holder does."""
        async with self.blobs.releasing() as released:
            async with self.db.write() as conn:
                taken = await fetchone(
                    conn, "INSERT INTO remote_audio(sha256, size) SELECT sha256, size FROM blobs WHERE sha256 = ?"
                    " ON CONFLICT(sha256) DO NOTHING RETURNING sha256", (sha,))
                if taken is None:
                    return await fetchone(conn, "SELECT 1 FROM remote_audio WHERE sha256 = ?", (sha,)) is not None
                await self.blobs.incref(conn, sha)
                released += await self._evict(conn, keep={sha})
        return True

    # ---- fetching ----------------------------------------------------------------------------------------------

    async def _fetch_shared(self, src: _Source) -> None:
        """One fetch per blob, whoever asks while it runs; cancelled when the last one waiting for it goes."""
        sha = src.sha256
        fetch = self._fetches.get(sha)
        if fetch is None:
            fetch = self._fetches[sha] = _Fetch(asyncio.get_running_loop().create_task(self._fetch(src)))
            fetch.task.add_done_callback(lambda task, f=fetch: self._fetch_done(sha, f))
        fetch.waiters += 1
        try:
            await asyncio.shield(fetch.task)
        finally:
            fetch.waiters -= 1
            if fetch.waiters == 0 and not fetch.task.done():
                self._forget(sha, fetch)  # a later play starts afresh rather than join a fetch being cancelled
                fetch.task.cancel()

    def _fetch_done(self, sha: str, fetch: _Fetch) -> None:
        self._forget(sha, fetch)
        if not fetch.task.cancelled():
            fetch.task.exception()  # retrieved: every waiter may have gone

    def _forget(self, sha: str, fetch: _Fetch) -> None:
        if self._fetches.get(sha) is fetch:
            del self._fetches[sha]

    async def _fetch(self, src: _Source) -> None:
        limit = MAX_AUDIO_BYTES if src.size is None else min(max(src.size, 0), MAX_AUDIO_BYTES)
        async with self._slots, self.blobs.releasing() as released:
            began = time.monotonic()
            async with await self.blobs.open_writer(max_bytes=limit) as writer:
                service = await self._download(src, writer, limit)
                digest = await writer.digest()
                if digest != src.sha256:
                    raise UpstreamError(f"{service} sent audio whose SHA-256 is {digest}, not {src.sha256} as the "
                                        f"track's record (blob {src.cid}) says: refused")
                blob = await writer.commit(src.mime)
            released.append(blob.sha256)
            async with self.db.write() as conn:
                taken = await fetchone(conn, "INSERT INTO remote_audio(sha256, size) VALUES (?, ?)"
                                       " ON CONFLICT(sha256) DO NOTHING RETURNING sha256", (blob.sha256, blob.size))
                if taken is not None:
                    await self.blobs.incref(conn, blob.sha256)
                released += await self._evict(conn, keep={blob.sha256})
        log.info("remote audio fetched", extra={"fields": {
            "sha256": src.sha256, "did": src.did, "bytes": blob.size, "service": service,
            "seconds": round(time.monotonic() - began, 3)}})

    async def _download(self, src: _Source, writer: BlobWriter, limit: int) -> str:
        """The blob from the artist's PDS into `writer` (which hashes it); the PDS as named in errors."""
        pds = src.pds_url or await self._moved(src)
        if pds is None:
            raise UpstreamError(f"the PDS of {src.did} is not known")
        try:
            return await self._get_blob(pds, src, writer, limit)
        except UpstreamError as e:
            moved = isinstance(e, _Unreachable) or (isinstance(e, UpstreamStatusError) and 400 <= e.status < 500
                                                    and e.status not in _NOT_A_MOVE)
            if not moved or writer.size or not (elsewhere := await self._moved(src)):
                raise
        return await self._get_blob(elsewhere, src, writer, limit)

    async def _moved(self, src: _Source) -> str | None:
        """The artist's PDS resolved afresh from their DID, stored, when it is not the one the node knew; else None."""
        try:
            identity = await self.identity.resolve(src.did, fresh=True)
        except PlyrdError as e:
            log.info("artist's DID did not resolve", extra={"fields": {"did": src.did, "error": e.detail}})
            return None
        pds = identity.pds_url.rstrip("/")
        if pds == (src.pds_url or "").rstrip("/"):
            return None
        async with self.db.write() as conn:
            await conn.execute(f"UPDATE users SET pds_url = ?, updated_at = {_NOW_SQL} WHERE did = ?", (pds, src.did))
        log.info("artist's PDS changed", extra={"fields": {"did": src.did, "was": src.pds_url, "now": pds}})
        return pds

    async def _get_blob(self, pds: str, src: _Source, writer: BlobWriter, limit: int) -> str:
        service = f"the artist's PDS {describe_url(pds)}"
        try:
            async with self.http.stream("GET", f"{pds.rstrip('/')}/xrpc/com.atproto.sync.getBlob",
                                        params={"did": src.did, "cid": src.cid}) as response:
                if not response.is_success:
                    raise await _status_error(service, response)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise UpstreamError(f"{service} offered {declared} bytes for blob {src.cid}, more than the {limit} "
                                        "its record declares")
                async for chunk in response.aiter_bytes(CHUNK):
                    if writer.size + len(chunk) > limit:
                        raise UpstreamError(f"{service} sent more than the {limit} bytes the record declares for "
                                            f"blob {src.cid}")
                    await writer.write(chunk)
        except BlockedAddress as e:
            raise UpstreamError(f"{service} is refused: {e.detail}") from None
        except httpx.TimeoutException:
            raise _Unreachable(f"{service} did not answer in time") from None
        except httpx.RequestError as e:
            raise _Unreachable(f"could not reach {service}: {e or type(e).__name__}") from e
        return service

    # ---- eviction ----------------------------------------------------------------------------------------------

    async def evict(self) -> int:
        """Drop the least recently played past the cap (at start-up, when the cap may have shrunk); returns how many
        files were freed."""
        async with self.blobs.releasing() as released:
            async with self.db.write() as conn:
                released += await self._evict(conn)
            freed = len(released)
        return freed

    def _evict_soon(self) -> None:
        """Evict in a task of its own: a response's end must not wait for it, nor a cancelled request stop it."""
        if self._evicting is None or self._evicting.done():
            self._evicting = asyncio.get_running_loop().create_task(self._evict_logged())

    async def _evict_logged(self) -> int:
        try:
            return await self.evict()
        except Exception:
            log.warning("remote audio eviction failed", exc_info=True)
            return 0

    async def _evict(self, conn: aiosqlite.Connection, keep: Iterable[str] = ()) -> list[str]:
        """Inside the caller's transaction: least recently played rows out (not `keep`'s, not pinned ones) until the
        total fits the cap; returns the blobs nothing references any more, for remove_unreferenced after commit."""
        total = await fetchone(conn, "SELECT coalesce(sum(size), 0) FROM remote_audio")
        excess = (int(total[0]) if total else 0) - self.max_bytes
        released: list[str] = []
        if excess > 0:
            spared = {*keep, *self._pins}
            for r in await fetchall(conn, "SELECT sha256, size FROM remote_audio ORDER BY last_played_at, sha256"):
                if excess <= 0:
                    break
                if r["sha256"] in spared:
                    continue
                await conn.execute("DELETE FROM remote_audio WHERE sha256 = ?", (r["sha256"],))
                if await self.blobs.decref(conn, r["sha256"]) == 0:
                    released.append(r["sha256"])
                excess -= r["size"]
        self._deferred = excess > 0
        return released

    # ---- audioUrl ----------------------------------------------------------------------------------------------

    async def open_url(self, row: sqlite3.Row, range_header: str | None = None) -> UpstreamAudio:
        """A remote track with only an audioUrl: its response, open, through the guarded client (redirects followed
        up to MAX_REDIRECTS, each target checked as a stored URL is). Nothing is cached: there is no digest to verify
        the bytes against. A listener's `Range` (one plain byte range, nothing else) is asked of the host, which may
        answer it (206, relayed as such) or send the whole file."""
        if not is_remote(row):
            raise ValueError("not a remote track")
        if row["status"] != "ready":
            raise NotFound("this track is no longer available from its artist")
        found = await self.db.fetchone("SELECT audio_url FROM remote_tracks WHERE track_id = ?", (row["id"],))
        if found is None or not found["audio_url"]:
            raise NotFound("this track has no audio URL")
        url = _checked(found["audio_url"])
        wanted = range_header.strip() if range_header else ""
        headers = {"Range": wanted} if _RANGE.fullmatch(wanted) else {}
        for _ in range(MAX_REDIRECTS + 1):
            service = f"the track's audio host {describe_url(url)}"
            try:
                response = await self.http.send(self.http.build_request("GET", url, headers=headers), stream=True)
            except BlockedAddress as e:
                raise UpstreamError(f"{service} is refused: {e.detail}") from None
            except httpx.TimeoutException:
                raise UpstreamError(f"{service} did not answer in time") from None
            except httpx.RequestError as e:
                raise UpstreamError(f"could not reach {service}: {e or type(e).__name__}") from e
            if response.is_redirect:
                await response.aclose()
                url = _checked(urljoin(url, response.headers.get("location", "")))
                continue
            if not response.is_success:
                error = await _status_error(service, response)
                await response.aclose()
                raise error
            declared = response.headers.get("content-length", "")
            size = int(declared) if declared.isdigit() else None
            if size is not None and size > MAX_AUDIO_BYTES:
                await response.aclose()
                raise UpstreamError(f"{service} offered {size} bytes, more than a track may have")
            upstream_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            mime = upstream_type if upstream_type.startswith("audio/") else served_mime(row)
            content_range = response.headers.get("content-range", "").strip()
            partial = response.status_code == 206 and bool(headers)
            if partial and not _CONTENT_RANGE.fullmatch(content_range):
                await response.aclose()
                raise UpstreamError(f"{service} answered a range without a valid Content-Range")
            return UpstreamAudio(response, served_mime_of(mime), size, service, partial,
                                 content_range if partial else None)
        raise UpstreamError(f"the track's audio URL redirected more than {MAX_REDIRECTS} times")


def _checked(url: str) -> str:
    try:
        return check_url(url, field="the track's audio URL")
    except InvalidInput as e:
        raise UpstreamError(e.detail) from None


async def _status_error(service: str, response: httpx.Response) -> UpstreamStatusError:
    """A non-2xx answer as an error naming the service, with the XRPC error when the body carries one."""
    body = b""
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
    error = message = None
    with contextlib.suppress(ValueError):
        payload = json.loads(body[:_ERROR_BODY_LIMIT])
        if isinstance(payload, dict):
            error = payload.get("error") if isinstance(payload.get("error"), str) else None
            message = payload.get("message") if isinstance(payload.get("message"), str) else None
    detail = f"{service} answered HTTP {response.status_code}"
    if error or message:
        detail += ": " + ": ".join(part for part in (error, message) if part)
    return UpstreamStatusError(detail, status=response.status_code, error=error, message=message)
