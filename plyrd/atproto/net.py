"""Outbound HTTP: an httpx client that refuses private addresses (SSRF guard), and size-capped fetch helpers.

Every request plyrd makes to a host named by someone else's data (a handle's domain, a DID document's PDS,
a did:web host) goes through `make_http_client()`. The guard lives in the network backend, below httpx and
httpcore's connection pool, so it sees every connection, redirect hops included. It resolves the host once,
checks every address the name resolves to, and then connects to one of the checked addresses itself: a DNS
answer that changes between check and connect (rebinding) cannot slip through. TLS SNI, certificate checks
and the Host header still use the URL's hostname, because httpcore takes them from the URL, not the socket.

`allow_private=True` turns the address check off: a self-hoster's own PDS on the LAN, and tests on loopback.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
import httpcore
import httpx

from plyrd.errors import Forbidden, UpstreamError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# CGNAT (RFC 6598): Python's ipaddress calls it neither private nor global; it is not the public internet.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 prefixes carry an IPv4 address in their low 32 bits: judge the embedded address.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

# Error bodies are read only to quote the XRPC error; never hold more than this of one.
_ERROR_BODY_LIMIT = 64 * 1024


class BlockedAddress(Forbidden):
    """A connection to a non-public address was refused (the SSRF guard)."""

    def __init__(self, host: str, address: str) -> None:
        where = "it is" if host.strip("[]") == address else f"it resolves to {address},"
        super().__init__(f"refusing to connect to {host}: {where} not a public internet address")
        self.host = host
        self.address = address


class UpstreamStatusError(UpstreamError):
    """An upstream answered with a non-2xx status.

    Callers map some statuses to their own errors (a PLC 404 is NotFound), so the status and the XRPC
    error name travel along.
    """

    def __init__(
        self, detail: str, *, status: int, error: str | None = None, message: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.message = message


def is_public_address(ip: IPAddress | str) -> bool:
    """True if `ip` is a global unicast address, the only kind the guard lets plyrd connect to."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 address reach that address: judge it instead.
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if any(ip in net for net in _NAT64):
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    elif ip in _CGNAT:
        return False
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
    ):
        return False
    # is_global also rules out the documentation and benchmarking ranges the checks above let through.
    return ip.is_global


def _ip_literal(host: str) -> str | None:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None
    return candidate


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend: resolve once, check every address, connect to a checked one."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, limit: float | None) -> list[str]:
        literal = _ip_literal(host)
        if literal is not None:
            return [literal]
        try:
            with anyio.fail_after(limit):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror: no such name, or no resolver
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"could not resolve {host}: no addresses")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,  # type: ignore[name-defined]
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self._resolve(host, port, timeout)
        if not self._allow_private:
            # Every address, not just the first: one public address beside a private one is no way in.
            for address in addresses:
                if not is_public_address(address):
                    raise BlockedAddress(host, address)
        last_error: Exception | None = None
        for address in addresses:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            try:
                # An IP literal: anyio will not resolve it again, so what was checked is what is reached.
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # refused or unreachable: try the next address
                last_error = exc
        raise httpcore.ConnectError(f"could not connect to {host}:{port}: {last_error}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,  # type: ignore[name-defined]
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self, *, allow_private: bool, limits: httpx.Limits, ssl_context: ssl.SSLContext | None
    ) -> None:
        if ssl_context is None:
            ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # httpx 0.28 has no parameter for httpcore's network backend: replace the pool it built with the same
        # pool plus the guarded backend. tests/test_identity.py fails if a later httpx drops `_pool`.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow_private=allow_private),
        )


