"""Building the node's OAuth client from its configuration.

An https public URL makes the node a confidential client (client metadata at /oauth-client-metadata.json, signed
client assertions, long-lived grants). Anything else can only be ATProto's loopback development client, which
authorization servers accept solely for redirects to 127.0.0.1 or [::1].
"""

from __future__ import annotations

from typing import cast

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..atproto.identity import IdentityResolver
from ..atproto.jwt import ES256Key
from ..atproto.oauth import CALLBACK_PATH, ClientConfig, OAuthClient, confidential_client, loopback_client
from ..config import Config

NO_OAUTH = (
    "OAuth sign-in needs server.public_url to be an https address (or the node reached at http://127.0.0.1); "
    "app-password sign-in still works"
)


def client_config(config: Config, oauth_client_key_pem: str, scope: str) -> ClientConfig | None:
    public = config.public_url
    if public.startswith("https://"):
        key = serialization.load_pem_private_key(oauth_client_key_pem.encode(), password=None)
        jwk = ES256Key(cast(ec.EllipticCurvePrivateKey, key)).private_jwk()
        return confidential_client(public, scope, jwk)
    try:
        return loopback_client(public + CALLBACK_PATH, scope)
    except ValueError:
        return None


def build_oauth_client(
    config: Config, oauth_client_key_pem: str, scope: str, http: httpx.AsyncClient, resolver: IdentityResolver
) -> tuple[OAuthClient | None, str | None]:
    """The client, or None and the reason OAuth is unavailable on this node."""
    cfg = client_config(config, oauth_client_key_pem, scope)
    if cfg is None:
        return None, NO_OAUTH
    return OAuthClient(http, cfg, resolver, allow_http=config["atproto.allow_private_addresses"]), None
