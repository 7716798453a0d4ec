"""ATProto identity: handles and DIDs, resolved both ways, cached for a while.

A handle is only trusted when it and its DID point at each other (the bidirectional check): a DID document
may claim any handle, and any domain may point at any DID. plyrd accepts did:plc and did:web, the two DID
methods ATProto supports.

Outbound requests go through the `httpx.AsyncClient` given to the resolver; in production that is
`plyrd.atproto.net.make_http_client(allow_private=False, ...)`, so a handle, DID document or PDS pointing at
a private address is refused (BlockedAddress).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

from plyrd.atproto.net import BlockedAddress, UpstreamStatusError, describe_url, get_json, get_text
from plyrd.errors import InvalidInput, NotFound, PlyrdError, UpstreamError

# ATProto handle syntax (lowercased first): DNS labels, at least two, the last not starting with a digit.
_HANDLE_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_HANDLE_MAX = 253
# TLDs the handle spec says never to resolve over DNS/HTTPS. `.test` handles live only on a test PDS, reached
# through `handle_resolver_url`.
_RESERVED_TLDS = frozenset(
    {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion", "test"}
)

_PLC_RE = re.compile(r"^did:plc:[a-z2-7]{24}$")
# did:web as ATProto uses it: a hostname only (no path). A port (percent-encoded colon) only for localhost,
# which the spec allows for development.
_WEB_RE = re.compile(
    r"^did:web:(?:localhost(?:%3[aA][0-9]{1,5})?"
    r"|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)$"
)
_DID_MAX = 2048

# A handle's /.well-known/atproto-did holds one DID: anything bigger is not one.
_WELL_KNOWN_MAX_BYTES = 4096
_DID_DOC_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Identity:
    """A resolved account. `handle` is None unless it verified both ways.

    `signing_key` is the `publicKeyMultibase` of the `#atproto` verification method (prefix it with
    "did:key:" for a did:key).
    """

    did: str
    handle: str | None
    pds_url: str
    signing_key: str | None
    doc: dict[str, Any]


def normalize_handle(s: str) -> str:
    """Strip whitespace and a leading '@', lowercase, check ATProto handle syntax. Raises InvalidInput."""
    handle = s.strip()
    if handle.startswith("@"):
        handle = handle[1:]
    handle = handle.lower()
    if len(handle) > _HANDLE_MAX or not _HANDLE_RE.match(handle):
        raise InvalidInput(f"{s!r} is not a valid handle (expected a domain name such as alice.example.com)")
    return handle


def is_did(s: str) -> bool:
    """True for a syntactically valid did:plc or did:web, the DID methods plyrd accepts."""
    return len(s) <= _DID_MAX and bool(_PLC_RE.match(s) or _WEB_RE.match(s))


def _check_did(s: str) -> str:
    if not is_did(s):
        raise InvalidInput(f"{s!r} is not a valid DID (plyrd accepts did:plc and did:web)")
    return s


def _https_base(host: str) -> str:
    return f"https://{host}"


class IdentityResolver:
    """Resolves handles and DIDs to an Identity, with a TTL cache.

    `dns_resolver`: the resolver for `_atproto.<handle>` TXT lookups; default: the system's resolv.conf.
    `web_base_url`: TEST HOOK. Maps a host (a handle, or a did:web host with its port) to the base URL
    that `/.well-known/atproto-did` or `/.well-known/did.json` is appended to. Default `https://{host}`,
    which production must keep; tests point it at a plain-http server on loopback.
    `conflict_grace`: once one handle method (DNS, HTTPS) answers, how long to wait for the other, so
    conflicting answers are noticed without waiting for a slow host.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        plc_url: str = "https://plc.directory",
        handle_resolver_url: str | None = None,
        cache_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        dns_resolver: dns.asyncresolver.Resolver | None = None,
        dns_timeout: float = 3.0,
        web_base_url: Callable[[str], str] = _https_base,
        conflict_grace: float = 1.0,
        max_cache_entries: int = 10_000,
    ) -> None:
        self._http = http
        self._plc_url = plc_url.rstrip("/")
        self._handle_resolver_url = handle_resolver_url.rstrip("/") if handle_resolver_url else None
        self._ttl = cache_ttl
        self._clock = clock
        self._dns = dns_resolver
        self._dns_timeout = dns_timeout
        self._web_base_url = web_base_url
        self._conflict_grace = conflict_grace
        self._max_entries = max_cache_entries
        # key (a DID or a handle) -> (expiry on `clock`, Identity); insertion order doubles as LRU order.
        self._cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    # ---- handles -----

    async def resolve_handle(self, handle: str) -> str:
        """Handle -> DID (one direction only: see resolve() for the verified pair).

        Raises InvalidInput (syntax, reserved TLD), NotFound (no DID for it), UpstreamError (resolver failing,
        or DNS and HTTPS naming different DIDs).
        """
        handle = normalize_handle(handle)
        if self._handle_resolver_url is not None:
            return await self._resolve_handle_xrpc(handle)
        tld = handle.rsplit(".", 1)[-1]
        if tld in _RESERVED_TLDS:
            raise InvalidInput(
                f"handle {handle} uses the reserved top-level domain .{tld} and cannot be resolved"
            )
        return await self._resolve_handle_direct(handle)

    async def _resolve_handle_xrpc(self, handle: str) -> str:
        assert self._handle_resolver_url is not None
        service = f"handle resolver {describe_url(self._handle_resolver_url)}"
        try:
            body = await get_json(
                self._http,
                f"{self._handle_resolver_url}/xrpc/com.atproto.identity.resolveHandle",
                params={"handle": handle},
                service=service,
                max_bytes=_WELL_KNOWN_MAX_BYTES,
            )
        except UpstreamStatusError as exc:
            # The reference PDS answers 400 InvalidRequest "Unable to resolve handle" for an unknown handle.
            if exc.status in (400, 404):
                raise NotFound(f"handle {handle} could not be resolved") from exc
            raise
        did = body.get("did")
        if not isinstance(did, str) or not is_did(did):
            raise UpstreamError(
                f"{service} answered {did!r} for {handle}, which is not a valid did:plc or did:web"
            )
        return did

    async def _resolve_handle_direct(self, handle: str) -> str:
        # Both methods at once; the first valid answer wins, but a conflicting answer from the other method
        # within `conflict_grace` is an error rather than a coin toss.
        tasks = {
            asyncio.create_task(self._handle_from_dns(handle)): "DNS",
            asyncio.create_task(self._handle_from_https(handle)): "HTTPS",
        }
        answers: dict[str, str] = {}
        misses: dict[str, str] = {}
        dns_failed = False
        pending: set[asyncio.Task[str | None]] = set(tasks)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        try:
            while pending:
                wait_for = None if deadline is None else max(0.0, deadline - loop.time())
                done, pending = await asyncio.wait(
                    pending, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # grace over: keep the answer we have
                for task in done:
                    method = tasks[task]
                    exc = task.exception()
                    if exc is None:
                        did = task.result()
                        if did is None:
                            misses[method] = "no DID published"
                        else:
                            answers[method] = did
                    elif isinstance(exc, PlyrdError):
                        misses[method] = exc.detail
                        dns_failed = dns_failed or method == "DNS"
                    else:
                        raise exc
                if answers and deadline is None:
                    deadline = loop.time() + self._conflict_grace
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if len(set(answers.values())) > 1:
            raise UpstreamError(
                f"handle {handle} is misconfigured: DNS says {answers['DNS']}, HTTPS says {answers['HTTPS']}"
            )
        if answers:
            return next(iter(answers.values()))
        reasons = "; ".join(f"{method}: {reason}" for method, reason in sorted(misses.items()))
        if dns_failed:
            # A DNS failure (resolver down, several DIDs) is not evidence that the handle does not exist.
            raise UpstreamError(f"handle {handle} could not be resolved ({reasons})")
        raise NotFound(f"handle {handle} could not be resolved ({reasons})")

    def _dns_resolver(self) -> dns.asyncresolver.Resolver:
        if self._dns is None:
            try:
                self._dns = dns.asyncresolver.Resolver()  # reads /etc/resolv.conf: only when first needed
            except dns.exception.DNSException as exc:
                raise UpstreamError(f"no DNS resolver is configured on this machine: {exc}") from exc
        return self._dns

    async def _handle_from_dns(self, handle: str) -> str | None:
        name = f"_atproto.{handle}."
        try:
            answer = await self._dns_resolver().resolve(name, "TXT", lifetime=self._dns_timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.Timeout:
            raise UpstreamError(f"DNS lookup of {name} timed out") from None
        except dns.exception.DNSException as exc:
            raise UpstreamError(f"DNS lookup of {name} failed: {exc}") from exc
        dids: set[str] = set()
        for rdata in answer:
            text = b"".join(rdata.strings).decode("utf-8", "replace")  # one record may be split into strings
            if text.startswith("did="):
                dids.add(text[len("did=") :].strip())
        if len(dids) > 1:
            # The spec: several different did= records make the handle invalid.
            raise UpstreamError(f"DNS for {name} lists several DIDs: {', '.join(sorted(dids))}")
        did = next(iter(dids), None)
        return did if did is not None and is_did(did) else None

    async def _handle_from_https(self, handle: str) -> str | None:
        url = f"{self._web_base_url(handle)}/.well-known/atproto-did"
        try:
            text = await get_text(self._http, url, max_bytes=_WELL_KNOWN_MAX_BYTES, service=handle)
        except UpstreamStatusError as exc:
            if exc.status == 404:
                return None
            raise
        except BlockedAddress:
            # Said as a miss, without the address: an error message must not become a map of someone's LAN.
            raise UpstreamError(f"{handle} is not on a public address") from None
        did = text.strip()
        return did if is_did(did) else None

    # ---- DIDs -----

    async def resolve_did(self, did: str) -> dict[str, Any]:
        """DID -> DID document. Raises InvalidInput, NotFound (no such DID), UpstreamError (service down)."""
        _check_did(did)
        if did.startswith("did:plc:"):
            service = f"PLC directory {describe_url(self._plc_url)}"
            try:
                doc = await get_json(
                    self._http, f"{self._plc_url}/{did}", max_bytes=_DID_DOC_MAX_BYTES, service=service
                )
            except UpstreamStatusError as exc:
                if exc.status == 404:
                    raise NotFound(f"{did} is not in the {service}") from exc
                if exc.status == 410:
                    raise NotFound(f"{did} has been deactivated (tombstoned) in the {service}") from exc
                raise
        else:
            # did:web:host%3Aport -> host:port (the spec percent-encodes the port's colon).
            host = did[len("did:web:") :].replace("%3A", ":").replace("%3a", ":")
            service = host
            try:
                doc = await get_json(
                    self._http,
                    f"{self._web_base_url(host)}/.well-known/did.json",
                    max_bytes=_DID_DOC_MAX_BYTES,
                    service=service,
                )
            except UpstreamStatusError as exc:
                if exc.status in (404, 410):
                    raise NotFound(f"{did} could not be resolved: {host} serves no DID document") from exc
                raise
        if doc.get("id") != did:
            raise UpstreamError(f"{service} returned a DID document for {doc.get('id')!r}, not for {did}")
        return doc

    # ---- both -----

    async def resolve(self, identifier: str, *, fresh: bool = False) -> Identity:
        """A handle or a DID -> Identity, from the cache unless `fresh` (which also refreshes the cache).

        For a handle, the DID document must claim it back, or NotFound. For a DID, the handle its document
        claims is kept only if it resolves back to the DID; otherwise `handle` is None.
        """
        identifier = identifier.strip()
        if identifier.startswith("did:"):
            key = _check_did(identifier)
        else:
            key = normalize_handle(identifier)
        if not fresh:
            cached = self._cache_get(key)
            if cached is not None:
                return cached
        if key.startswith("did:"):
            identity = await self._from_did(key)
        else:
            identity = await self._from_handle(key)
        self._cache_put(identity)
        return identity

    async def _from_handle(self, handle: str) -> Identity:
        did = await self.resolve_handle(handle)
        doc = await self.resolve_did(did)
        claimed = _claimed_handle(doc)
        if claimed != handle:
            raise NotFound(
                f"handle {handle} points to {did}, but that DID claims "
                + (f"the handle {claimed}" if claimed else "no handle")
            )
        return _identity(did, handle, doc)

    async def _from_did(self, did: str) -> Identity:
        doc = await self.resolve_did(did)
        identity = _identity(did, None, doc)  # checks the PDS entry before spending a handle lookup
        claimed = _claimed_handle(doc)
        if claimed is None:
            return identity
        try:
            verified = await self.resolve_handle(claimed) == did
        except PlyrdError:
            verified = False  # an unresolvable handle is an unverified one, not a failed DID
        return _identity(did, claimed, doc) if verified else identity

    # ---- cache -----

    def _cache_get(self, key: str) -> Identity | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, identity = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return identity

    def _cache_put(self, identity: Identity) -> None:
        previous = self._cache.get(identity.did)
        if previous is not None and previous[1].handle and previous[1].handle != identity.handle:
            # The DID changed handle: the old handle must not keep answering with it.
            self._cache.pop(previous[1].handle, None)
        expires = self._clock() + self._ttl
        for key in (identity.did, identity.handle):
            if key is not None:
                self._cache[key] = (expires, identity)
                self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def invalidate(self, identifier: str) -> None:
        """Forget a DID or handle (and the identity's other key), e.g. after an identity event."""
        entry = self._cache.pop(
            identifier.strip().lower() if not identifier.startswith("did:") else identifier, None
        )
        if entry is not None:
            for key in (entry[1].did, entry[1].handle):
                if key is not None:
                    self._cache.pop(key, None)


def _claimed_handle(doc: dict[str, Any]) -> str | None:
    """The handle a DID document claims: its first `at://` alsoKnownAs entry, if that is a valid handle."""
    aka = doc.get("alsoKnownAs")
    if not isinstance(aka, list):
        return None
    for entry in aka:
        if isinstance(entry, str) and entry.startswith("at://"):
            try:
                return normalize_handle(entry[len("at://") :])
            except InvalidInput:
                return None
    return None


def _matches_fragment(entry_id: Any, did: str, fragment: str) -> bool:
    # Documents write either the bare fragment or the full DID URL.
    return entry_id in (fragment, f"{did}{fragment}")


def _pds_endpoint(did: str, doc: dict[str, Any]) -> str:
    services = doc.get("service")
    for service in services if isinstance(services, list) else []:
        if (
            isinstance(service, dict)
            and _matches_fragment(service.get("id"), did, "#atproto_pds")
            and service.get("type") == "AtprotoPersonalDataServer"
        ):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str):
                parts = urlsplit(endpoint)
                if (
                    parts.scheme in ("https", "http")
                    and parts.hostname
                    and not parts.query
                    and not parts.fragment
                ):
                    return endpoint.rstrip("/")
            raise NotFound(f"{did} names an invalid PDS endpoint: {endpoint!r}")
    raise NotFound(f"{did} names no ATProto PDS in its DID document")


def _signing_key(did: str, doc: dict[str, Any]) -> str | None:
    methods = doc.get("verificationMethod")
    for method in methods if isinstance(methods, list) else []:
        if isinstance(method, dict) and _matches_fragment(method.get("id"), did, "#atproto"):
            key = method.get("publicKeyMultibase")
            return key if isinstance(key, str) and key else None
    return None


def _identity(did: str, handle: str | None, doc: dict[str, Any]) -> Identity:
    return Identity(
        did=did, handle=handle, pds_url=_pds_endpoint(did, doc), signing_key=_signing_key(did, doc), doc=doc
    )