def make_http_client(
    *,
    allow_private: bool,
    timeout: float = 10.0,
    user_agent: str,
    max_redirects: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client for outbound requests, guarded against private addresses unless `allow_private`.

    Redirects are not followed unless `max_redirects` > 0; each hop goes through the same guard. Environment
    proxies and .netrc are ignored (trust_env=False): a proxy would resolve names out of the guard's sight.
    `ssl_context` replaces the default (certifi's CAs), e.g. to trust a private CA on a LAN or in tests.
    """
    if max_redirects < 0:
        raise ValueError("max_redirects must be >= 0")
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    return httpx.AsyncClient(
        transport=_GuardedTransport(allow_private=allow_private, limits=limits, ssl_context=ssl_context),
        timeout=timeout,
        headers={"User-Agent": user_agent},
        follow_redirects=max_redirects > 0,
        max_redirects=max_redirects,
        trust_env=False,
    )


def describe_url(url: str | httpx.URL) -> str:
    """The host (and port, if not the default) of a URL, to name a service in an error message."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return str(url)
    return parsed.netloc.decode("ascii", "replace") or str(url)


async def _read_limited(response: httpx.Response, limit: int, name: str, *, strict: bool) -> bytes:
    """Read at most `limit` bytes of the (decoded) body; past that, fail if `strict`, else truncate."""
    declared = response.headers.get("content-length")
    if strict and declared is not None and declared.isdigit() and int(declared) > limit:
        raise UpstreamError(f"{name} sent a body of {declared} bytes, more than the {limit} bytes allowed")
    chunks: list[bytes] = []
    total = 0
    # aiter_bytes decodes gzip/deflate/zstd, so the limit applies to what we would hold in memory.
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            if strict:
                raise UpstreamError(f"{name} sent more than the {limit} bytes allowed")
            chunks.append(chunk[: limit - (total - len(chunk))])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(name: str, response: httpx.Response, body: bytes) -> UpstreamStatusError:
    status = response.status_code
    if response.is_redirect:
        location = response.headers.get("location", "?")
        return UpstreamStatusError(
            f"{name} answered HTTP {status}, a redirect to {location} (not followed)", status=status
        )
    error = message = None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        # XRPC errors look like {"error": "InvalidRequest", "message": "..."}.
        error = payload.get("error") if isinstance(payload.get("error"), str) else None
        message = payload.get("message") if isinstance(payload.get("message"), str) else None
    detail = f"{name} answered HTTP {status}"
    if error or message:
        detail += ": " + ": ".join(part for part in (error, message) if part)
    return UpstreamStatusError(detail, status=status, error=error, message=message)


async def fetch_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    max_bytes: int = 1_000_000,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    service: str | None = None,
) -> tuple[httpx.Response, bytes]:
    """Send a request and read a 2xx body of at most `max_bytes`.

    Every failure becomes an UpstreamError naming `service` (default: the URL's host): non-2xx
    (UpstreamStatusError), timeouts, connection errors, a body over the limit. BlockedAddress (Forbidden)
    passes through untouched.
    """
    name = service or describe_url(url)
    try:
        async with client.stream(method, url, params=params, headers=headers) as response:
            ok = response.is_success
            body = await _read_limited(response, max_bytes if ok else _ERROR_BODY_LIMIT, name, strict=ok)
    except httpx.TimeoutException:
        timeout = client.timeout.read or client.timeout.connect
        raise UpstreamError(f"{name} did not answer in time ({timeout} s)") from None
    except httpx.TooManyRedirects:
        raise UpstreamError(f"{name} redirected too many times") from None
    except httpx.RequestError as exc:
        reason = str(exc) or type(exc).__name__
        raise UpstreamError(f"could not reach {name}: {reason}") from exc
    except httpx.InvalidURL as exc:
        raise UpstreamError(f"{name}: invalid URL {url!r} ({exc})") from exc
    if not response.is_success:
        raise _status_error(name, response, body)
    return response, body


async def get_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = 1_000_000,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """GET a JSON object. Raises UpstreamError (see fetch_bytes), also for a body that is no JSON object."""
    name = service or describe_url(url)
    _, body = await fetch_bytes(
        client, url, max_bytes=max_bytes, params=params, headers=headers, service=name
    )
    try:
        payload = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        raise UpstreamError(f"{name} sent a body that is not valid JSON") from None
    if not isinstance(payload, dict):
        raise UpstreamError(f"{name} sent JSON that is not an object")
    return payload


async def get_text(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int = 64 * 1024,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    service: str | None = None,
) -> str:
    """GET a small UTF-8 text body. Raises UpstreamError (see fetch_bytes), also for a body not in UTF-8."""
    name = service or describe_url(url)
    _, body = await fetch_bytes(
        client, url, max_bytes=max_bytes, params=params, headers=headers, service=name
    )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise UpstreamError(f"{name} sent a body that is not UTF-8 text") from None
