"""Who calls `/rest`: a user's Subsonic password (plyrd.subsonic.passwords) or a developer token, never a browser
session.

- `u` + `t` + `s`: the token login every common app sends by default, t = md5(password + s), against the Subsonic
  password of the user `u` names (their handle, any case, a leading @ allowed, or their DID). Any non-empty salt is
  taken: Subsonic asks clients for six characters or more, but a short salt weakens nothing here (a captured t+s
  can be replayed whatever its length), and refusing one would only lock out some app.
- `p` (plain, or `enc:` + hex of its UTF-8 bytes): a developer token (as plyr.fm accepts, #1784; `u` is then not
  checked, the token names its account), else the Subsonic password of the user `u` names.
- `apiKey` (OpenSubsonic): developer tokens only, and without u/p/t/s.

Failed attempts are throttled like app-password sign-in, in the same buckets (AuthService.limits): per client
address and per account, so /rest is no way around them and no way to guess passwords online. A right Subsonic
password is refused too while its buckets are empty (else a guesser would learn when he hit), but a right developer
token is not: it cannot be guessed, and an app holding one should not suffer a neighbour's failures.
Throttled attempts answer error 0 saying when to try again (not 40: the password may well be right).

A Subsonic-password login is a session of kind "subsonic": it lives only for the request and is in no table, so
it can do nothing outside /rest (plyrd.auth.service finds PDS sessions and browser sessions only in auth_sessions).
Its scope says whether teal scrobbling is granted: as the user's grant that the outbox would write with says.
"""

from __future__ import annotations

import binascii
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping

from ..atproto.oauth import TEAL_SCOPES
from ..auth.service import AuthService, Session
from ..db.queries import one
from ..errors import Unauthenticated
from ..ratelimit import RateLimiter, describe_rate
from .envelope import (
    CONFLICTING_AUTH,
    GENERIC,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    WRONG_CREDENTIALS,
    SubsonicError,
)
from .passwords import Account, SubsonicPasswords, matches, matches_token, read_account, read_sealed

log = logging.getLogger("plyrd.subsonic")

SESSION_KIND = "subsonic"


def _wrong() -> SubsonicError:
    return SubsonicError(WRONG_CREDENTIALS, "Wrong username or password")


def decode_password(p: str) -> str:
    """Subsonic's `p`: the secret itself, or `enc:` followed by the hex of its bytes."""
    if p.startswith("enc:"):
        try:
            return bytes.fromhex(p[4:]).decode()
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise _wrong() from None
    return p


class _Attempt:
    """One sign-in attempt's charges against the failure throttles, for a check that runs without awaiting in
    between: the tokens are taken, the password checked and the tokens given back if it was right, all in one step
    of the event loop, so concurrent right requests (an app fetching 30 covers at once) never hold each other's
    tokens. Kept when the attempt fails."""

    def __init__(self, auth: AuthService, client: str | None, accounts: list[str]) -> None:
        limits = auth.limits
        self.charges: list[tuple[RateLimiter, str, str]] = []
        if client is not None:
            self.charges.append((limits.address_failures, client, "failed sign-ins from your address"))
        for key in dict.fromkeys(accounts):  # the name as typed and the DID, once each
            self.charges.append((limits.account_failures, key, "failed sign-ins for this account"))
        self.client = client

    def run(self, check: Callable[[], bool]) -> bool:
        taken: list[tuple[RateLimiter, str]] = []
        for limiter, key, what in self.charges:
            wait = limiter.take(key)
            if wait > 0:
                for done, done_key in taken:
                    done.refund(done_key)
                seconds = max(1, math.ceil(wait))
                log.info("subsonic sign-in throttled", extra={"fields": {
                    "limited": what, "key": key, "client": self.client, "retry_after": seconds}})
                raise SubsonicError(GENERIC, f"Too many {what} (at most {describe_rate(limiter.limit, limiter.per)})"
                                             f": wait {seconds} s before trying again")
            taken.append((limiter, key))
        ok = check()
        if ok:
            for limiter, key in taken:
                limiter.refund(key)
        return ok


