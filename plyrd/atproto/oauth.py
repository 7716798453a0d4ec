"""ATProto OAuth 2.1 client: discovery, PAR + PKCE + DPoP, code exchange, refresh, revoke.

Only logic lives here. The caller (plyrd's auth service) stores a PendingAuth by its `state` and consumes
it once, and stores the TokenSet encrypted; both are plain JSON via `to_dict()`/`from_dict()`.

The checks follow the ATProto OAuth profile (see docs/reference notes): the callback's `iss` must be the
issuer we started with, the token's `sub` must be the DID we resolved, and the DID is re-resolved without a
cache (DID -> PDS -> authorization server) before tokens are trusted, again on every refresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx

from plyrd.atproto.dpop import NonceStore, dpop_request, origin_of
from plyrd.atproto.identity import is_did, normalize_handle
from plyrd.atproto.jwt import ES256Key, JWTError, b64url_encode, public_jwk, thumbprint
from plyrd.atproto.net import get_json
from plyrd.errors import InvalidInput, PlyrdError, Unauthenticated, UpstreamError

log = logging.getLogger(__name__)

# Granular scopes work on every PDS; `include:` permission sets need lexicon resolution that older or
# offline PDSes cannot do (see atproto-notes.md, Scopes).
BASE_SCOPE = (
    "atproto blob:*/* repo:fm.plyr.track repo:fm.plyr.like repo:fm.plyr.comment repo:fm.plyr.list "
    "repo:fm.plyr.actor.profile"
)
TEAL_SCOPES = "repo:fm.teal.feed.play repo:fm.teal.actor.status"
# Sharing a track to Bluesky (plyrd.network.share): a post and its card's picture. Asked for only when someone first
# shares, by a scope upgrade that adds just these (widened_scope).
SHARE_SCOPES = "repo:app.bsky.feed.post?action=create blob:image/*"

CLIENT_METADATA_PATH = "/oauth-client-metadata.json"
JWKS_PATH = "/.well-known/jwks.json"
CALLBACK_PATH = "/auth/callback"

# A PAR request_uri lives a few minutes at the server; a pending sign-in older than this is refused here too.
PENDING_MAX_AGE = 15 * 60
# Refresh this long before the access token's stated expiry, to absorb clock skew and request time.
EXPIRY_MARGIN = 60
# Client assertions are single-use and short-lived (the server remembers their jti until exp).
ASSERTION_LIFETIME = 60
# How long a refresh result is reused for another caller holding the same (now spent) refresh token.
_REFRESH_REUSE = 120.0

_CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_REPO_ACTIONS = ("create", "update", "delete")


# --------------------------------------------------------------------------- errors


class OAuthServerError(UpstreamError):
    """The authorization server refused a request plyrd made (PAR, token). `error` is the OAuth error code,
    e.g. `invalid_scope`, so a caller can retry with fewer scopes."""

    def __init__(self, detail: str, *, status: int, error: str | None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error


class SessionExpired(Unauthenticated):
    """The OAuth session cannot be continued: sign in again. `detail` is the stable code `session_expired`;
    `reason` says why, for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__("session_expired")
        self.reason = reason


# --------------------------------------------------------------------------- client configuration


@dataclass(frozen=True)
class ClientConfig:
    """Who plyrd is to authorization servers. Confidential iff `signing_key_jwk` (ES256, private) is set."""

    client_id: str
    redirect_uri: str
    scope: str
    signing_key_jwk: dict[str, Any] | None = field(default=None, repr=False)
    client_name: str = "plyrd"

    @property
    def is_confidential(self) -> bool:
        return self.signing_key_jwk is not None

    @property
    def is_loopback(self) -> bool:
        return self.client_id == "http://localhost" or self.client_id.startswith("http://localhost?")

    @property
    def public_url(self) -> str:
        """The base URL a confidential client serves its metadata and JWKS under."""
        if self.client_id.endswith(CLIENT_METADATA_PATH):
            return self.client_id[: -len(CLIENT_METADATA_PATH)]
        return origin_of(self.client_id)


