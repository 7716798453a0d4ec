"""Proves the PDS harness (tests/pds_harness.py): XRPC basics, big blobs, identity, and OAuth."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import urllib.parse
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pds_harness import Account, PDSHarness, authorize_headless, free_port


@pytest.fixture(scope="module")
def account(pds: PDSHarness) -> Account:
    return pds.create_account("harness")


def xrpc(pds: PDSHarness, method: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verb = "POST" if "json" in kwargs or "content" in kwargs else "GET"
    return httpx.request(verb, f"{pds.pds_url}/xrpc/{method}", headers=headers, timeout=60, **kwargs)


def test_account_and_password_session(pds: PDSHarness, account: Account) -> None:
    assert account.did.startswith("did:plc:")
    assert account.handle.startswith("harness") and account.handle.endswith(".test")
    resp = xrpc(
        pds,
        "com.atproto.server.createSession",
        json={"identifier": account.handle, "password": account.password},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["did"] == account.did
    assert resp.json()["accessJwt"]


def test_create_and_list_custom_record(pds: PDSHarness, account: Account) -> None:
    record = {
        "$type": "fm.plyr.like",
        "subject": {"uri": "at://did:plc:x/fm.plyr.track/1", "cid": "bafy"},
        "createdAt": "2025-01-01T00:00:00.000Z",
    }
    # `validate` left unset: the PDS does not know the fm.plyr lexicons and would reject validate=true.
    resp = xrpc(
        pds,
        "com.atproto.repo.createRecord",
        account.access_jwt,
        json={"repo": account.did, "collection": "fm.plyr.like", "record": record},
    )
    assert resp.status_code == 200, resp.text
    uri = resp.json()["uri"]
    assert uri.startswith(f"at://{account.did}/fm.plyr.like/")

    listed = xrpc(pds, "com.atproto.repo.listRecords", params={"repo": account.did, "collection": "fm.plyr.like"})
    assert listed.status_code == 200, listed.text
    by_uri = {r["uri"]: r["value"] for r in listed.json()["records"]}
    assert by_uri[uri]["subject"] == record["subject"]


def test_upload_blob_over_default_limit(pds: PDSHarness, account: Account) -> None:
    data = b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(6 * 1024 * 1024)  # > the PDS's 5 MB default
    resp = xrpc(
        pds,
        "com.atproto.repo.uploadBlob",
        account.access_jwt,
        content=data,
        headers={"Content-Type": "audio/mpeg"},
    )
    assert resp.status_code == 200, resp.text
    blob = resp.json()["blob"]
    assert blob["size"] == len(data)
    assert blob["mimeType"] == "audio/mpeg"


def test_identity_handle_and_plc_document(pds: PDSHarness, account: Account) -> None:
    resolved = xrpc(pds, "com.atproto.identity.resolveHandle", params={"handle": account.handle})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["did"] == account.did

    doc = httpx.get(f"{pds.plc_url}/{account.did}", timeout=10).json()
    assert doc["id"] == account.did
    assert f"at://{account.handle}" in doc["alsoKnownAs"]
    services = {s["id"]: s for s in doc["service"]}
    assert services["#atproto_pds"]["serviceEndpoint"] == pds.pds_url


# -- OAuth: a minimal loopback public client (PAR + PKCE S256 + DPoP) ------------------------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoP:
    """ES256 DPoP proofs with the server's nonce remembered per origin."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        pub = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64u(pub.x.to_bytes(32, "big")),
            "y": b64u(pub.y.to_bytes(32, "big")),
        }
        self.nonces: dict[str, str] = {}

    def proof(self, method: str, url: str, access_token: str | None) -> str:
        parts = urllib.parse.urlsplit(url)
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "iat": int(time.time()),
        }
        if nonce := self.nonces.get(parts.netloc):
            claims["nonce"] = nonce
        if access_token:
            claims["ath"] = b64u(hashlib.sha256(access_token.encode()).digest())
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        signing_input = ".".join(b64u(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def post(self, url: str, access_token: str | None = None, **kwargs: Any) -> httpx.Response:
        # The first try usually gets `use_dpop_nonce` plus a DPoP-Nonce header: retry once with it.
        for _ in range(2):
            headers = {"DPoP": self.proof("POST", url, access_token)}
            if access_token:
                headers["Authorization"] = f"DPoP {access_token}"
            resp = httpx.post(url, headers=headers, timeout=30, **kwargs)
            if nonce := resp.headers.get("dpop-nonce"):
                self.nonces[urllib.parse.urlsplit(url).netloc] = nonce
            if resp.status_code not in (400, 401) or "use_dpop_nonce" not in resp.text + str(
                resp.headers.get("www-authenticate")
            ):
                break
        return resp


def test_oauth_loopback_client_code_flow(pds: PDSHarness, account: Account) -> None:
    resource = httpx.get(f"{pds.pds_url}/.well-known/oauth-protected-resource", timeout=10).json()
    issuer = resource["authorization_servers"][0]
    meta = httpx.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["issuer"] == issuer

    # Nothing listens on the redirect_uri: authorize_headless returns the URL instead of following it.
    redirect_uri = f"http://127.0.0.1:{free_port()}/auth/callback"
    scope = "atproto transition:generic"
    client_id = "http://localhost?" + urllib.parse.urlencode({"redirect_uri": redirect_uri, "scope": scope})
    verifier = b64u(secrets.token_bytes(32))
    state = secrets.token_urlsafe(12)
    dpop = DPoP()

    par = dpop.post(
        meta["pushed_authorization_request_endpoint"],
        data={
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "login_hint": account.handle,
            "code_challenge_method": "S256",
            "code_challenge": b64u(hashlib.sha256(verifier.encode()).digest()),
        },
    )
    assert par.status_code == 201, par.text
    authorize_url = f"{meta['authorization_endpoint']}?" + urllib.parse.urlencode(
        {"client_id": client_id, "request_uri": par.json()["request_uri"]}
    )

    callback = authorize_headless(authorize_url, account.handle, account.password)
    assert callback.startswith(redirect_uri + "?")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert params["state"] == state
    assert params["iss"] == issuer

    token = dpop.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )
    assert token.status_code == 200, token.text
    tokens = token.json()
    assert tokens["sub"] == account.did
    assert tokens["token_type"] == "DPoP"
    assert set(tokens["scope"].split()) == set(scope.split())

    # The DPoP-bound token works on the PDS as a resource server.
    wrote = dpop.post(
        f"{pds.pds_url}/xrpc/com.atproto.repo.createRecord",
        tokens["access_token"],
        json={
            "repo": account.did,
            "collection": "fm.plyr.like",
            "record": {"$type": "fm.plyr.like", "createdAt": "2025-01-01T00:00:00.000Z"},
        },
    )
    assert wrote.status_code == 200, wrote.text


def test_headless_sign_in_rejects_wrong_password(pds: PDSHarness, account: Account) -> None:
    dpop = DPoP()
    redirect_uri = "http://127.0.0.1:9/auth/callback"
    client_id = "http://localhost?" + urllib.parse.urlencode({"redirect_uri": redirect_uri, "scope": "atproto"})
    par = dpop.post(
        f"{pds.pds_url}/oauth/par",
        data={
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "atproto",
            "code_challenge_method": "S256",
            "code_challenge": b64u(hashlib.sha256(b"x" * 43).digest()),
        },
    )
    assert par.status_code == 201, par.text
    url = f"{pds.pds_url}/oauth/authorize?" + urllib.parse.urlencode(
        {"client_id": client_id, "request_uri": par.json()["request_uri"]}
    )
    with pytest.raises(RuntimeError, match="sign-in"):
        authorize_headless(url, account.handle, "not-the-password")
