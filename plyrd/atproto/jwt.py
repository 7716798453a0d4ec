"""The small piece of JOSE that ATProto OAuth needs: ES256 (P-256) keys as JWKs and compact JWS.

Written on `cryptography` (already a dependency) rather than pulling in a JOSE library: OAuth here only
ever signs DPoP proofs and client assertions with ES256, and verifies ES256 in tests, so a general
library would add surface without adding safety.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALG = "ES256"
_COORD = 32  # P-256 coordinates and r/s are 32 bytes each


class JWTError(ValueError):
    """A token or key is malformed, uses another algorithm, or its signature does not verify."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (ValueError, TypeError) as e:
        raise JWTError("invalid base64url") from e


def _json_b64(obj: Mapping[str, Any]) -> str:
    # Compact separators: the exact bytes are what gets signed, so keep them deterministic.
    return b64url_encode(json.dumps(obj, separators=(",", ":"), sort_keys=False).encode())


class ES256Key:
    """A P-256 private key with the JWK views OAuth needs. `kid` is optional (client keys carry one)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, kid: str | None = None) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise JWTError("ES256 needs a P-256 key")
        self._key = private_key
        self.kid = kid

    @classmethod
    def generate(cls, kid: str | None = None) -> ES256Key:
        return cls(ec.generate_private_key(ec.SECP256R1()), kid)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> ES256Key:
        """Load a private JWK (`d` required); a mismatched public half fails loudly (corrupted store)."""
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" not in jwk:
            raise JWTError("expected a private EC P-256 JWK")
        d = int.from_bytes(b64url_decode(jwk["d"]), "big")
        try:
            key = ec.derive_private_key(d, ec.SECP256R1())
        except ValueError as e:
            raise JWTError("invalid private key") from e
        out = cls(key, jwk.get("kid"))
        pub = out.public_jwk()
        if ("x" in jwk and jwk["x"] != pub["x"]) or ("y" in jwk and jwk["y"] != pub["y"]):
            raise JWTError("JWK public coordinates do not match its private key")
        return out

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    def public_jwk(self) -> dict[str, str]:
        """Public JWK: `kid`/`use`/`alg` only when the key has a kid (DPoP proofs embed a bare key)."""
        jwk = public_jwk_of(self._key.public_key())
        if self.kid:
            jwk.update({"kid": self.kid, "use": "sig", "alg": ALG})
        return jwk

    def private_jwk(self) -> dict[str, str]:
        jwk = self.public_jwk()
        jwk["d"] = b64url_encode(self._key.private_numbers().private_value.to_bytes(_COORD, "big"))
        return jwk

    def thumbprint(self) -> str:
        return thumbprint(self.public_jwk())

    def sign(self, header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
        """Compact JWS, `alg` forced to ES256; the key's `kid` is added unless the header names a key."""
        hdr = {**header, "alg": ALG}
        if self.kid and "kid" not in hdr and "jwk" not in hdr:
            hdr["kid"] = self.kid
        signing_input = f"{_json_b64(hdr)}.{_json_b64(payload)}"
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        # JWS wants raw r||s, not DER (RFC 7518 section 3.4).
        return f"{signing_input}.{b64url_encode(r.to_bytes(_COORD, 'big') + s.to_bytes(_COORD, 'big'))}"


def public_jwk_of(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    n = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(n.x.to_bytes(_COORD, "big")),
        "y": b64url_encode(n.y.to_bytes(_COORD, "big")),
    }


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Strip the private part of a JWK (anything named `d`), keeping kid/use/alg."""
    return {k: v for k, v in jwk.items() if k != "d"}


def load_public_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise JWTError("expected an EC P-256 JWK")
    try:
        x = int.from_bytes(b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, ValueError) as e:
        raise JWTError("invalid EC public key") from e


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: only the required members, in lexical order, no whitespace."""
    canon = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canon.encode()).digest())


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload without checking the signature (e.g. to read `exp` of our own session JWT)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise JWTError("malformed JWS segments") from e
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JWTError("JWS header and payload must be objects")
    return header, payload


def verify(
    token: str, key: ec.EllipticCurvePublicKey | Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify an ES256 compact JWS and return (header, payload). Claims (exp, aud...) are the caller's job."""
    pub = key if isinstance(key, ec.EllipticCurvePublicKey) else load_public_jwk(key)
    header, payload = decode_unverified(token)
    if header.get("alg") != ALG:  # never let the token pick its algorithm
        raise JWTError("unexpected alg")
    signing_input, _, sig_b64 = token.rpartition(".")
    sig = b64url_decode(sig_b64)
    if len(sig) != 2 * _COORD:
        raise JWTError("bad signature length")
    der = encode_dss_signature(int.from_bytes(sig[:_COORD], "big"), int.from_bytes(sig[_COORD:], "big"))
    try:
        pub.verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise JWTError("signature does not verify") from e
    return header, payload
