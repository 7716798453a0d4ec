"""Sign-in and sessions, without HTTP.

- Browser sessions and developer tokens are rows in `auth_sessions`, found by the sha256 of an opaque token the
  client holds (a cookie or `Authorization: Bearer`). The credentials behind them (OAuth tokens with their DPoP key,
  or app-password JWTs) are sealed at rest.
- OAuth sign-ins in flight are rows in `oauth_pending`, consumed once by their `state`. They expire after
  PENDING_TTL and are capped in number (PENDING_MAX in all, PENDING_PER_ADDRESS per client address), so a flood of
  /auth/start cannot fill the database; the cap is checked, and a row reserved, before the PAR request goes out.
- Sign-in is throttled in memory (SignInLimits): attempts per client address, failed app passwords per address and
  per account, OAuth starts per account. Every check runs before the request it guards makes any outbound call.
- Every developer token has its own grant (its own OAuth authorization or createSession), so revoking one ends only
  that grant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..atproto.identity import IdentityResolver, is_did, normalize_handle
from ..atproto.oauth import (
    BASE_SCOPE,
    SHARE_SCOPES,
    TEAL_SCOPES,
    OAuthClient,
    PendingAuth,
    TokenSet,
    _normalise_identifier,
    covers,
    parse_scopes,
    widened_scope,
)
from ..atproto.xrpc import OAuthSession, PasswordSession, PasswordTokens, PDSSession
from ..catalog.tracks import ANONYMOUS, Audience
from ..config import Config
from ..db import Database
from ..errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PlyrdError,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UpstreamError,
)
from ..ratelimit import RateLimiter
from .sealing import Sealer, SealError

log = logging.getLogger("plyrd.auth")

# ---- OAuth sign-ins in flight (rows of oauth_pending)
# A PAR request_uri lives 5 minutes at the reference PDS (and its page times out after 5 idle minutes): a pending
# sign-in older than 10 minutes can no longer complete, so it expires and is deleted at the next start.
PENDING_TTL = 10 * 60
# At most this many pending sign-ins on the node at once. Completed ones are deleted at their callback, so only
# abandoned ones accumulate; a thousand in ten minutes is far beyond any honest traffic of a self-hosted node, and
# the cap keeps a flood from growing the table (each row holds a DPoP key and a PKCE verifier).
PENDING_MAX = 1_000
# At most this many of them started from one client address (a /64 for IPv6), so one client cannot take the whole
# node-wide allowance and lock everybody else out. A household or office behind one address starts a few at a time.
PENDING_PER_ADDRESS = 20

# ---- sign-in throttles (token buckets in memory: plyrd.ratelimit; (limit, per seconds) = a burst of `limit`, then
# `limit` per `per` seconds)
# Every sign-in attempt from one client address (app password, the /login form, /auth/start, developer-token and
# scope-upgrade starts): a burst of 30, then one every 2 s. A person needs a handful, a household or office behind
# one address a few dozen; each attempt makes the node resolve a handle and call a PDS, which a script must not be
# able to do thousands of times a minute through us.
ADDRESS_ATTEMPTS = (30, 60.0)
# Wrong app passwords from one client address, whatever the accounts: 20 per 15 minutes (then one every 45 s).
# Slows password spraying across many handles, which the per-account limit alone would not; twenty typos in a
# quarter of an hour is more than one household makes.
ADDRESS_FAILURES = (20, 15 * 60.0)
# Wrong app passwords for one account, from anywhere: 10 per 15 minutes (then one every 90 s), counted under the
# handle as typed (lowercased, without '@') and under the DID it resolves to, so switching between them gains
# nothing. Only failures count: a right password gives its token back, so someone who types theirs correctly is
# never held, while a guesser gets about 40 tries an hour instead of thousands.
ACCOUNT_FAILURES = (10, 15 * 60.0)
# OAuth sign-ins started for one account: 20 per 15 minutes (then one every 45 s). The password is checked by the
# PDS there, not here, so these count starts: each one is a PAR request to that account's PDS.
ACCOUNT_OAUTH_STARTS = (20, 15 * 60.0)

TOUCH_INTERVAL = 3600  # a session's last use is written at most hourly, not on every request
DEV_TOKEN_DEFAULT_DAYS = 90
DEV_TOKEN_MAX_DAYS = 365
DEV_TOKEN_PREFIX_LEN = 8
FULL_SCOPE = f"{BASE_SCOPE} {TEAL_SCOPES} {SHARE_SCOPES}"  # everything the client may ever ask for (client metadata)


@dataclass(frozen=True)
class Session:
    id_hash: str
    did: str
    handle: str | None
    kind: str  # browser | developer
    auth_type: str  # oauth | password
    name: str | None
    prefix: str | None
    scope: str
    created_at: float
    last_used_at: float
    expires_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Session:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def teal_granted(self) -> bool:
        return self.auth_type == "password" or covers(self.scope, TEAL_SCOPES)

    @property
    def share_granted(self) -> bool:
        """May post to Bluesky for the person (plyrd.network.share): an app password may write anything."""
        return self.auth_type == "password" or covers(self.scope, SHARE_SCOPES)

    @property
    def needs_scope_upgrade(self) -> bool:
        """An OAuth grant that no longer covers what plyrd needs (the base scope grew since sign-in)."""
        return self.auth_type == "oauth" and not covers(self.scope, BASE_SCOPE)


@dataclass
class FlowResult:
    """What a finished OAuth callback produced, for the web layer to turn into a cookie, a page or a redirect."""

    purpose: str
    session: Session
    token: str | None = None  # a new browser session's cookie value, or a new developer token (shown once)
    params: dict[str, Any] = field(default_factory=dict)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> float:
    return time.time()


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a developer token needs a name (1-100 characters)")
    name = " ".join(name.split())
    if len(name) > 100:
        raise InvalidInput("a developer token's name must be at most 100 characters")
    return name


def _clean_days(days: Any) -> int:
    if days is None:
        return DEV_TOKEN_DEFAULT_DAYS
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= DEV_TOKEN_MAX_DAYS:
        raise InvalidInput(f"expires_in_days must be a whole number from 1 to {DEV_TOKEN_MAX_DAYS}")
    return days


def safe_return_path(value: Any) -> str:
    """Only same-site paths: an open redirect after sign-in would hand the session page to anyone."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return "/"


