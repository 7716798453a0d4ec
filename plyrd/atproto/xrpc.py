"""Writing to a user's PDS: one session interface over OAuth (DPoP-bound) and app-password credentials.

The rest of plyrd holds a `PDSSession` and calls record/blob methods; token refresh, DPoP nonces and the
mapping of XRPC errors to plyrd's domain errors happen here. When a session refreshes its tokens it calls
`on_refresh(new_tokens)` so the caller can persist them (refresh tokens are single use: the old one is dead).

Writes never send `validate`: `validate: true` fails on PDSes that do not know the `fm.plyr.*` lexicons,
so plyrd validates records itself before writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import httpx

from plyrd.atproto.dpop import NonceStore, dpop_request, send_capped
from plyrd.atproto.jwt import ES256Key, JWTError, decode_unverified
from plyrd.atproto.oauth import EXPIRY_MARGIN, JsonState, OAuthClient, SessionExpired, TokenSet
from plyrd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PlyrdError,
    RateLimited,
    TooLarge,
    Unauthenticated,
    UpstreamError,
)

log = logging.getLogger(__name__)

MAX_APPLY_WRITES = 200  # the PDS refuses larger applyWrites batches
# Record and list responses are JSON; a listRecords page of 100 large records stays well under this.
MAX_RESPONSE = 16 * 1024 * 1024

Body = bytes | AsyncIterable[bytes]


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET  # "leave swapRecord out", as opposed to None ("create only")


# --------------------------------------------------------------------------- errors


def retry_after(resp: httpx.Response, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait before trying again (0 when the moment has passed), or None.

    `Retry-After` (RFC 9110: delay seconds or an HTTP date) wins; otherwise ATProto's `RateLimit-Reset`, which the
    reference PDS sends as the unix time its window resets (a small number is taken as delay seconds, the IETF
    draft's meaning). That header rides on every answer of a limited route, so it only counts on a 429 or when
    `RateLimit-Remaining` is 0: a 503 from a route with points to spare must not wait for the window."""
    now = time.time() if now is None else now
    value = resp.headers.get("retry-after", "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                # HTTP dates are GMT; "-0000" comes back without a zone and must not be read as local time.
                seconds = when.replace(tzinfo=when.tzinfo or UTC).timestamp() - now
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    reset = resp.headers.get("ratelimit-reset", "").strip()
    if reset and (resp.status_code == 429 or resp.headers.get("ratelimit-remaining", "").strip() == "0"):
        try:
            at = float(reset)
        except ValueError:
            return None
        if math.isfinite(at):
            return max(0.0, at - now if at >= 1e9 else at)
    return None


def xrpc_error(resp: httpx.Response) -> PlyrdError:
    """Map a failed XRPC response to a domain error. The XRPC error name is kept on `.xrpc_error`, the HTTP status
    on `.status` and the wait the server asked for, in seconds, on `.retry_after` (None when it named none)."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    name = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    message = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
    host = resp.request.url.host if resp.request else "the PDS"
    text = message or name or f"HTTP {status}"
    err: PlyrdError
    if status == 413 or name in ("BlobTooLarge", "PayloadTooLarge"):
        err = TooLarge(f"your PDS ({host}) refused the upload as too large: {text}")
    elif status == 404 or name in ("RecordNotFound", "RepoNotFound", "BlobNotFound"):
        err = NotFound(text)
    elif name == "InvalidSwap":
        err = Conflict(f"the record changed on your PDS since it was read: {text}")
    elif status == 401 or name in ("ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthMissing"):
        err = Unauthenticated(f"your PDS ({host}) did not accept the session: {text}")
    elif status == 403:
        err = Forbidden(f"your PDS ({host}) refused: {text}")
    elif status == 429:
        err = RateLimited(f"your PDS ({host}) is rate limiting requests: {text}")
    elif status == 400:
        err = InvalidInput(f"your PDS ({host}) refused the request: {text}")
    else:
        err = UpstreamError(f"your PDS ({host}) failed (HTTP {status}): {text}")
    err.xrpc_error = name  # type: ignore[attr-defined]
    err.status = status  # type: ignore[attr-defined]
    err.retry_after = retry_after(resp)  # type: ignore[attr-defined]
    return err


def _xrpc_name(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class PDSSession(Protocol):
    """What plyrd needs from a signed-in user's PDS. `repo` is always the session's own DID."""

    @property
    def did(self) -> str: ...

    @property
    def pds_url(self) -> str: ...

    async def get_record(self, collection: str, rkey: str, *, cid: str | None = None) -> dict[str, Any]: ...

    async def list_records(
        self, collection: str, *, limit: int = 50, cursor: str | None = None, reverse: bool = False
    ) -> dict[str, Any]: ...

    async def create_record(
        self,
        collection: str,
        record: Mapping[str, Any],
        *,
        rkey: str | None = None,
        swap_commit: str | None = None,
    ) -> dict[str, Any]: ...

    async def put_record(
        self,
        collection: str,
        rkey: str,
        record: Mapping[str, Any],
        *,
        swap_record: str | _Unset | None = UNSET,
        swap_commit: str | None = None,
    ) -> dict[str, Any]: ...

    async def delete_record(
        self, collection: str, rkey: str, *, swap_record: str | None = None, swap_commit: str | None = None
    ) -> dict[str, Any]: ...

    async def upload_blob(self, data: Body, mime: str) -> dict[str, Any]: ...

    async def apply_writes(
        self, writes: Sequence[Mapping[str, Any]], *, swap_commit: str | None = None
    ) -> dict[str, Any]: ...


class _Tokens(Protocol):
    """What every kind of session credentials says: whose, at which PDS, and whether the access token is spent."""

    @property
    def did(self) -> str: ...

    @property
    def pds_url(self) -> str: ...

    def is_expired(self, margin: float = ...) -> bool: ...


TokensT = TypeVar("TokensT", bound=_Tokens)


class _XrpcSession(Generic[TokensT]):
    """Record and blob calls with credentials (`tokens`), refreshed before they expire and once more when the PDS
    says the access token is dead; `on_refresh(new_tokens)` is awaited after each refresh (refresh tokens are single
    use: the old one is dead). Subclasses say how a request carries the credentials (`_send`), how the PDS says
    they are dead (`_token_dead`) and how to get new ones (`_new_tokens`)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokensT,
        on_refresh: Callable[[TokensT], Awaitable[None]] | None = None,
    ) -> None:
        self._http = http
        self._on_refresh = on_refresh
        self._lock = asyncio.Lock()
        self._adopt(tokens)

    @property
    def did(self) -> str:
        return self.tokens.did

    @property
    def pds_url(self) -> str:
        return self.tokens.pds_url

    def _url(self, nsid: str) -> str:
        return f"{self.pds_url.rstrip('/')}/xrpc/{nsid}"

    def _adopt(self, tokens: TokensT) -> None:
        self.tokens = tokens

    async def refresh(self, seen: TokensT | None = None) -> None:
        """Refresh now; with `seen` (the tokens a failed call used), only if nobody replaced them meanwhile. One
        refresh at a time (an asyncio.Lock): refresh tokens are single use."""
        async with self._lock:
            if seen is not None and self.tokens is not seen:
                return
            new = await self._new_tokens()
            self._adopt(new)
            if self._on_refresh is not None:
                await self._on_refresh(new)

    async def _new_tokens(self) -> TokensT:
        raise NotImplementedError

    async def _send(self, tokens: TokensT, method: str, url: str, *, params: dict[str, Any], json: Any,
                    content: Body | None, headers: Mapping[str, str] | None) -> httpx.Response:
        raise NotImplementedError

    def _token_dead(self, resp: httpx.Response) -> bool:
        raise NotImplementedError

    async def _before_stream(self) -> None:
        """Called before a streamed body, which cannot be sent twice: neither refreshed-and-retried nor replayed."""

    async def _call(
        self,
        method: str,
        nsid: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Body | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if self.tokens.is_expired():
            await self.refresh(self.tokens)
        streamed = content is not None and not isinstance(content, bytes | bytearray)
        if streamed:
            await self._before_stream()
        for attempt in range(2):
            used = self.tokens
            async with _upstream(self.pds_url):
                resp = await self._send(used, method, self._url(nsid), params=_clean(params or {}), json=json,
                                        content=content, headers=headers)
            if attempt == 0 and not streamed and self._token_dead(resp):
                await self.refresh(used)
                continue
            return _ok(resp)
        return _ok(resp)

    async def _public_get(self, nsid: str, params: Mapping[str, Any]) -> dict[str, Any]:
        # Record reads are public: no credentials, so a read never spends a refresh or a nonce round trip.
        request = self._http.build_request("GET", self._url(nsid), params=_clean(params))
        async with _upstream(self.pds_url):
            resp = await send_capped(self._http, request, MAX_RESPONSE)
        return _ok(resp)

    # ---- records

    async def get_record(self, collection: str, rkey: str, *, cid: str | None = None) -> dict[str, Any]:
        """{uri, cid, value}; NotFound when the record does not exist."""
        return await self._public_get(
            "com.atproto.repo.getRecord",
            {"repo": self.did, "collection": collection, "rkey": rkey, "cid": cid},
        )

    async def list_records(
        self, collection: str, *, limit: int = 50, cursor: str | None = None, reverse: bool = False
    ) -> dict[str, Any]:
        """{records: [{uri, cid, value}], cursor?} (limit 1..100)."""
        params = {
            "repo": self.did,
            "collection": collection,
            "limit": max(1, min(limit, 100)),
            "cursor": cursor,
            "reverse": "true" if reverse else None,
        }
        return await self._public_get("com.atproto.repo.listRecords", params)

    async def create_record(
        self,
        collection: str,
        record: Mapping[str, Any],
        *,
        rkey: str | None = None,
        swap_commit: str | None = None,
    ) -> dict[str, Any]:
        """{uri, cid, commit?, validationStatus?}."""
        body = _clean({"repo": self.did, "collection": collection, "rkey": rkey, "record": dict(record)})
        if swap_commit is not None:
            body["swapCommit"] = swap_commit
        return await self._call("POST", "com.atproto.repo.createRecord", json=body)

    async def put_record(
        self,
        collection: str,
        rkey: str,
        record: Mapping[str, Any],
        *,
        swap_record: str | _Unset | None = UNSET,
        swap_commit: str | None = None,
    ) -> dict[str, Any]:
        """Create or replace. `swap_record=None` means create-only; a CID means "only if still this version"
        (Conflict otherwise); UNSET means unconditional."""
        body: dict[str, Any] = {
            "repo": self.did,
            "collection": collection,
            "rkey": rkey,
            "record": dict(record),
        }
        if swap_record is not UNSET:
            body["swapRecord"] = swap_record  # JSON null is meaningful: create only
        if swap_commit is not None:
            body["swapCommit"] = swap_commit
        return await self._call("POST", "com.atproto.repo.putRecord", json=body)

    async def delete_record(
        self, collection: str, rkey: str, *, swap_record: str | None = None, swap_commit: str | None = None
    ) -> dict[str, Any]:
        """Deleting a record that does not exist succeeds (the PDS treats it as a no-op)."""
        body = _clean(
            {
                "repo": self.did,
                "collection": collection,
                "rkey": rkey,
                "swapRecord": swap_record,
                "swapCommit": swap_commit,
            }
        )
        return await self._call("POST", "com.atproto.repo.deleteRecord", json=body)

    async def apply_writes(
        self, writes: Sequence[Mapping[str, Any]], *, swap_commit: str | None = None
    ) -> dict[str, Any]:
        """Atomic batch of `com.atproto.repo.applyWrites#create|#update|#delete` operations (at most 200)."""
        if not writes:
            raise InvalidInput("applyWrites needs at least one write")
        if len(writes) > MAX_APPLY_WRITES:
            raise InvalidInput(f"applyWrites takes at most {MAX_APPLY_WRITES} operations, got {len(writes)}")
        body = _clean({"repo": self.did, "writes": [dict(w) for w in writes], "swapCommit": swap_commit})
        return await self._call("POST", "com.atproto.repo.applyWrites", json=body)

    async def upload_blob(self, data: Body, mime: str) -> dict[str, Any]:
        """Upload bytes (or an async iterator of chunks, streamed) and return the blob ref to put in a record:
        {"$type": "blob", "ref": {"$link": cid}, "mimeType": ..., "size": ...}. Reference a blob from a record
        soon: the PDS deletes unreferenced blobs after about an hour."""
        out = await self._call(
            "POST", "com.atproto.repo.uploadBlob", content=data, headers={"Content-Type": mime or "*/*"}
        )
        blob = out.get("blob")
        if not isinstance(blob, dict):
            raise UpstreamError(f"your PDS ({_host(self.pds_url)}) answered uploadBlob without a blob")
        return blob


# --------------------------------------------------------------------------- OAuth


class OAuthSession(_XrpcSession[TokenSet]):
    """A PDS session on DPoP-bound OAuth tokens. Refreshes when the access token has expired or the PDS says
    `invalid_token`, through the OAuth client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        oauth_client: OAuthClient,
        tokens: TokenSet,
        on_refresh: Callable[[TokenSet], Awaitable[None]] | None = None,
        *,
        nonces: NonceStore | None = None,
    ) -> None:
        self._oauth = oauth_client
        # PDS nonces are per server, so share the client's store: every session benefits from the latest one.
        self._nonces = nonces or oauth_client.nonces
        super().__init__(http, tokens, on_refresh)

    def _adopt(self, tokens: TokenSet) -> None:
        super()._adopt(tokens)
        self._key = _dpop_key(tokens)

    async def _new_tokens(self) -> TokenSet:
        return await self._oauth.refresh(self.tokens)

    async def _before_stream(self) -> None:
        if self._nonces.get(self.pds_url) is None:
            # A stream cannot be replayed after a nonce challenge: learn the nonce (and check the token)
            # with a cheap authenticated call first.
            await self._call("GET", "com.atproto.server.getSession")

    async def _send(self, tokens: TokenSet, method: str, url: str, *, params: dict[str, Any], json: Any,
                    content: Body | None, headers: Mapping[str, str] | None) -> httpx.Response:
        return await dpop_request(self._http, method, url, key=self._key, nonces=self._nonces,
                                  access_token=tokens.access_token, headers=headers, params=params, json=json,
                                  content=content, max_bytes=MAX_RESPONSE)

    def _token_dead(self, resp: httpx.Response) -> bool:
        return _is_invalid_token(resp)


def _dpop_key(tokens: TokenSet) -> ES256Key:
    try:
        return ES256Key.from_jwk(tokens.dpop_jwk)
    except JWTError as e:
        raise SessionExpired("stored DPoP key is damaged") from e


def _is_invalid_token(resp: httpx.Response) -> bool:
    """401 with `error="invalid_token"` (RFC 6750) or the PDS's XRPC names for a dead access token."""
    if resp.status_code != 401:
        return False
    if 'error="invalid_token"' in resp.headers.get("www-authenticate", ""):
        return True
    return _xrpc_name(resp) in ("invalid_token", "InvalidToken", "ExpiredToken")


# --------------------------------------------------------------------------- app password


@dataclass
class PasswordTokens(JsonState):
    """An app-password session (com.atproto.server.createSession). Store it encrypted."""

    did: str
    handle: str | None
    pds_url: str
    access_jwt: str = field(repr=False)
    refresh_jwt: str = field(repr=False)

    def is_expired(self, margin: float = EXPIRY_MARGIN) -> bool:
        """From the access JWT's own `exp` (not verified: it is ours and only the PDS checks it)."""
        try:
            _, payload = decode_unverified(self.access_jwt)
        except JWTError:
            return False  # not a JWT we can read: let the PDS decide
        exp = payload.get("exp")
        return isinstance(exp, int | float) and time.time() >= exp - margin


class PasswordSession(_XrpcSession[PasswordTokens]):
    """A PDS session on an app password: `Bearer` access JWT, `refreshSession` on `ExpiredToken`."""

    @classmethod
    async def login(
        cls,
        http: httpx.AsyncClient,
        pds_url: str,
        identifier: str,
        password: str,
        *,
        on_refresh: Callable[[PasswordTokens], Awaitable[None]] | None = None,
    ) -> PasswordSession:
        """createSession on `pds_url`. Wrong handle/password -> Unauthenticated."""
        pds_url = pds_url.rstrip("/")
        request = http.build_request(
            "POST",
            f"{pds_url}/xrpc/com.atproto.server.createSession",
            json={"identifier": identifier, "password": password},
        )
        async with _upstream(pds_url):
            resp = await send_capped(http, request, MAX_RESPONSE)
        if resp.status_code == 401:
            raise Unauthenticated("the PDS did not accept this handle and app password")
        body = _ok(resp)
        did, access, refresh = body.get("did"), body.get("accessJwt"), body.get("refreshJwt")
        if not (isinstance(did, str) and isinstance(access, str) and isinstance(refresh, str)):
            raise UpstreamError(f"your PDS ({_host(pds_url)}) answered createSession without a session")
        handle = body.get("handle") if isinstance(body.get("handle"), str) else None
        tokens = PasswordTokens(did=did, handle=handle, pds_url=pds_url, access_jwt=access, refresh_jwt=refresh)
        return cls(http, tokens, on_refresh)

    async def _new_tokens(self) -> PasswordTokens:
        """refreshSession."""
        request = self._http.build_request(
            "POST",
            self._url("com.atproto.server.refreshSession"),
            headers={"Authorization": f"Bearer {self.tokens.refresh_jwt}"},
        )
        async with _upstream(self.pds_url):
            resp = await send_capped(self._http, request, MAX_RESPONSE)
        if resp.status_code in (400, 401) and _xrpc_name(resp) in (
            "ExpiredToken",
            "InvalidToken",
            "AuthenticationRequired",
            "AccountTakedown",
        ):
            raise SessionExpired(f"refreshSession: {_xrpc_name(resp)}")
        body = _ok(resp)
        access, refresh = body.get("accessJwt"), body.get("refreshJwt")
        if not (isinstance(access, str) and isinstance(refresh, str)) or body.get("did") != self.did:
            raise UpstreamError(f"your PDS ({_host(self.pds_url)}) answered refreshSession oddly")
        handle = body.get("handle") if isinstance(body.get("handle"), str) else self.tokens.handle
        return PasswordTokens(did=self.did, handle=handle, pds_url=self.pds_url, access_jwt=access, refresh_jwt=refresh)

    async def logout(self) -> None:
        """deleteSession, best effort."""
        request = self._http.build_request(
            "POST",
            self._url("com.atproto.server.deleteSession"),
            headers={"Authorization": f"Bearer {self.tokens.refresh_jwt}"},
        )
        try:
            await send_capped(self._http, request, MAX_RESPONSE)
        except (httpx.HTTPError, PlyrdError) as e:
            log.info("deleteSession at %s failed: %s", _host(self.pds_url), e)

    async def _send(self, tokens: PasswordTokens, method: str, url: str, *, params: dict[str, Any], json: Any,
                    content: Body | None, headers: Mapping[str, str] | None) -> httpx.Response:
        request = self._http.build_request(method, url, params=params, json=json, content=content,
                                           headers={**(headers or {}), "Authorization": f"Bearer {tokens.access_jwt}"})
        return await send_capped(self._http, request, MAX_RESPONSE)

    def _token_dead(self, resp: httpx.Response) -> bool:
        return _xrpc_name(resp) == "ExpiredToken"


# --------------------------------------------------------------------------- helpers


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values (absent optional parameters)."""
    return {k: v for k, v in d.items() if v is not None}


def _ok(resp: httpx.Response) -> dict[str, Any]:
    if not resp.is_success:
        raise xrpc_error(resp)
    if not resp.content:
        return {}
    try:
        body = resp.json()
    except ValueError:
        raise UpstreamError(f"your PDS ({resp.request.url.host}) sent a body that is not JSON") from None
    return body if isinstance(body, dict) else {}


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


@contextlib.asynccontextmanager
async def _upstream(pds_url: str) -> AsyncIterator[None]:
    """Turn transport failures talking to a PDS into UpstreamError; domain errors pass through."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamError(f"your PDS ({_host(pds_url)}) did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"could not reach your PDS ({_host(pds_url)}): {exc}") from exc
