"""DPoP (RFC 9449) proofs and the server-nonce dance ATProto requires.

Every OAuth request (PAR, token, revoke) and every XRPC call with an OAuth token carries a fresh proof
signed by the session's own key. Servers hand out nonces in `DPoP-Nonce`; we keep the latest one per
origin (from every response, successful ones too) and retry exactly once when a server says
`use_dpop_nonce`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from plyrd.atproto.jwt import ES256Key, b64url_encode
from plyrd.errors import UpstreamError

# OAuth and XRPC answers are small JSON; a server that sends more is broken or hostile.
DEFAULT_MAX_RESPONSE = 1_000_000


def origin_of(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def htu_of(url: str) -> str:
    """The `htu` claim: the request URL without query or fragment (RFC 9449 section 4.2)."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}{u.path}"


def access_token_hash(access_token: str) -> str:
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def make_proof(
    key: ES256Key, method: str, url: str, *, nonce: str | None = None, access_token: str | None = None
) -> str:
    payload: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": htu_of(url),
        "iat": int(time.time()),
    }
    if nonce:
        payload["nonce"] = nonce
    if access_token:
        payload["ath"] = access_token_hash(access_token)  # binds the proof to this token at resource servers
    # The public key goes in the header (bare: no kid), so the server binds tokens to its thumbprint.
    return key.sign({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()}, payload)


class NonceStore:
    """Latest DPoP nonce per origin, shared across sessions: a nonce belongs to a server, not a key.

    Bounded (LRU) because a node talks to many PDSes over its life.
    """

    def __init__(self, max_origins: int = 2048) -> None:
        self._nonces: OrderedDict[str, str] = OrderedDict()
        self._max = max_origins

    def get(self, url: str) -> str | None:
        return self._nonces.get(origin_of(url))

    def set(self, url: str, nonce: str) -> None:
        o = origin_of(url)
        self._nonces[o] = nonce
        self._nonces.move_to_end(o)
        while len(self._nonces) > self._max:
            self._nonces.popitem(last=False)

    def update(self, url: str, response: httpx.Response) -> None:
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self.set(url, nonce)


def is_nonce_challenge(response: httpx.Response) -> bool:
    """400 `{"error":"use_dpop_nonce"}` (authorization server) or 401 with a DPoP WWW-Authenticate (PDS)."""
    if response.status_code == 401:
        if "use_dpop_nonce" in response.headers.get("www-authenticate", ""):
            return True
    if response.status_code not in (400, 401):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"


async def send_capped(http: httpx.AsyncClient, request: httpx.Request, max_bytes: int) -> httpx.Response:
    """Send and read the body, refusing more than `max_bytes` (decoded), so no server can fill our memory."""
    resp = await http.send(request, stream=True)
    chunks: list[bytes] = []
    try:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise UpstreamError(f"{request.url.host} sent a response larger than {max_bytes} bytes")
        total = 0
        async for chunk in resp.aiter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise UpstreamError(f"{request.url.host} sent a response larger than {max_bytes} bytes")
            chunks.append(chunk)
    finally:
        await resp.aclose()
    # A buffered copy: drop the encoding headers, the body is already decoded.
    headers = [
        (k, v)
        for k, v in resp.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(resp.status_code, headers=headers, content=b"".join(chunks), request=request)


async def dpop_request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    key: ES256Key,
    nonces: NonceStore,
    access_token: str | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    json: Any = None,
    content: bytes | AsyncIterable[bytes] | None = None,
    max_bytes: int = DEFAULT_MAX_RESPONSE,
) -> httpx.Response:
    """Send one request with a DPoP proof; on a nonce challenge, retry once with the server's nonce.

    A streamed body (an async iterator) cannot be sent twice, so then the challenge response is returned
    as is; callers prime the nonce first (see OAuthSession.upload_blob).
    Transport errors (httpx.HTTPError) propagate for the caller to map.
    """
    replayable = content is None or isinstance(content, bytes | bytearray)
    resp: httpx.Response | None = None
    for attempt in range(2):
        hdrs = dict(headers or {})
        hdrs["DPoP"] = make_proof(key, method, url, nonce=nonces.get(url), access_token=access_token)
        if access_token:
            hdrs["Authorization"] = f"DPoP {access_token}"
        request = http.build_request(
            method, url, headers=hdrs, params=params, data=data, json=json, content=content
        )
        resp = await send_capped(http, request, max_bytes)
        nonces.update(url, resp)
        if attempt == 0 and replayable and is_nonce_challenge(resp) and nonces.get(url):
            continue
        return resp
    assert resp is not None
    return resp