def loopback_client(redirect_uri: str, scope: str = BASE_SCOPE) -> ClientConfig:
    """A public development client: no metadata to host, the server synthesises it from the client_id.

    The redirect must be on 127.0.0.1 or [::1]; servers refuse `localhost` there.
    """
    u = urlsplit(redirect_uri)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "::1"):
        raise ValueError("a loopback client's redirect_uri must be http://127.0.0.1[:port]/... or http://[::1]...")
    # %20 for spaces (quote, not quote_plus): the client_id is compared as a string by some servers.
    query = urlencode([("redirect_uri", redirect_uri), ("scope", scope)], quote_via=quote)
    return ClientConfig(client_id=f"http://localhost?{query}", redirect_uri=redirect_uri, scope=scope)


def confidential_client(
    public_url: str, scope: str, signing_key_jwk: Mapping[str, Any], *, client_name: str = "plyrd"
) -> ClientConfig:
    """A confidential web client: metadata at `{public_url}/oauth-client-metadata.json` (must be https on a
    public name for servers to accept it), client assertions signed with `signing_key_jwk`."""
    base = public_url.rstrip("/")
    key = ES256Key.from_jwk(signing_key_jwk)  # fail at startup, not at the first sign-in
    jwk = dict(signing_key_jwk)
    jwk.setdefault("kid", key.thumbprint())  # servers pick the key by kid
    return ClientConfig(
        client_id=f"{base}{CLIENT_METADATA_PATH}",
        redirect_uri=f"{base}{CALLBACK_PATH}",
        scope=scope,
        signing_key_jwk=jwk,
        client_name=client_name,
    )


def client_metadata(cfg: ClientConfig) -> dict[str, Any]:
    """The client metadata document served at `client_id` (confidential) or implied by it (loopback)."""
    meta: dict[str, Any] = {
        "client_id": cfg.client_id,
        "client_name": cfg.client_name,
        # Servers synthesise `native` for loopback clients; anything served over https is a web client.
        "application_type": "native" if cfg.is_loopback else "web",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [cfg.redirect_uri],
        "scope": cfg.scope,
        "dpop_bound_access_tokens": True,
        "token_endpoint_auth_method": "none",
    }
    if cfg.is_confidential:
        meta.update(
            client_uri=cfg.public_url,
            token_endpoint_auth_method="private_key_jwt",
            token_endpoint_auth_signing_alg="ES256",
            jwks_uri=f"{cfg.public_url}{JWKS_PATH}",
        )
    return meta


def public_jwks(cfg: ClientConfig) -> dict[str, Any]:
    """The JWKS served at `/.well-known/jwks.json`: the public half of the client key, or no keys."""
    if cfg.signing_key_jwk is None:
        return {"keys": []}
    return {"keys": [_client_key(cfg).public_jwk()]}


def _client_key(cfg: ClientConfig) -> ES256Key:
    assert cfg.signing_key_jwk is not None
    key = ES256Key.from_jwk(cfg.signing_key_jwk)
    key.kid = cfg.signing_key_jwk.get("kid") or thumbprint(public_jwk(cfg.signing_key_jwk))
    return key


# --------------------------------------------------------------------------- scopes


def _scope_atoms(token: str) -> set[tuple[str, str, str]]:
    """One scope token -> the (kind, resource, action) permissions it grants.

    `repo:a` and `repo?collection=a&collection=b&action=create` are the same grammar: a resource in the
    position after `:` or as repeated query params. `transition:generic` grants every repo write and blob.
    Unknown kinds stay opaque and only match themselves.
    """
    if token == "transition:generic":
        return {("repo", "*", a) for a in _REPO_ACTIONS} | {("blob", "*/*", "")}
    base, _, query = token.partition("?")
    kind, sep, positional = base.partition(":")
    params = parse_qsl(query, keep_blank_values=True)
    if kind == "repo":
        collections = ([positional] if sep else []) + [v for k, v in params if k == "collection"]
        actions = [v for k, v in params if k == "action"] or list(_REPO_ACTIONS)
        return {("repo", c, a) for c in collections for a in actions if c and a in _REPO_ACTIONS}
    if kind == "blob":
        accepts = ([positional] if sep else []) + [v for k, v in params if k == "accept"]
        return {("blob", m, "") for m in accepts if m}
    return {("opaque", token, "")}