class SignInLimits:
    """The node's sign-in throttles, by client address and by account. Memory only, one set per AuthService (so per
    node process): a restart forgets them, which can only ever let more through. Each limiter keeps at most
    plyrd.ratelimit.MAX_KEYS buckets and drops refilled ones, so a flood of distinct handles or addresses stays
    bounded. `clock` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.address_attempts = RateLimiter(*ADDRESS_ATTEMPTS, clock=clock)
        self.address_failures = RateLimiter(*ADDRESS_FAILURES, clock=clock)
        self.account_failures = RateLimiter(*ACCOUNT_FAILURES, clock=clock)
        self.account_oauth_starts = RateLimiter(*ACCOUNT_OAUTH_STARTS, clock=clock)


class _Charges:
    """Tokens taken from failure-counting limiters for one attempt: kept when the attempt fails, given back when it
    succeeds or never reached the point of checking a password."""

    def __init__(self, service: AuthService, client: str | None) -> None:
        self.service = service
        self.client = client
        self.taken: list[tuple[RateLimiter, str]] = []

    def take(self, limiter: RateLimiter, key: str, what: str) -> None:
        try:
            self.service._check(limiter, key, what, self.client)
        except RateLimited:
            self.refund()  # refused here: the earlier charges of this attempt were for nothing
            raise
        self.taken.append((limiter, key))

    def refund(self) -> None:
        for limiter, key in self.taken:
            limiter.refund(key)
        self.taken.clear()


class AuthService:
    def __init__(
        self,
        db: Database,
        config: Config,
        secrets_: dict[str, str],
        http: httpx.AsyncClient,
        resolver: IdentityResolver,
        oauth: OAuthClient | None,
        oauth_problem: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.http = http
        self.resolver = resolver
        self.oauth = oauth
        self.oauth_problem = oauth_problem
        self.sealer = Sealer(secrets_["token_key"])
        self._cookie_key = secrets_["cookie_key"].encode()
        self.session_seconds = config["auth.session_days"] * 86400
        # Called with the DID after every sign-in (browser session or developer token): the node wakes the outbox
        # for that user and reconciles their records from the PDS.
        self.on_sign_in: list[Callable[[str], None]] = []
        self.limits = SignInLimits()

    # ---- throttles

    def _check(self, limiter: RateLimiter, key: str, what: str, client: str | None) -> None:
        """Take a token or raise RateLimited (429 with Retry-After), logging the refusal."""
        try:
            limiter.check(key, what)
        except RateLimited as e:
            fields = {"limited": what, "key": key, "client": client, "retry_after": e.retry_after}
            if client in ("127.0.0.1", "::1") and not self.config["server.behind_proxy"]:
                # Behind a proxy that is not declared, every visitor shares the proxy's address and its budget.
                log.warning("sign-in throttled for the loopback address; if a reverse proxy is in front of this "
                            "node, set server.behind_proxy so each visitor is counted by their own address",
                            extra={"fields": fields})
            else:
                log.info("sign-in throttled", extra={"fields": fields})
            raise

    def _limit_attempt(self, client: str | None) -> None:
        if client is not None:
            self._check(self.limits.address_attempts, client, "sign-in attempts from your address", client)

    # ---- tokens, CSRF

    def csrf_token(self, token: str) -> str:
        """Derived from the session token, so it needs no storage and dies with the session."""
        return hmac.new(self._cookie_key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, token: str, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token(token), presented or "")

    # ---- roles

    def _listed(self, entries: list[str], did: str, handle: str | None) -> bool:
        for entry in entries:
            entry = entry.strip()
            if entry == did or (handle and entry.lstrip("@").lower() == handle.lower()):
                return True
        return False

    def is_admin(self, did: str, handle: str | None) -> bool:
        return self._listed(self.config["auth.admins"], did, handle)

    def can_upload(self, did: str, handle: str | None) -> bool:
        uploaders = self.config["auth.uploaders"]
        return uploaders == ["*"] or self.is_admin(did, handle) or self._listed(uploaders, did, handle)

    def audience(self, did: str | None, handle: str | None) -> Audience:
        """A caller as the catalog's visibility rules see them (the one place an Audience is made from a session):
        nobody signed in (`did` None) sees no library track; admins always do; other signed-in people do when
        auth.library_listeners is empty or lists them."""
        if did is None:
            return ANONYMOUS
        admin = self.is_admin(did, handle)
        listeners = self.config["auth.library_listeners"]
        return Audience(did, is_admin=admin, library=admin or not listeners or self._listed(listeners, did, handle))

    # ---- sessions

    async def authenticate(self, token: str) -> Session:
        """The session a token stands for; Unauthenticated for unknown, forged, revoked or expired tokens."""
        if not token or len(token) > 200:
            raise Unauthenticated("invalid session")
        id_hash = hash_token(token)
        row = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (id_hash,))
        if row is None:
            raise Unauthenticated("invalid session")
        session = Session.from_row(row)
        now = _now()
        if session.expires_at is not None and session.expires_at <= now:
            await self.db.execute("DELETE FROM auth_sessions WHERE id_hash = ?", (id_hash,))
            raise Unauthenticated("session_expired")
        if now - session.last_used_at > TOUCH_INTERVAL:
            # Browser sessions slide: they end after session_days without use. Developer tokens keep their date.
            expires = now + self.session_seconds if session.kind == "browser" else session.expires_at
            await self.db.execute(
                "UPDATE auth_sessions SET last_used_at = ?, expires_at = ? WHERE id_hash = ?", (now, expires, id_hash)
            )
        return session

    async def _create_session(
        self,
        *,
        did: str,
        handle: str | None,
        pds_url: str,
        kind: str,
        auth_type: str,
        credentials: dict[str, Any],
        scope: str,
        name: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        id_hash = hash_token(token)
        prefix = token[:DEV_TOKEN_PREFIX_LEN] if kind == "developer" else None
        sealed = self.sealer.seal(credentials, bound_to=id_hash)
        async with self.db.write() as conn:
            await self._remember_user(conn, did, handle, pds_url)
            await conn.execute(
                "INSERT INTO auth_sessions(id_hash, did, handle, kind, auth_type, name, prefix, scope, credentials,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id_hash, did, handle, kind, auth_type, name, prefix, scope, sealed, expires_at),
            )
        row = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (id_hash,))
        for hook in self.on_sign_in:
            hook(did)
        return token, Session.from_row(row)

    @staticmethod
    async def _remember_user(conn: Any, did: str, handle: str | None, pds_url: str) -> None:
        if handle:
            # A handle belongs to one DID at a time; whoever held it before has moved on.
            await conn.execute("UPDATE users SET handle = NULL WHERE handle = ? AND did != ?", (handle, did))
        await conn.execute(
            "INSERT INTO users(did, handle, pds_url) VALUES (?, ?, ?) ON CONFLICT(did) DO UPDATE SET"
            " handle = excluded.handle, pds_url = excluded.pds_url,"
            " updated_at = (julianday('now') - 2440587.5) * 86400.0",
            (did, handle, pds_url),
        )

    def _credentials(self, row: Any) -> dict[str, Any]:
        try:
            return self.sealer.open(row["credentials"], bound_to=row["id_hash"])
        except SealError:
            # The token key changed (or the row was tampered with): this session cannot act any more.
            raise Unauthenticated("session_expired") from None

    async def _save_credentials(self, id_hash: str, credentials: dict[str, Any], scope: str | None = None) -> None:
        sealed = self.sealer.seal(credentials, bound_to=id_hash)
        if scope is None:
            await self.db.execute("UPDATE auth_sessions SET credentials = ? WHERE id_hash = ?", (sealed, id_hash))
        else:
            await self.db.execute(
                "UPDATE auth_sessions SET credentials = ?, scope = ? WHERE id_hash = ?", (sealed, scope, id_hash)
            )

    async def pds_session_for_did(self, did: str) -> PDSSession | None:
        """A PDS session for background writes on behalf of `did` (the outbox): the most recently used unexpired
        session of that DID, browser or developer, OAuth or password. None when nobody with that DID is signed in
        here (or no session's credentials can be opened)."""
        rows = await self.db.fetchall(
            "SELECT * FROM auth_sessions WHERE did = ? AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY last_used_at DESC, created_at DESC",
            (did, _now()),
        )
        for row in rows:
            try:
                return await self.pds_session(Session.from_row(row))
            except (Unauthenticated, Unavailable):
                continue  # sealed under an old key, or OAuth is off: try the next session
        return None

    async def pds_session(self, session: Session) -> PDSSession:
        """The caller's authenticated connection to their PDS; refreshed tokens are saved back, sealed."""
        row = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (session.id_hash,))
        if row is None:
            raise Unauthenticated("session_expired")
        creds = self._credentials(row)
        id_hash = session.id_hash
        if session.auth_type == "password":
            async def save_password(tokens: PasswordTokens) -> None:
                await self._save_credentials(id_hash, tokens.to_dict())

            return PasswordSession(self.http, PasswordTokens.from_dict(creds), save_password)

        async def save_oauth(tokens: TokenSet) -> None:
            await self._save_credentials(id_hash, tokens.to_dict(), tokens.scope)

        return OAuthSession(self.http, self._require_oauth(), TokenSet.from_dict(creds), save_oauth)

    async def logout(self, session: Session) -> None:
        """End the session here and its grant at the PDS (best effort: the local session ends regardless)."""
        row = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (session.id_hash,))
        await self.db.execute("DELETE FROM auth_sessions WHERE id_hash = ?", (session.id_hash,))
        if row is not None:
            await self._revoke_grant(row)

    async def _revoke_grant(self, row: Any) -> None:
        try:
            creds = self.sealer.open(row["credentials"], bound_to=row["id_hash"])
        except SealError:
            return
        try:
            if row["auth_type"] == "oauth" and self.oauth is not None:
                await self.oauth.revoke(TokenSet.from_dict(creds))
            elif row["auth_type"] == "password":
                await PasswordSession(self.http, PasswordTokens.from_dict(creds)).logout()
        except (PlyrdError, httpx.HTTPError) as e:
            log.info("could not revoke a grant at the PDS", extra={"fields": {"did": row["did"], "error": str(e)}})

    async def purge_expired(self) -> int:
        now = _now()
        async with self.db.write() as conn:
            cur = await conn.execute(
                "DELETE FROM auth_sessions WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            )
            removed = cur.rowcount
            await conn.execute("DELETE FROM oauth_pending WHERE expires_at <= ?", (now,))
        return removed

    # ---- OAuth flows

    def _require_oauth(self) -> OAuthClient:
        if self.oauth is None:
            raise Unavailable(self.oauth_problem or "OAuth sign-in is not available on this node")
        return self.oauth

    async def start(
        self,
        identifier: str,
        *,
        purpose: str = "login",
        session: Session | None = None,
        params: dict[str, Any] | None = None,
        scope: str = BASE_SCOPE,
        client: str | None = None,
    ) -> str:
        """Begin an OAuth authorization; returns the URL to send the browser to. `client` is the caller's address
        key (plyrd.web.limits.client_address), for the per-address throttle and pending cap; None skips both.

        Throttles and the pending cap are checked before anything goes out (handle resolution, PAR)."""
        oauth = self._require_oauth()
        self._limit_attempt(client)
        if not isinstance(identifier, str) or not identifier.strip():
            raise InvalidInput("enter your handle (like artist.bsky.social) or DID")
        account = _normalise_identifier(identifier)
        self._check(self.limits.account_oauth_starts, account, "sign-ins started for this account", client)
        try:
            reservation = await self._reserve_pending(purpose, session, client)
        except RateLimited:
            self.limits.account_oauth_starts.refund(account)  # refused before anything went out
            raise
        try:
            pending = await oauth.start(account, scope=scope)
        except Exception:
            await self.db.execute("DELETE FROM oauth_pending WHERE state = ?", (reservation,))
            raise
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM oauth_pending WHERE state = ?", (reservation,))
            await conn.execute(
                "INSERT INTO oauth_pending(state, purpose, session_hash, params, sealed, expires_at, client)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    pending.state,
                    purpose,
                    session.id_hash if session else None,
                    json.dumps(params or {}),
                    self.sealer.seal(pending.to_dict(), bound_to=pending.state),
                    _now() + PENDING_TTL,
                    client,
                ),
            )
        return pending.authorize_url

    async def _reserve_pending(self, purpose: str, session: Session | None, client: str | None) -> str:
        """Hold a place in oauth_pending before the PAR request, so concurrent starts cannot overshoot the caps:
        expired rows are deleted, the caps checked and a placeholder row (a state nobody is ever given, no sealed
        secrets) inserted, in one write transaction. start() replaces it with the real row, or deletes it."""
        now = _now()
        reservation = "reserved:" + secrets.token_urlsafe(24)
        refusal: RateLimited | None = None
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM oauth_pending WHERE expires_at <= ?", (now,))
            cur = await conn.execute("SELECT count(*) AS n, min(expires_at) AS soonest FROM oauth_pending")
            total = await cur.fetchone()
            mine = None
            if client is not None:
                cur = await conn.execute(
                    "SELECT count(*) AS n, min(expires_at) AS soonest FROM oauth_pending WHERE client = ?", (client,)
                )
                mine = await cur.fetchone()
            if total["n"] >= PENDING_MAX:
                wait = total["soonest"] - now
                refusal = RateLimited(f"too many sign-ins are in progress on this node (at most {PENDING_MAX} at a "
                                      f"time); try again in {max(1, math.ceil(wait))} s", retry_after=wait)
            elif mine is not None and mine["n"] >= PENDING_PER_ADDRESS:
                wait = mine["soonest"] - now
                refusal = RateLimited(f"too many sign-ins in progress from your address (at most "
                                      f"{PENDING_PER_ADDRESS} at a time): finish one, or try again in "
                                      f"{max(1, math.ceil(wait))} s", retry_after=wait)
            else:
                await conn.execute(
                    "INSERT INTO oauth_pending(state, purpose, session_hash, sealed, expires_at, client)"
                    " VALUES (?, ?, ?, X'', ?, ?)",
                    (reservation, purpose, session.id_hash if session else None, now + PENDING_TTL, client),
                )
        if refusal is not None:
            log.warning("oauth sign-in refused: too many pending",
                        extra={"fields": {"client": client, "detail": refusal.detail}})
            raise refusal
        return reservation

    async def start_login(self, identifier: str, *, return_to: str | None = None, client: str | None = None) -> str:
        return await self.start(identifier, params={"return_to": safe_return_path(return_to)}, client=client)

    async def start_scope_upgrade(self, session: Session, *, include_teal: bool = True, adding: str | None = None,
                                  return_to: str | None = None, client: str | None = None) -> str:
        """Ask the same account for more scopes; the session keeps its id, so nobody is signed out. With `adding`
        (e.g. SHARE_SCOPES), ask for what the session holds plus only that; `return_to` is where the browser goes
        back to afterwards (else settings)."""
        if session.kind != "browser":
            raise Forbidden("scope upgrades are made from a browser session")
        if session.auth_type != "oauth":
            raise Conflict("an app-password session already has every scope")
        if adding is not None:
            scope = widened_scope(FULL_SCOPE, session.scope, adding)
        else:
            scope = f"{BASE_SCOPE} {TEAL_SCOPES}" if include_teal else BASE_SCOPE
            if session.share_granted:
                scope += f" {SHARE_SCOPES}"  # the teal.fm upgrade must not take back sharing
        params = {"return_to": safe_return_path(return_to)} if return_to is not None else None
        return await self.start(session.did, purpose="scope_upgrade", session=session, params=params, scope=scope,
                                client=client)

    async def start_developer_token(self, session: Session, *, name: Any, expires_in_days: Any = None,
                                    client: str | None = None) -> str:
        if session.kind != "browser":
            raise Forbidden("developer tokens are created from a browser session")
        params = {"name": _clean_name(name), "expires_in_days": _clean_days(expires_in_days)}
        scope = f"{BASE_SCOPE} {TEAL_SCOPES}" if session.teal_granted else BASE_SCOPE
        return await self.start(session.did, purpose="developer_token", session=session, params=params, scope=scope,
                                client=client)

    async def finish(self, *, state: str | None, code: str | None, iss: str | None, error: str | None = None,
                     error_description: str | None = None) -> FlowResult:
        """Complete an authorization from the callback's query parameters. The state is consumed first, so a
        replayed callback finds nothing, whatever else is wrong with it."""
        oauth = self._require_oauth()
        if not state:
            raise InvalidInput("the sign-in response has no state; start again")
        async with self.db.write() as conn:
            cur = await conn.execute("DELETE FROM oauth_pending WHERE state = ? RETURNING *", (state,))
            row = await cur.fetchone()
        if row is None:
            raise Unauthenticated("this sign-in is unknown or was already used; start again")
        if row["expires_at"] <= _now():
            raise Unauthenticated("this sign-in took too long and expired; start again")
        if error:
            reason = f"{error}: {error_description}" if error_description else error
            raise Unauthenticated(f"your PDS did not complete the sign-in ({reason})")
        if not code:
            raise InvalidInput("the sign-in response has no code; start again")
        pending = PendingAuth.from_dict(self.sealer.open(row["sealed"], bound_to=state))
        tokens = await oauth.callback(pending, code=code, iss=iss, state=state)
        params = json.loads(row["params"])
        purpose = row["purpose"]

        if purpose == "login":
            token, session = await self._create_session(
                did=tokens.did, handle=tokens.handle, pds_url=tokens.pds_url, kind="browser", auth_type="oauth",
                credentials=tokens.to_dict(), scope=tokens.scope, expires_at=_now() + self.session_seconds,
            )
            return FlowResult(purpose, session, token, params)

        owner = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (row["session_hash"],))
        if owner is None:
            await oauth.revoke(tokens)
            raise Unauthenticated("your session ended while you were at your PDS; sign in again")
        if owner["did"] != tokens.did:
            await oauth.revoke(tokens)
            raise Unauthenticated("you approved this at your PDS as a different account than the one signed in here")

        if purpose == "scope_upgrade":
            await self._save_credentials(owner["id_hash"], tokens.to_dict(), tokens.scope)
            old = dict(owner)
            if old["auth_type"] == "oauth":
                await self._revoke_grant(old)  # the previous grant is replaced, not left dangling
            await self.db.execute("UPDATE auth_sessions SET auth_type = 'oauth' WHERE id_hash = ?", (owner["id_hash"],))
            fresh = await self.db.fetchone("SELECT * FROM auth_sessions WHERE id_hash = ?", (owner["id_hash"],))
            return FlowResult(purpose, Session.from_row(fresh), None, params)

        # developer_token: a new session with its own grant
        token, session = await self._create_session(
            did=tokens.did, handle=tokens.handle, pds_url=tokens.pds_url, kind="developer", auth_type="oauth",
            credentials=tokens.to_dict(), scope=tokens.scope, name=params["name"],
            expires_at=_now() + params["expires_in_days"] * 86400,
        )
        return FlowResult(purpose, session, token, params)

    # ---- app passwords

    async def login_app_password(
        self, identifier: Any, password: Any, *, token_name: Any = None, expires_in_days: Any = None,
        client: str | None = None,
    ) -> tuple[str, Session]:
        """Sign in with an app password (com.atproto.server.createSession at the user's own PDS).

        With `token_name`, the result is a developer token with its own PDS session; otherwise a browser session.
        `client` is the caller's address key, for the per-address throttles (None skips them). Every throttle is
        checked before the request that it guards goes out: the address and the handle before the handle is
        resolved, the DID before createSession.
        """
        self._limit_attempt(client)
        if not isinstance(identifier, str) or not identifier.strip():
            raise InvalidInput("enter your handle (like artist.bsky.social) or DID")
        if not isinstance(password, str) or not password:
            raise InvalidInput("enter an app password")
        identifier = identifier.strip()
        if not is_did(identifier):
            identifier = normalize_handle(identifier)
        if token_name is not None:  # before signing in, so a bad name does not leave a PDS session behind
            name = _clean_name(token_name)
            days = _clean_days(expires_in_days)
        charges = _Charges(self, client)
        if client is not None:
            charges.take(self.limits.address_failures, client, "failed sign-ins from your address")
        charges.take(self.limits.account_failures, identifier, "failed sign-ins for this account")
        try:
            identity = await self.resolver.resolve(identifier)
        except Exception:
            charges.refund()  # no password was tried
            raise
        if identity.did != identifier:
            charges.take(self.limits.account_failures, identity.did, "failed sign-ins for this account")
        try:
            pds = await PasswordSession.login(self.http, identity.pds_url, identity.did, password)
        except (UpstreamError, Unavailable):
            charges.refund()  # the PDS could not be asked: not the caller's failure
            raise
        # Any other refusal (a wrong password above all) keeps its charges.
        if pds.did != identity.did:
            await pds.logout()
            raise Unauthenticated("the PDS answered for a different account than the handle you entered")
        charges.refund()  # the right password: it does not count against anyone
        tokens = pds.tokens
        handle = identity.handle or tokens.handle
        if token_name is not None:
            return await self._create_session(
                did=identity.did, handle=handle, pds_url=identity.pds_url, kind="developer", auth_type="password",
                credentials=tokens.to_dict(), scope="", name=name, expires_at=_now() + days * 86400,
            )
        return await self._create_session(
            did=identity.did, handle=handle, pds_url=identity.pds_url, kind="browser", auth_type="password",
            credentials=tokens.to_dict(), scope="", expires_at=_now() + self.session_seconds,
        )

    # ---- developer tokens

    async def developer_tokens(self, did: str) -> list[Session]:
        rows = await self.db.fetchall(
            "SELECT * FROM auth_sessions WHERE did = ? AND kind = 'developer' ORDER BY created_at DESC", (did,)
        )
        now = _now()
        return [s for s in map(Session.from_row, rows) if s.expires_at is None or s.expires_at > now]

    async def revoke_developer_token(self, did: str, prefix: str) -> None:
        row = await self.db.fetchone(
            "SELECT * FROM auth_sessions WHERE did = ? AND kind = 'developer' AND prefix = ?", (did, prefix)
        )
        if row is None:
            raise NotFound("no developer token with that prefix")
        await self.db.execute("DELETE FROM auth_sessions WHERE id_hash = ?", (row["id_hash"],))
        await self._revoke_grant(row)

    def scopes_of(self, session: Session) -> list[str]:
        return sorted(parse_scopes(session.scope))
