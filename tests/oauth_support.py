"""What the OAuth and XRPC tests share: a loopback OAuth client against the test PDS, signing in through the PDS's
own authorization pages, and a recorder of what went over the wire."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import httpx
from pds_harness import Account, PDSHarness, authorize_headless, free_port

from plyrd.atproto.identity import IdentityResolver
from plyrd.atproto.oauth import BASE_SCOPE, OAuthClient, PendingAuth, TokenSet, loopback_client

REDIRECT = f"http://127.0.0.1:{free_port()}/auth/callback"


def make_oauth(http: httpx.AsyncClient, pds: PDSHarness, scope: str = BASE_SCOPE) -> OAuthClient:
    resolver = IdentityResolver(http, plc_url=pds.plc_url, handle_resolver_url=pds.pds_url)
    return OAuthClient(http, loopback_client(REDIRECT, scope), resolver)


def redirect_params(url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    assert url.startswith(REDIRECT), url
    return dict(urllib.parse.parse_qsl(parts.query))


async def authorize(pending: PendingAuth, account: Account) -> dict[str, str]:
    # The harness drives the PDS with a blocking client; keep it off the event loop.
    url = await asyncio.to_thread(authorize_headless, pending.authorize_url, account.handle, account.password)
    return redirect_params(url)


async def sign_in(oauth: OAuthClient, account: Account) -> TokenSet:
    pending = await oauth.start(account.handle)
    # PendingAuth goes through storage as JSON between start and callback.
    pending = PendingAuth.from_dict(json.loads(json.dumps(pending.to_dict())))
    q = await authorize(pending, account)
    return await oauth.callback(pending, code=q["code"], iss=q["iss"], state=q["state"])


class Recorder:
    """httpx response hook: what went over the wire (method, path, status, error), to see nonce challenges."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, str]] = []

    async def __call__(self, resp: httpx.Response) -> None:
        await resp.aread()
        err = ""
        if 'error="use_dpop_nonce"' in resp.headers.get("www-authenticate", ""):
            err = "use_dpop_nonce"
        elif resp.status_code >= 400:
            try:
                err = resp.json().get("error", "")
            except ValueError:
                pass
        self.seen.append((resp.request.method, resp.request.url.path, resp.status_code, err))