def _atoms(scopes: str | Iterable[str]) -> set[tuple[str, str, str]]:
    tokens = scopes.split() if isinstance(scopes, str) else [t for s in scopes for t in s.split()]
    out: set[tuple[str, str, str]] = set()
    for t in tokens:
        out |= _scope_atoms(t)
    return out


def parse_scopes(s: str | None) -> set[str]:
    """Normalised scope tokens: multi-valued forms are split, so `repo?collection=a&collection=b` gives
    `{"repo:a", "repo:b"}`; `repo:x` with all actions is `repo:x`, fewer actions `repo:x?action=create`;
    `blob?accept=audio/*` is `blob:audio/*`. Anything else is kept as is (`atproto`, `include:...`)."""
    out: set[str] = set()
    for t in (s or "").split():
        if t == "transition:generic":
            out.add(t)
            continue
        atoms = _scope_atoms(t)
        repo: dict[str, set[str]] = {}
        for kind, res, action in atoms:
            if kind == "repo":
                repo.setdefault(res, set()).add(action)
            elif kind == "blob":
                out.add(f"blob:{res}")
            else:
                out.add(res)
        for coll, acts in repo.items():
            if acts == set(_REPO_ACTIONS):
                out.add(f"repo:{coll}")
            else:
                out.add(f"repo:{coll}?" + "&".join(f"action={a}" for a in _REPO_ACTIONS if a in acts))
    return out


def _mime_covers(granted: str, required: str) -> bool:
    if granted in ("*/*", required):
        return True
    g_type, _, g_sub = granted.partition("/")
    return g_sub == "*" and required.partition("/")[0] == g_type


def covers(granted: str | Iterable[str], required: str | Iterable[str]) -> bool:
    """True if the `granted` scopes allow everything `required` asks for. Both may be scope strings or sets
    (e.g. from parse_scopes); wildcards (`repo:*`, `blob:*/*`, `audio/*`) and `transition:generic` count."""
    have = _atoms(granted)
    have_repo = {(res, act) for kind, res, act in have if kind == "repo"}
    have_blob = [res for kind, res, _ in have if kind == "blob"]
    for kind, res, act in _atoms(required):
        if kind == "repo":
            if (res, act) not in have_repo and ("*", act) not in have_repo:
                return False
        elif kind == "blob":
            if not any(_mime_covers(g, res) for g in have_blob):
                return False
        elif (kind, res, act) not in have:
            return False
    return True


def widened_scope(declared: str, granted: str, adding: str) -> str:
    """The scope to request to add `adding` to a grant and keep the rest: every token the client declares
    (`declared`, its metadata's scope; the server refuses any other token, comparing strings) that `granted` covers
    or `adding` names, in declared order. Covered is by what tokens grant, never by string: a server may answer a
    grant in another form (expanded sets, `repo?collection=...`)."""
    tokens = declared.split()
    wanted = adding.split()
    if undeclared := [t for t in wanted if t not in tokens]:
        raise ValueError(f"the client metadata does not declare {' '.join(undeclared)}")
    return " ".join(t for t in tokens if t in wanted or covers(granted, t))


# --------------------------------------------------------------------------- state objects


