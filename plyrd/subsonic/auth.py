"""Who calls `/rest`: only developer tokens, as plyr.fm accepts (#1784), never a browser session.

The token arrives as Subsonic's `p` (plain, or `enc:` + hex of its UTF-8 bytes) or OpenSubsonic's `apiKey`.
Subsonic's token authentication (`t` = md5(password + `s`)) cannot work here: plyrd stores developer tokens only as
their sha256 (plyrd.auth.service), so there is no secret to hash with the salt, and trying every token of a user
would need them in clear. `t`+`s` therefore answers OpenSubsonic's error 41, and clients fall back to `p`/`apiKey`.
The username `u` is not checked: the token alone names the account, and clients make people type something.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

from ..auth.service import AuthService, Session
from ..errors import Unauthenticated
from .envelope import (
    CONFLICTING_AUTH,
    INVALID_API_KEY,
    MISSING_PARAMETER,
    TOKEN_AUTH_UNSUPPORTED,
    WRONG_CREDENTIALS,
    SubsonicError,
)


def decode_password(p: str) -> str:
    """Subsonic's `p`: the secret itself, or `enc:` followed by the hex of its bytes."""
    if p.startswith("enc:"):
        try:
            return bytes.fromhex(p[4:]).decode()
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise SubsonicError(WRONG_CREDENTIALS, "Wrong username or password") from None
    return p


def presented_token(params: Mapping[str, str]) -> tuple[str, bool]:
    """(the developer token, whether it came as apiKey) from the request's parameters."""
    api_key, p, t = params.get("apiKey"), params.get("p"), params.get("t")
    if api_key:
        if p or t or params.get("u"):
            # OpenSubsonic: apiKey excludes u/p/t/s.
            raise SubsonicError(CONFLICTING_AUTH, "Multiple conflicting authentication mechanisms provided")
        return api_key, True
    if p:
        return decode_password(p), False
    if t and params.get("s"):
        raise SubsonicError(TOKEN_AUTH_UNSUPPORTED, "Token authentication not supported: plyrd keeps developer"
                            " tokens only hashed; send the developer token as the password (p) or apiKey")
    raise SubsonicError(MISSING_PARAMETER, "Required parameter is missing: p (a developer token) or apiKey")


async def authenticate(auth: AuthService, params: Mapping[str, str]) -> Session:
    """The developer-token session the request's credentials stand for, or a Subsonic error (40 / 44)."""
    token, as_api_key = presented_token(params)
    code, message = (INVALID_API_KEY, "Invalid API key") if as_api_key \
        else (WRONG_CREDENTIALS, "Wrong username or password")
    try:
        session = await auth.authenticate(token)
    except Unauthenticated:
        raise SubsonicError(code, message) from None
    if session.kind != "developer":
        # A browser session's cookie value must not become a password that never needs CSRF checks.
        raise SubsonicError(code, message + " (use a developer token)")
    return session
