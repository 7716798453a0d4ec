"""Sign-in and sessions, without HTTP.

- Browser sessions and developer tokens are rows in `auth_sessions`, found by the sha256 of an opaque token the
  client holds (a cookie or `Authorization: Bearer`). The credentials behind them (OAuth tokens with their DPoP key,
  or app-password JWTs) are sealed at rest.
- OAuth sign-ins in flight are rows in `oauth_pending`, consumed once by their `state`.
- Every developer token has its own grant (its own OAuth authorization or createSession), so revoking one ends only
  that grant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..atproto.identity import IdentityResolver, is_did, normalize_handle
from ..atproto.oauth import BASE_SCOPE, TEAL_SCOPES, OAuthClient, PendingAuth, TokenSet, covers, parse_scopes
from ..atproto.xrpc import OAuthSession, PasswordSession, PasswordTokens, PDSSession
from ..config import Config
from ..db import Database
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, PlyrdError, Unauthenticated, Unavailable
from .sealing import Sealer, SealError

log = logging.getLogger("plyrd.auth")

PENDING_TTL = 15 * 60  # an authorization request at the PDS lives a few minutes; 15 is generous
TOUCH_INTERVAL = 3600  # a session's last use is written at most hourly, not on every request
DEV_TOKEN_DEFAULT_DAYS = 90
DEV_TOKEN_MAX_DAYS = 365
DEV_TOKEN_PREFIX_LEN = 8
FULL_SCOPE = f"{BASE_SCOPE} {TEAL_SCOPES}"  # everything the client may ever ask for (client metadata)


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
    ) -> str:
        """Begin an OAuth authorization; returns the URL to send the browser to."""
        oauth = self._require_oauth()
        if not isinstance(identifier, str) or not identifier.strip():
            raise InvalidInput("enter your handle (like artist.bsky.social) or DID")
        pending = await oauth.start(identifier.strip(), scope=scope)
        now = _now()
        await self.db.execute(
            "INSERT INTO oauth_pending(state, purpose, session_hash, params, sealed, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                pending.state,
                purpose,
                session.id_hash if session else None,
                json.dumps(params or {}),
                self.sealer.seal(pending.to_dict(), bound_to=pending.state),
                now + PENDING_TTL,
            ),
        )
        return pending.authorize_url

    async def start_login(self, identifier: str, *, return_to: str | None = None) -> str:
        return await self.start(identifier, params={"return_to": safe_return_path(return_to)})

    async def start_scope_upgrade(self, session: Session, *, include_teal: bool = True) -> str:
        """Ask the same account for more scopes; the session keeps its id, so nobody is signed out."""
        if session.kind != "browser":
            raise Forbidden("scope upgrades are made from a browser session")
        if session.auth_type != "oauth":
            raise Conflict("an app-password session already has every scope")
        scope = FULL_SCOPE if include_teal else BASE_SCOPE
        return await self.start(session.did, purpose="scope_upgrade", session=session, scope=scope)

    async def start_developer_token(self, session: Session, *, name: Any, expires_in_days: Any = None) -> str:
        if session.kind != "browser":
            raise Forbidden("developer tokens are created from a browser session")
        params = {"name": _clean_name(name), "expires_in_days": _clean_days(expires_in_days)}
        scope = FULL_SCOPE if session.teal_granted else BASE_SCOPE
        return await self.start(session.did, purpose="developer_token", session=session, params=params, scope=scope)

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
        self, identifier: Any, password: Any, *, token_name: Any = None, expires_in_days: Any = None
    ) -> tuple[str, Session]:
        """Sign in with an app password (com.atproto.server.createSession at the user's own PDS).

        With `token_name`, the result is a developer token with its own PDS session; otherwise a browser session.
        """
        if not isinstance(identifier, str) or not identifier.strip():
            raise InvalidInput("enter your handle (like artist.bsky.social) or DID")
        if not isinstance(password, str) or not password:
            raise InvalidInput("enter an app password")
        identifier = identifier.strip()
        if not is_did(identifier):
            identifier = normalize_handle(identifier)
        identity = await self.resolver.resolve(identifier)
        pds = await PasswordSession.login(self.http, identity.pds_url, identity.did, password)
        if pds.did != identity.did:
            await pds.logout()
            raise Unauthenticated("the PDS answered for a different account than the handle you entered")
        tokens = pds.tokens
        handle = identity.handle or tokens.handle
        if token_name is not None:
            name = _clean_name(token_name)
            days = _clean_days(expires_in_days)
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