class JsonState:
    """to_dict/from_dict for storage; unknown keys are ignored so stored blobs survive added fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class PendingAuth(JsonState):
    """An authorization in flight, between start() and callback(). Secret: keep it server-side."""

    state: str
    code_verifier: str = field(repr=False)
    dpop_jwk: dict[str, Any] = field(repr=False)
    issuer: str
    token_endpoint: str
    revocation_endpoint: str | None
    did: str
    handle: str | None
    pds_url: str
    scope: str
    created_at: float
    authorize_url: str


@dataclass
class TokenSet(JsonState):
    """A DPoP-bound OAuth session. Store it encrypted: the tokens and the DPoP private key are secrets."""

    did: str
    handle: str | None
    pds_url: str
    issuer: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    scope: str
    dpop_jwk: dict[str, Any] = field(repr=False)
    token_endpoint: str
    revocation_endpoint: str | None

    def is_expired(self, margin: float = EXPIRY_MARGIN) -> bool:
        return time.time() >= self.expires_at - margin


class _Identity(Protocol):
    @property
    def did(self) -> str: ...
    @property
    def handle(self) -> str | None: ...
    @property
    def pds_url(self) -> str: ...


class Resolver(Protocol):
    async def resolve(self, identifier: str, *, fresh: bool = False) -> _Identity: ...


# --------------------------------------------------------------------------- the client


class OAuthClient:
    """The OAuth client for one ClientConfig. Holds no per-user state besides the shared nonce store and a
    short-lived refresh de-duplication cache, so one instance serves the whole process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        client: ClientConfig,
        resolver: Resolver,
        *,
        nonces: NonceStore | None = None,
        allow_http: bool = False,
    ) -> None:
        self.http = http
        self.client = client
        self.resolver = resolver
        self.nonces = nonces or NonceStore()
        # Plain http leaks tokens; allowed for loopback hosts always, elsewhere only when configured.
        self.allow_http = allow_http
        self._client_key = _client_key(client) if client.is_confidential else None
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self._refreshed: dict[str, tuple[TokenSet, float]] = {}

    # ---- discovery

    def _check_url(self, url: str, what: str) -> str:
        u = urlsplit(url)
        if u.scheme == "https" and u.hostname:
            return url
        if u.scheme == "http" and u.hostname and (self.allow_http or _is_loopback_host(u.hostname)):
            return url
        raise UpstreamError(f"{what} {url!r} is not an https URL")

    async def authorization_server_for(self, pds_url: str) -> str:
        """PDS -> its authorization server (issuer), from the protected-resource metadata."""
        pds_url = self._check_url(pds_url.rstrip("/"), "the PDS address")
        meta = await get_json(
            self.http, f"{pds_url}/.well-known/oauth-protected-resource", service=f"the PDS {_host(pds_url)}"
        )
        resource = meta.get("resource")
        if not isinstance(resource, str) or origin_of(resource.rstrip("/")) != origin_of(pds_url):
            raise UpstreamError(f"the PDS {_host(pds_url)} published OAuth metadata for another server")
        servers = meta.get("authorization_servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
            raise UpstreamError(f"the PDS {_host(pds_url)} names no OAuth authorization server")
        return self._check_url(servers[0].rstrip("/"), "the authorization server")

    async def authorization_server_metadata(self, issuer: str) -> dict[str, Any]:
        """Fetch and check the authorization server's metadata against what ATProto OAuth requires."""
        name = f"the authorization server {_host(issuer)}"
        meta = await get_json(self.http, f"{issuer}/.well-known/oauth-authorization-server", service=name)
        problems = []
        if meta.get("issuer") != issuer:
            problems.append("its issuer does not match its address")
        if not meta.get("require_pushed_authorization_requests") or not isinstance(
            meta.get("pushed_authorization_request_endpoint"), str
        ):
            problems.append("it does not require pushed authorization requests")
        if "S256" not in (meta.get("code_challenge_methods_supported") or []):
            problems.append("it does not support PKCE S256")
        if "ES256" not in (meta.get("dpop_signing_alg_values_supported") or []):
            problems.append("it does not support DPoP with ES256")
        for key in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(meta.get(key), str):
                problems.append(f"it has no {key}")
        if self.client.is_confidential and "private_key_jwt" not in (
            meta.get("token_endpoint_auth_methods_supported") or []
        ):
            problems.append("it does not accept private_key_jwt client authentication")
        if problems:
            raise UpstreamError(f"{name} is not a usable ATProto OAuth server: " + "; ".join(problems))
        for key in ("authorization_endpoint", "token_endpoint", "pushed_authorization_request_endpoint"):
            self._check_url(meta[key], f"{name}'s {key}")
        if isinstance(meta.get("revocation_endpoint"), str):
            self._check_url(meta["revocation_endpoint"], f"{name}'s revocation_endpoint")
        return meta

    # ---- the flow

    async def start(self, identifier: str, *, scope: str | None = None, prompt: str | None = None) -> PendingAuth:
        """Begin a sign-in for a handle or DID: discovery, PAR. Send the user to `authorize_url`."""
        ident = _normalise_identifier(identifier)
        identity = await self.resolver.resolve(ident)
        issuer = await self.authorization_server_for(identity.pds_url)
        meta = await self.authorization_server_metadata(issuer)
        scope = scope or self.client.scope
        if "atproto" not in parse_scopes(scope):
            raise InvalidInput("the requested scope must include atproto")

        dpop_key = ES256Key.generate()  # one key per session: tokens are bound to it
        verifier = secrets.token_urlsafe(48)  # 64 chars, within PKCE's 43..128
        challenge = b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())
        state = secrets.token_urlsafe(24)
        body = {
            "client_id": self.client.client_id,
            "response_type": "code",
            "redirect_uri": self.client.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": ident,
        }
        if prompt:
            body["prompt"] = prompt
        body.update(self._client_assertion(issuer))
        status, payload = await self._post(meta["pushed_authorization_request_endpoint"], dpop_key, body, issuer)
        if status not in (200, 201) or not isinstance(payload.get("request_uri"), str):
            raise self._server_error("refused the sign-in request", issuer, status, payload)
        authorize_url = (
            meta["authorization_endpoint"]
            + "?"
            + urlencode({"client_id": self.client.client_id, "request_uri": payload["request_uri"]})
        )
        return PendingAuth(
            state=state,
            code_verifier=verifier,
            dpop_jwk=dpop_key.private_jwk(),
            issuer=issuer,
            token_endpoint=meta["token_endpoint"],
            revocation_endpoint=meta.get("revocation_endpoint"),
            did=identity.did,
            handle=identity.handle,
            pds_url=identity.pds_url,
            scope=scope,
            created_at=time.time(),
            authorize_url=authorize_url,
        )

    async def callback(self, pending: PendingAuth, *, code: str, iss: str | None, state: str | None = None) -> TokenSet:
        """Finish a sign-in with the callback's `code` and `iss` (and `state`, if the caller has not already
        matched it). Every check that fails raises Unauthenticated."""
        if state is not None and not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise Unauthenticated("this sign-in does not match the one started here (state mismatch); sign in again")
        if not iss:
            raise Unauthenticated("the sign-in response did not name its authorization server (no iss)")
        if iss != pending.issuer:
            raise Unauthenticated(
                f"the sign-in response came from {iss}, not {pending.issuer} where it started; sign in again"
            )
        if time.time() - pending.created_at > PENDING_MAX_AGE:
            raise Unauthenticated("the sign-in took too long and expired; sign in again")
        if not code:
            raise Unauthenticated("the sign-in response carried no authorization code")

        try:
            dpop_key = ES256Key.from_jwk(pending.dpop_jwk)
        except JWTError as e:
            raise Unauthenticated("the stored sign-in state is damaged; sign in again") from e
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.client.redirect_uri,
            "code_verifier": pending.code_verifier,
            "client_id": self.client.client_id,
            **self._client_assertion(pending.issuer),
        }
        status, payload = await self._post(pending.token_endpoint, dpop_key, body, pending.issuer)
        if status == 400 and payload.get("error") == "invalid_grant":
            raise Unauthenticated("this sign-in code was already used or has expired; sign in again")
        if status != 200:
            raise self._server_error("refused the sign-in code", pending.issuer, status, payload)

        tokens = self._token_set(
            payload,
            dpop_key=dpop_key,
            issuer=pending.issuer,
            did=pending.did,
            handle=pending.handle,
            pds_url=pending.pds_url,
            requested_scope=pending.scope,
            token_endpoint=pending.token_endpoint,
            revocation_endpoint=pending.revocation_endpoint,
        )
        try:
            if payload.get("sub") != pending.did:
                raise Unauthenticated("the authorization server signed in a different account than the one asked for")
            # Trust nothing cached: the DID must still point at a PDS whose authorization server is this one.
            identity = await self.resolver.resolve(pending.did, fresh=True)
            if await self.authorization_server_for(identity.pds_url) != pending.issuer:
                raise Unauthenticated("this account's PDS does not use the server that signed it in")
        except PlyrdError:
            await self.revoke(tokens)  # don't leave a grant we refuse to use
            raise
        tokens.pds_url = identity.pds_url
        tokens.handle = identity.handle
        return tokens

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        """Trade the refresh token for new tokens. Refresh tokens are single use, so concurrent callers with
        the same token share one request (and its result, for a short while)."""
        if not tokens.refresh_token:
            raise SessionExpired("no refresh token")
        key = hashlib.sha256(tokens.refresh_token.encode()).hexdigest()
        lock = self._refresh_locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            for k, (_, at) in list(self._refreshed.items()):
                if now - at > _REFRESH_REUSE:
                    del self._refreshed[k]
            if key in self._refreshed:
                return dataclasses.replace(self._refreshed[key][0])
            try:
                new = await self._refresh(tokens)
            finally:
                self._refresh_locks.pop(key, None)
            self._refreshed[key] = (new, time.monotonic())
            return dataclasses.replace(new)

    async def _refresh(self, tokens: TokenSet) -> TokenSet:
        # Re-check where the account lives before handing the refresh token to anyone.
        identity = await self.resolver.resolve(tokens.did, fresh=True)
        if await self.authorization_server_for(identity.pds_url) != tokens.issuer:
            raise SessionExpired("the account's PDS now uses another authorization server")
        meta = await self.authorization_server_metadata(tokens.issuer)
        try:
            dpop_key = ES256Key.from_jwk(tokens.dpop_jwk)
        except JWTError as e:
            raise SessionExpired("stored DPoP key is damaged") from e
        body = {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token or "",
            "client_id": self.client.client_id,
            **self._client_assertion(tokens.issuer),
        }
        status, payload = await self._post(meta["token_endpoint"], dpop_key, body, tokens.issuer)
        if status == 400 and payload.get("error") == "invalid_grant":
            raise SessionExpired(str(payload.get("error_description") or "refresh token rejected"))
        if status != 200:
            raise self._server_error("refused to refresh the session", tokens.issuer, status, payload)
        if payload.get("sub") != tokens.did:
            raise SessionExpired("the refreshed token is for another account")
        return self._token_set(
            payload,
            dpop_key=dpop_key,
            issuer=tokens.issuer,
            did=tokens.did,
            handle=identity.handle,
            pds_url=identity.pds_url,
            requested_scope=tokens.scope,
            token_endpoint=meta["token_endpoint"],
            revocation_endpoint=meta.get("revocation_endpoint"),
        )

    async def revoke(self, tokens: TokenSet) -> None:
        """Best effort: ask the server to end the grant. Never raises; the caller deletes its copy anyway."""
        if not tokens.revocation_endpoint:
            return
        try:
            dpop_key = ES256Key.from_jwk(tokens.dpop_jwk)
            # Revoking the refresh token ends the whole grant (access token included) on the reference server.
            token = tokens.refresh_token or tokens.access_token
            body = {"token": token, "client_id": self.client.client_id, **self._client_assertion(tokens.issuer)}
            status, _ = await self._post(tokens.revocation_endpoint, dpop_key, body, tokens.issuer)
            if status != 200:
                log.info("revocation at %s answered %s", tokens.issuer, status)
        except (PlyrdError, JWTError, httpx.HTTPError) as e:
            log.info("revocation at %s failed: %s", tokens.issuer, e)

    # ---- helpers

    def _client_assertion(self, issuer: str) -> dict[str, str]:
        """private_key_jwt client authentication (confidential clients only)."""
        if self._client_key is None:
            return {}
        now = int(time.time())
        assertion = self._client_key.sign(
            {"typ": "JWT", "alg": "ES256", "kid": self._client_key.kid},
            {
                "iss": self.client.client_id,
                "sub": self.client.client_id,
                "aud": issuer,
                "jti": secrets.token_urlsafe(16),
                "iat": now,
                "exp": now + ASSERTION_LIFETIME,
            },
        )
        return {"client_assertion_type": _CLIENT_ASSERTION_TYPE, "client_assertion": assertion}

    async def _post(self, url: str, key: ES256Key, body: Mapping[str, str], issuer: str) -> tuple[int, dict]:
        """Form POST with DPoP (nonce retry included); returns (status, JSON object or {})."""
        try:
            resp = await dpop_request(self.http, "POST", url, key=key, nonces=self.nonces, data=body)
        except httpx.TimeoutException as e:
            raise UpstreamError(f"the authorization server {_host(issuer)} did not answer in time") from e
        except httpx.HTTPError as e:
            raise UpstreamError(f"could not reach the authorization server {_host(issuer)}: {e}") from e
        try:
            payload = resp.json()
        except ValueError:
            payload = {}
        return resp.status_code, payload if isinstance(payload, dict) else {}

    @staticmethod
    def _server_error(what: str, issuer: str, status: int, payload: Mapping[str, Any]) -> OAuthServerError:
        error = payload.get("error") if isinstance(payload.get("error"), str) else None
        desc = payload.get("error_description")
        detail = f"the authorization server {_host(issuer)} {what} (HTTP {status}"
        detail += f", {error}" if error else ""
        detail += f": {desc})" if isinstance(desc, str) and desc else ")"
        return OAuthServerError(detail, status=status, error=error)

    def _token_set(
        self,
        payload: Mapping[str, Any],
        *,
        dpop_key: ES256Key,
        issuer: str,
        did: str,
        handle: str | None,
        pds_url: str,
        requested_scope: str,
        token_endpoint: str,
        revocation_endpoint: str | None,
    ) -> TokenSet:
        access = payload.get("access_token")
        if not isinstance(access, str) or not access:
            raise UpstreamError(f"the authorization server {_host(issuer)} sent no access token")
        if str(payload.get("token_type", "")).lower() != "dpop":
            raise UpstreamError(f"the authorization server {_host(issuer)} sent a token that is not DPoP-bound")
        refresh = payload.get("refresh_token")
        expires_in = payload.get("expires_in")
        # No expires_in: assume short-lived and refresh early rather than get 401s.
        lifetime = expires_in if isinstance(expires_in, int | float) and expires_in > 0 else 300
        scope = payload.get("scope") if isinstance(payload.get("scope"), str) else requested_scope
        if "atproto" not in parse_scopes(scope):
            raise Unauthenticated("the authorization server granted no atproto scope")
        return TokenSet(
            did=did,
            handle=handle,
            pds_url=pds_url,
            issuer=issuer,
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=time.time() + float(lifetime),
            scope=scope,
            dpop_jwk=dpop_key.private_jwk(),
            token_endpoint=token_endpoint,
            revocation_endpoint=revocation_endpoint,
        )


def _normalise_identifier(identifier: str) -> str:
    """A handle (with or without '@' / at://) or a DID, checked for syntax; raises InvalidInput."""
    ident = (identifier or "").strip().removeprefix("at://").rstrip("/")
    if ident.startswith("did:"):
        if not is_did(ident):
            raise InvalidInput(f"{ident!r} is not a valid DID (plyrd accepts did:plc and did:web)")
        return ident
    return normalize_handle(ident)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(url: str) -> str:
    return urlsplit(url).netloc or url