def _account_key(username: str) -> str:
    # As app-password sign-in counts a typed handle: lowercased, without '@' (cut short: a key never grows).
    return username.strip().lstrip("@").lower()[:256]


async def _developer(auth: AuthService, token: str) -> Session | None:
    """The developer token's session, None when it is none (unknown, expired, or a browser session's cookie: that
    must not become a password that never needs CSRF checks)."""
    try:
        session = await auth.authenticate(token)
    except Unauthenticated:
        return None
    return session if session.kind == "developer" else None


def _read_grant(conn: sqlite3.Connection, did: str) -> sqlite3.Row | None:
    """The session the outbox writes this user's records with (their most recently used one,
    plyrd.auth.service.pds_session_for_did)."""
    return one(conn, "SELECT * FROM auth_sessions WHERE did = ? AND (expires_at IS NULL OR expires_at > ?)"
                     " ORDER BY last_used_at DESC, created_at DESC LIMIT 1", (did, time.time()))


def _subsonic_session(account: Account, created_at: float, grant: sqlite3.Row | None) -> Session:
    """The session a Subsonic password stands for: TEAL_SCOPES when the user's PDS grant covers teal scrobbling."""
    scope = TEAL_SCOPES if grant is not None and Session.from_row(grant).teal_granted else ""
    return Session(id_hash=f"{SESSION_KIND}:{account.did}", did=account.did, handle=account.handle,
                   kind=SESSION_KIND, auth_type=SESSION_KIND, name=None, prefix=None,
                   scope=scope, created_at=created_at, last_used_at=time.time(), expires_at=None)


def _read_login(conn: sqlite3.Connection, username: str | None
                ) -> tuple[Account | None, sqlite3.Row | None, sqlite3.Row | None]:
    """What a password sign-in needs, in one hop: the account `username` names, its sealed password, its grant."""
    account = read_account(conn, username) if username else None
    if account is None:
        return None, None, None
    return account, read_sealed(conn, account.did), _read_grant(conn, account.did)


async def _with_password(auth: AuthService, username: str | None, client: str | None,
                         check: Callable[[str], bool]) -> Session:
    """The session of the user `username` names when `check` accepts their Subsonic password; 40 otherwise."""
    passwords = SubsonicPasswords(auth.db, auth.sealer)
    account, sealed, grant = await auth.db.read_fn(_read_login, username)
    stored = passwords.unseal(account.did, sealed) if account else None
    accounts = [_account_key(username)] if username else []
    if account is not None:
        accounts.append(account.did)
    # Every await is done: from here to the refund nothing yields (see _Attempt).
    if not _Attempt(auth, client, accounts).run(lambda: stored is not None and check(stored.password)):
        raise _wrong()
    assert account is not None and stored is not None
    await passwords.touch(account.did, stored)  # a write at most hourly
    return _subsonic_session(account, stored.created_at, grant)


async def authenticate(auth: AuthService, params: Mapping[str, str], *, client: str | None = None) -> Session:
    """The session the request's credentials stand for, or a Subsonic error (0 throttled, 10, 40, 43, 44).
    `client` is the caller's address key (plyrd.web.limits.client_address) for the per-address throttle."""
    api_key, p, t, s, u = (params.get(k) for k in ("apiKey", "p", "t", "s", "u"))
    if api_key:
        if p or t or u:
            # OpenSubsonic: apiKey excludes u/p/t/s.
            raise SubsonicError(CONFLICTING_AUTH, "Multiple conflicting authentication mechanisms provided")
        session = await _developer(auth, api_key)
        if session is None:
            _Attempt(auth, client, []).run(lambda: False)
            raise SubsonicError(INVALID_API_KEY, "Invalid API key")
        return session
    if p:
        secret = decode_password(p)
        session = await _developer(auth, secret)
        if session is not None:
            return session
        return await _with_password(auth, u, client, lambda password: matches(password, secret))
    if t or s:
        if not (t and s and u):
            missing = "u" if not u else "t" if not t else "s"
            raise SubsonicError(MISSING_PARAMETER, f"Required parameter is missing: {missing}")
        token, salt = t, s
        return await _with_password(auth, u, client, lambda password: matches_token(password, token, salt))
    raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: u with t and s, or p, or apiKey")
