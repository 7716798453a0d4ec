"""Identity resolution and the SSRF-guarded HTTP client, against real servers on loopback.

- the real PDS + PLC directory (tests/pds_harness.py) for .test handles and did:plc;
- a small threaded HTTP server for /.well-known paths, did:web, and misbehaving upstreams;
- a small UDP DNS server (dnspython messages) for `_atproto.<handle>` TXT records.
Nothing leaves the machine: the DNS resolver and `web_base_url` are pointed at loopback explicitly.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rrset
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plyrd.atproto.identity import Identity, IdentityResolver, is_did, normalize_handle
from plyrd.atproto.net import (
    BlockedAddress,
    UpstreamStatusError,
    get_json,
    get_text,
    is_public_address,
    make_http_client,
)
from plyrd.errors import Forbidden, InvalidInput, NotFound, UpstreamError

UA = "plyrd-tests"
PLC_A = "did:plc:" + "a" * 24
PLC_B = "did:plc:" + "b" * 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- a small real HTTP server --------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class LoopbackServer:
    """http.server in a thread. Routes by exact path (query ignored); records every request."""

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append((self.path, dict(self.headers.items())))
                route = server.routes.get(path, Route(404, b'{"error":"NotFound"}'))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a size limit): expected

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str = "", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def json(self, path: str, payload: Any, status: int = 200) -> None:
        self.routes[path] = Route(status, json.dumps(payload).encode())

    def text(self, path: str, text: str, status: int = 200) -> None:
        self.routes[path] = Route(status, text.encode(), content_type="text/plain")

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p.split("?", 1)[0] == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


# ---- a small real DNS server ---------------------------------------------------------------------


class DNSServer(asyncio.DatagramProtocol):
    """Answers TXT queries from `records` (name -> strings); unknown names get NXDOMAIN."""

    SERVFAIL = "SERVFAIL"

    def __init__(self) -> None:
        self.records: dict[str, list[str] | str] = {}
        self.queries: list[str] = []
        self.transport: Any = None  # asyncio's datagram transport (not a DatagramTransport subclass)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.queries.append(name)
        records = self.records.get(name)
        if records == self.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            quoted = [json.dumps(text) for text in records]  # TXT presentation format: quoted strings
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *quoted))
        self.transport.sendto(response.to_wire(), addr)

    def resolver(self, port: int) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = port
        return resolver


@dataclass
class DNSFixture:
    server: DNSServer
    port: int

    def set_did(self, handle: str, *values: str) -> None:
        self.server.records[f"_atproto.{handle}"] = [f"did={v}" for v in values]

    def resolver(self) -> dns.asyncresolver.Resolver:
        return self.server.resolver(self.port)


@pytest.fixture
async def dns_server() -> AsyncIterator[DNSFixture]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(DNSServer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield DNSFixture(protocol, port)
    transport.close()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(allow_private=True, timeout=5.0, user_agent=UA) as client:
        yield client


def did_doc(did: str, *, handle: str | None, pds: str, key: str | None = "zQ3shTestKey") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"] if handle else [],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}],
    }
    if key:
        doc["verificationMethod"] = [
            {"id": f"{did}#atproto", "type": "Multikey", "controller": did, "publicKeyMultibase": key}
        ]
    return doc


def web_resolver(
    http: httpx.AsyncClient, web: LoopbackServer, dns_server: DNSFixture, **kw: Any
) -> IdentityResolver:
    # Test hook: every "https://<host>" becomes http://127.0.0.1:<port>/<host> on the loopback server.
    base: Callable[[str], str] = lambda host: web.url(f"/{host}")  # noqa: E731
    kw.setdefault("plc_url", web.url("/plc"))
    return IdentityResolver(
        http, dns_resolver=dns_server.resolver(), web_base_url=base, dns_timeout=1.0, **kw
    )


# ---- syntax --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice.test", "alice.test"),
        ("@Alice.Example.COM", "alice.example.com"),
        ("  bob.bsky.social ", "bob.bsky.social"),
        ("xn--ls8h.example.org", "xn--ls8h.example.org"),
        ("a-b.c1.io", "a-b.c1.io"),
    ],
)
def test_normalize_handle_accepts(raw: str, expected: str) -> None:
    assert normalize_handle(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "@", "alice", "alice.", ".alice.com", "al ice.com", "-a.com", "a-.com", "a.1com", "a..com",
     "alice.com/x", "did:plc:abc", "a" * 64 + ".com", ("a" * 60 + ".") * 5 + "com", "ünï.com"],
)
def test_normalize_handle_rejects(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_handle(raw)


@pytest.mark.parametrize(
    ("s", "ok"),
    [
        (PLC_A, True),
        ("did:plc:z72i7hdynmk6r22z27h6tvur", True),
        ("did:plc:Z72i7hdynmk6r22z27h6tvur", False),  # base32 is lowercase
        ("did:plc:z72i7hdynmk6r22z27h6tvu", False),  # 23 chars
        ("did:plc:z72i7hdynmk6r22z27h6tvu1", False),  # '1' is not base32
        ("did:web:example.com", True),
        ("did:web:sub.example.com", True),
        ("did:web:localhost%3A8080", True),
        ("did:web:example.com%3A8080", False),  # ports only for localhost
        ("did:web:example.com:path", False),  # no paths in ATProto
        ("did:web:localhost", True),
        ("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", False),
        ("did:example:123", False),
        ("alice.test", False),
        ("", False),
    ],
)
def test_is_did(s: str, ok: bool) -> None:
    assert is_did(s) is ok


# ---- SSRF guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("127.1.2.3", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1%eth0", False),
        ("100.64.0.1", False),  # CGNAT
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("192.0.2.10", False),  # documentation
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("fec0::1", False),  # site-local
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public
    assert is_public_address(ipaddress.ip_address(address.split("%")[0])) is public


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
async def test_guard_refuses_loopback(web: LoopbackServer, host: str) -> None:
    web.json("/x", {"ok": True})
    async with make_http_client(allow_private=False, user_agent=UA) as client:
        with pytest.raises(BlockedAddress) as info:
            await get_json(client, web.url("/x", host=host))
    assert isinstance(info.value, Forbidden)
    assert host in info.value.detail
    assert web.requests == []  # refused before any byte was sent


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_guard_refuses_ipv6_literal() -> None:
    server = LoopbackServer("::1")
    try:
        server.json("/x", {"ok": True})
        async with make_http_client(allow_private=False, user_agent=UA) as client:
            with pytest.raises(BlockedAddress):
                await get_json(client, server.url("/x", host="[::1]"))
        async with make_http_client(allow_private=True, user_agent=UA) as client:
            assert await get_json(client, server.url("/x", host="[::1]")) == {"ok": True}
    finally:
        server.close()


async def test_allow_private_connects_and_keeps_host_header(web: LoopbackServer) -> None:
    web.json("/x", {"ok": True})
    async with make_http_client(allow_private=True, user_agent=UA) as client:
        assert await get_json(client, web.url("/x", host="localhost")) == {"ok": True}
    _, headers = web.requests[-1]
    # The socket went to a resolved IP, but the request still names the host from the URL.
    assert headers["Host"] == f"localhost:{web.port}"
    assert headers["User-Agent"] == UA


def test_guard_is_installed_in_httpx_pool() -> None:
    # make_http_client swaps httpx's private `_pool`: fail loudly if an httpx upgrade changes that.
    from plyrd.atproto import net

    client = make_http_client(allow_private=False, user_agent=UA)
    transport = client._transport
    assert isinstance(transport, net._GuardedTransport)
    assert isinstance(transport._pool._network_backend, net._GuardedBackend)


def _self_signed_localhost(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        # DNS name only, no IP: verification passes only if TLS uses the hostname, not the connected IP.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "localhost.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pem


async def test_tls_uses_hostname_for_sni_and_verification(tmp_path: Path) -> None:
    pem = _self_signed_localhost(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment]
    server = LoopbackServer(ssl_context=server_ctx)
    try:
        server.json("/x", {"tls": True})
        client_ctx = ssl.create_default_context(cafile=str(pem))
        async with make_http_client(allow_private=True, user_agent=UA, ssl_context=client_ctx) as client:
            assert await get_json(client, server.url("/x", host="localhost", scheme="https")) == {"tls": True}
        assert seen_sni == ["localhost"]
        assert server.requests[-1][1]["Host"] == f"localhost:{server.port}"
    finally:
        server.close()


async def test_redirects_not_followed_by_default(web: LoopbackServer) -> None:
    web.json("/final", {"final": True})
    web.routes["/hop"] = Route(302, b"", headers={"Location": web.url("/final")})
    async with make_http_client(allow_private=True, user_agent=UA) as client:
        with pytest.raises(UpstreamStatusError) as info:
            await get_json(client, web.url("/hop"))
    assert info.value.status == 302
    assert "not followed" in info.value.detail
    assert web.hits("/final") == 0


async def test_redirects_capped(web: LoopbackServer) -> None:
    web.json("/final", {"final": True})
    web.routes["/hop2"] = Route(302, b"", headers={"Location": web.url("/final")})
    web.routes["/hop1"] = Route(302, b"", headers={"Location": web.url("/hop2")})
    async with make_http_client(allow_private=True, user_agent=UA, max_redirects=2) as client:
        assert await get_json(client, web.url("/hop1")) == {"final": True}
    async with make_http_client(allow_private=True, user_agent=UA, max_redirects=1) as client:
        with pytest.raises(UpstreamError, match="redirected too many times"):
            await get_json(client, web.url("/hop1"))


async def test_guard_still_applies_with_redirects_enabled(web: LoopbackServer) -> None:
    # The guard sits under the pool, so every hop (including the first) goes through it.
    web.routes["/hop"] = Route(302, b"", headers={"Location": web.url("/final")})
    async with make_http_client(allow_private=False, user_agent=UA, max_redirects=3) as client:
        with pytest.raises(BlockedAddress):
            await get_json(client, web.url("/hop", host="localhost"))


# ---- get_json / get_text failures ----------------------------------------------------------------


async def test_get_json_non_2xx_quotes_xrpc_error(
    web: LoopbackServer, http_client: httpx.AsyncClient
) -> None:
    web.json("/e", {"error": "InternalServerError", "message": "db down"}, status=500)
    with pytest.raises(UpstreamStatusError) as info:
        await get_json(http_client, web.url("/e"), service="the thing")
    assert info.value.status == 500
    assert info.value.error == "InternalServerError"
    assert info.value.detail == "the thing answered HTTP 500: InternalServerError: db down"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(200, b"{not json"), "not valid JSON"),
        (Route(200, b"[1, 2]"), "not an object"),
        (Route(200, b"\xff\xfe"), "not valid JSON"),
        (Route(200, b'{"a": "' + b"x" * 2000 + b'"}'), "more than the 1000 bytes"),
        (Route(200, b'{"a": "' + b"x" * 2000 + b'"}', send_length=False), "more than the 1000 bytes"),
    ],
)
async def test_get_json_bad_bodies(
    web: LoopbackServer, http_client: httpx.AsyncClient, route: Route, message: str
) -> None:
    web.routes["/b"] = route
    with pytest.raises(UpstreamError, match=message):
        await get_json(http_client, web.url("/b"), max_bytes=1000)


async def test_get_json_timeout(web: LoopbackServer) -> None:
    web.routes["/slow"] = Route(200, b"{}", delay=1.0)
    async with make_http_client(allow_private=True, user_agent=UA, timeout=0.2) as client:
        with pytest.raises(UpstreamError, match="did not answer in time"):
            await get_json(client, web.url("/slow"))


async def test_get_json_connection_refused(http_client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(UpstreamError, match="could not reach") as info:
        await get_json(http_client, url)
    assert not isinstance(info.value, UpstreamStatusError)


async def test_get_text(web: LoopbackServer, http_client: httpx.AsyncClient) -> None:
    web.text("/t", "hello\n")
    assert await get_text(http_client, web.url("/t")) == "hello\n"


# ---- handle resolution over DNS and HTTPS (loopback servers) -------------------------------------


async def test_handle_via_well_known(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    web.text("/alice.example.com/.well-known/atproto-did", f"{PLC_A}\n")
    resolver = web_resolver(http_client, web, dns_server)
    assert await resolver.resolve_handle("@Alice.Example.com") == PLC_A
    assert "_atproto.alice.example.com" in dns_server.server.queries  # DNS was asked too (NXDOMAIN)


async def test_handle_via_dns(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.set_did("bob.example.com", PLC_B)
    resolver = web_resolver(http_client, web, dns_server)
    assert await resolver.resolve_handle("bob.example.com") == PLC_B


async def test_handle_dns_wins_over_slow_https(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.set_did("bob.example.com", PLC_B)
    web.routes["/bob.example.com/.well-known/atproto-did"] = Route(200, PLC_B.encode(), delay=2.0)
    resolver = web_resolver(http_client, web, dns_server, conflict_grace=0.2)
    started = time.monotonic()
    assert await resolver.resolve_handle("bob.example.com") == PLC_B
    assert time.monotonic() - started < 1.5  # did not wait for the slow host past the grace period


async def test_handle_both_agree(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.set_did("carol.example.com", PLC_A)
    web.text("/carol.example.com/.well-known/atproto-did", PLC_A)
    resolver = web_resolver(http_client, web, dns_server)
    assert await resolver.resolve_handle("carol.example.com") == PLC_A


async def test_handle_conflict_is_an_error(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.set_did("carol.example.com", PLC_A)
    web.text("/carol.example.com/.well-known/atproto-did", PLC_B)
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(UpstreamError, match="misconfigured") as info:
        await resolver.resolve_handle("carol.example.com")
    assert PLC_A in info.value.detail and PLC_B in info.value.detail


async def test_handle_several_dns_dids_is_an_error(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.set_did("dave.example.com", PLC_A, PLC_B)
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(UpstreamError, match="several DIDs"):
        await resolver.resolve_handle("dave.example.com")


async def test_handle_unknown_is_not_found(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    web.text("/junk.example.com/.well-known/atproto-did", "<html>not a did</html>")
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(NotFound, match="could not be resolved"):
        await resolver.resolve_handle("nobody.example.com")
    with pytest.raises(NotFound, match="could not be resolved"):
        await resolver.resolve_handle("junk.example.com")


async def test_handle_dns_failure_is_upstream_error(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    dns_server.server.records["_atproto.erin.example.com"] = DNSServer.SERVFAIL
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(UpstreamError, match="DNS") as info:
        await resolver.resolve_handle("erin.example.com")
    assert not isinstance(info.value, NotFound)


async def test_handle_reserved_tld_refused_without_lookup(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    resolver = web_resolver(http_client, web, dns_server)
    for handle in ("alice.test", "printer.local", "x.onion", "a.localhost"):
        with pytest.raises(InvalidInput, match="reserved"):
            await resolver.resolve_handle(handle)
    assert dns_server.server.queries == [] and web.requests == []


async def test_handle_well_known_on_private_address_is_a_miss(
    web: LoopbackServer, dns_server: DNSFixture
) -> None:
    # With the guard on, a handle whose host is private is simply unresolvable; the address is not echoed.
    web.text("/lan.example.com/.well-known/atproto-did", PLC_A)
    async with make_http_client(allow_private=False, user_agent=UA) as guarded:
        resolver = web_resolver(guarded, web, dns_server)
        with pytest.raises(NotFound) as info:
            await resolver.resolve_handle("lan.example.com")
    assert "127.0.0.1" not in info.value.detail
    assert web.requests == []


# ---- did:web and full resolution (loopback servers) ----------------------------------------------


async def test_did_web_full_identity(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    did = "did:web:music.example.com"
    pds = web.url("/pds")
    web.json("/music.example.com/.well-known/did.json", did_doc(did, handle="music.example.com", pds=pds))
    dns_server.set_did("music.example.com", did)
    resolver = web_resolver(http_client, web, dns_server)
    for identifier in (did, "music.example.com"):
        identity = await resolver.resolve(identifier, fresh=True)
        assert identity == Identity(
            did=did,
            handle="music.example.com",
            pds_url=pds,
            signing_key="zQ3shTestKey",
            doc=identity.doc,
        )


async def test_did_web_with_localhost_port(http_client: httpx.AsyncClient, web: LoopbackServer) -> None:
    did = f"did:web:localhost%3A{web.port}"
    web.json("/.well-known/did.json", did_doc(did, handle=None, pds="http://localhost:1/"))
    # Test hook: plain http to host:port (production: https).
    resolver = IdentityResolver(http_client, web_base_url=lambda host: f"http://{host}")
    identity = await resolver.resolve(did)
    assert identity.handle is None
    assert identity.pds_url == "http://localhost:1"  # trailing slash dropped
    assert web.requests[-1][1]["Host"] == f"localhost:{web.port}"


async def test_did_web_missing_is_not_found(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(NotFound, match="serves no DID document"):
        await resolver.resolve("did:web:gone.example.com")


async def test_did_doc_for_another_did_is_rejected(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    other = did_doc("did:web:other.example.com", handle=None, pds="x")
    web.json("/evil.example.com/.well-known/did.json", other)
    web.json(f"/plc/{PLC_A}", did_doc(PLC_B, handle=None, pds=web.url("/pds")))
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(UpstreamError, match=r"not for did:web:evil\.example\.com"):
        await resolver.resolve_did("did:web:evil.example.com")
    with pytest.raises(UpstreamError, match=f"not for {PLC_A}"):
        await resolver.resolve_did(PLC_A)


async def test_plc_tombstone_is_not_found(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    web.json(f"/plc/{PLC_A}", {"message": "DID not available"}, status=410)
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(NotFound, match="deactivated"):
        await resolver.resolve(PLC_A)


@pytest.mark.parametrize(
    "service",
    [
        [],
        [{"id": "#atproto_pds", "type": "SomethingElse", "serviceEndpoint": "https://pds.example.com"}],
        [{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "https://l.example.com"}],
        [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "ftp://x.example.com"}],
        [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": {"a": 1}}],
    ],
)
async def test_no_usable_pds_is_not_found(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient, service: list[Any]
) -> None:
    doc = did_doc(PLC_A, handle=None, pds="unused")
    doc["service"] = service
    web.json(f"/plc/{PLC_A}", doc)
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(NotFound, match="PDS"):
        await resolver.resolve(PLC_A)


async def test_pds_and_key_with_full_did_url_ids(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    doc = did_doc(PLC_A, handle=None, pds="https://pds.example.com")
    doc["service"][0]["id"] = f"{PLC_A}#atproto_pds"
    doc["verificationMethod"][0]["id"] = "#atproto"
    web.json(f"/plc/{PLC_A}", doc)
    identity = await web_resolver(http_client, web, dns_server).resolve(PLC_A)
    assert (identity.pds_url, identity.signing_key) == ("https://pds.example.com", "zQ3shTestKey")


async def test_did_claiming_a_handle_that_does_not_point_back(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    # PLC_A claims victim.example.com, but that handle points at PLC_B: the claim is not believed.
    web.json(f"/plc/{PLC_A}", did_doc(PLC_A, handle="victim.example.com", pds=web.url("/pds")))
    web.json(f"/plc/{PLC_B}", did_doc(PLC_B, handle="victim.example.com", pds=web.url("/pds")))
    dns_server.set_did("victim.example.com", PLC_B)
    resolver = web_resolver(http_client, web, dns_server)
    assert (await resolver.resolve(PLC_A)).handle is None
    assert (await resolver.resolve(PLC_B)).handle == "victim.example.com"


async def test_handle_pointing_at_did_that_does_not_claim_it(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    # squatter.example.com points at PLC_A, whose document claims another handle: a mismatch, an error.
    web.json(f"/plc/{PLC_A}", did_doc(PLC_A, handle="real.example.com", pds=web.url("/pds")))
    dns_server.set_did("squatter.example.com", PLC_A)
    resolver = web_resolver(http_client, web, dns_server)
    with pytest.raises(NotFound, match=r"claims the handle real\.example\.com"):
        await resolver.resolve("squatter.example.com")


async def test_cache_ttl_and_fresh(
    web: LoopbackServer, dns_server: DNSFixture, http_client: httpx.AsyncClient
) -> None:
    now = [1000.0]
    web.json(f"/plc/{PLC_A}", did_doc(PLC_A, handle="cached.example.com", pds=web.url("/pds")))
    dns_server.set_did("cached.example.com", PLC_A)
    resolver = web_resolver(http_client, web, dns_server, cache_ttl=60.0, clock=lambda: now[0])
    plc_path = f"/plc/{PLC_A}"

    first = await resolver.resolve(PLC_A)
    assert first.handle == "cached.example.com" and web.hits(plc_path) == 1
    # Cached under both keys, with any spelling of the handle.
    assert await resolver.resolve(PLC_A) is first
    assert await resolver.resolve("@Cached.Example.com") is first
    assert web.hits(plc_path) == 1

    # fresh bypasses and refreshes: the document changed its PDS.
    web.json(plc_path, did_doc(PLC_A, handle="cached.example.com", pds="https://new-pds.example.com"))
    refreshed = await resolver.resolve(PLC_A, fresh=True)
    assert refreshed.pds_url == "https://new-pds.example.com" and web.hits(plc_path) == 2
    assert await resolver.resolve("cached.example.com") is refreshed

    # Expiry.
    now[0] += 59.0
    assert await resolver.resolve(PLC_A) is refreshed
    now[0] += 2.0
    await resolver.resolve(PLC_A)
    assert web.hits(plc_path) == 3

    # A handle change: the old handle no longer answers from the cache once the DID is refreshed.
    web.json(plc_path, did_doc(PLC_A, handle="renamed.example.com", pds=web.url("/pds")))
    dns_server.set_did("renamed.example.com", PLC_A)
    del dns_server.server.records["_atproto.cached.example.com"]
    assert (await resolver.resolve(PLC_A, fresh=True)).handle == "renamed.example.com"
    with pytest.raises(NotFound):
        await resolver.resolve("cached.example.com")


async def test_invalid_identifiers(http_client: httpx.AsyncClient) -> None:
    resolver = IdentityResolver(http_client, plc_url="http://127.0.0.1:1")
    for bad in ("did:key:zabc", "did:plc:short", "not a handle", ""):
        with pytest.raises(InvalidInput):
            await resolver.resolve(bad)


# ---- against the real PDS + PLC directory --------------------------------------------------------


def pds_resolver(http: httpx.AsyncClient, pds: Any, **kw: Any) -> IdentityResolver:
    return IdentityResolver(http, plc_url=pds.plc_url, handle_resolver_url=pds.pds_url, **kw)


async def test_pds_resolve_handle_and_did(pds: Any, http_client: httpx.AsyncClient) -> None:
    account = pds.create_account("ident")
    resolver = pds_resolver(http_client, pds)

    assert await resolver.resolve_handle(account.handle) == account.did
    by_handle = await resolver.resolve("@" + account.handle.upper(), fresh=True)
    assert by_handle.did == account.did
    assert by_handle.handle == account.handle
    assert by_handle.pds_url == pds.pds_url.rstrip("/")
    assert by_handle.signing_key and by_handle.signing_key.startswith("z")
    assert by_handle.doc["id"] == account.did

    by_did = await resolver.resolve(account.did, fresh=True)
    assert by_did.handle == account.handle  # verified both ways
    assert by_did.pds_url == by_handle.pds_url


async def test_pds_unknown_handle_and_did(pds: Any, http_client: httpx.AsyncClient) -> None:
    resolver = pds_resolver(http_client, pds)
    with pytest.raises(NotFound, match=r"handle nobody-at-all\.test could not be resolved"):
        await resolver.resolve("nobody-at-all.test")
    with pytest.raises(NotFound, match="not in the PLC directory"):
        await resolver.resolve("did:plc:" + "x" * 24)


async def test_pds_cache_and_fresh_after_handle_change(pds: Any, http_client: httpx.AsyncClient) -> None:
    account = pds.create_account("rename")
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(str(request.url))

    http_client.event_hooks["request"].append(count)
    resolver = pds_resolver(http_client, pds)
    before = await resolver.resolve(account.did)
    assert before.handle == account.handle
    calls = len(sent)
    assert await resolver.resolve(account.did) is before
    assert await resolver.resolve(account.handle) is before
    assert len(sent) == calls  # served from the cache

    new_handle = "x" + account.handle  # the first label stays within the PDS's 18 characters
    async with httpx.AsyncClient(timeout=30) as raw:
        resp = await raw.post(
            f"{pds.pds_url}/xrpc/com.atproto.identity.updateHandle",
            json={"handle": new_handle},
            headers={"Authorization": f"Bearer {account.access_jwt}"},
        )
    assert resp.status_code == 200, resp.text

    assert (await resolver.resolve(account.did)).handle == account.handle  # still cached
    after = await resolver.resolve(account.did, fresh=True)
    assert after.handle == new_handle
    assert len(sent) > calls
    with pytest.raises(NotFound):
        await resolver.resolve(account.handle, fresh=True)


async def test_pds_lying_handle_resolver_fails_bidirectional_check(
    pds: Any, http_client: httpx.AsyncClient, web: LoopbackServer
) -> None:
    # A handle resolver that maps someone's handle to another account's DID: that DID's document (from
    # the real PLC) does not claim the handle, so the pair is refused.
    alice = pds.create_account("alice")
    mallory = pds.create_account("mallory")
    web.json("/xrpc/com.atproto.identity.resolveHandle", {"did": mallory.did})
    resolver = IdentityResolver(http_client, plc_url=pds.plc_url, handle_resolver_url=web.url())
    with pytest.raises(NotFound, match=re.escape(f"claims the handle {mallory.handle}")):
        await resolver.resolve(alice.handle)
    # From the DID side: alice's document claims alice's handle, which the liar maps to mallory.
    assert (await resolver.resolve(alice.did)).handle is None


async def test_pds_or_plc_down_is_upstream_error(pds: Any, http_client: httpx.AsyncClient) -> None:
    account = pds.create_account("down")
    dead = f"http://127.0.0.1:{free_port()}"
    no_plc = IdentityResolver(http_client, plc_url=dead, handle_resolver_url=pds.pds_url)
    with pytest.raises(UpstreamError, match="PLC directory") as info:
        await no_plc.resolve(account.handle)
    assert not isinstance(info.value, NotFound)
    no_pds = IdentityResolver(http_client, plc_url=pds.plc_url, handle_resolver_url=dead)
    with pytest.raises(UpstreamError, match="handle resolver") as info:
        await no_pds.resolve(account.handle)
    assert not isinstance(info.value, NotFound)
    # A DID still resolves without the handle resolver; its handle just cannot be verified.
    assert (await no_pds.resolve(account.did)).handle is None


async def test_pds_on_loopback_blocked_without_allow_private(pds: Any) -> None:
    account = pds.create_account("guard")
    async with make_http_client(allow_private=False, user_agent=UA) as guarded:
        resolver = pds_resolver(guarded, pds)
        with pytest.raises(BlockedAddress, match="localhost"):
            await resolver.resolve(account.handle)
        with pytest.raises(BlockedAddress):
            await resolver.resolve(account.did)
