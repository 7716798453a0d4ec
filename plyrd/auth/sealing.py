"""Encryption at rest for credentials: AES-256-GCM under secrets.token_key.

The row's identity is bound in as associated data, so a sealed value copied onto another row does not open.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"  # lets a later key rotation tell old blobs from new ones


class SealError(Exception):
    """A sealed value cannot be opened: wrong key (token_key changed) or tampered data."""


class Sealer:
    def __init__(self, token_key: str) -> None:
        self._aead = AESGCM(base64.urlsafe_b64decode(token_key.encode()))

    def seal(self, value: dict[str, Any], *, bound_to: str) -> bytes:
        nonce = os.urandom(12)
        data = json.dumps(value, separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, data, bound_to.encode())

    def open(self, blob: bytes, *, bound_to: str) -> dict[str, Any]:
        if not blob or blob[:1] != _VERSION:
            raise SealError("unknown sealed format")
        try:
            data = self._aead.decrypt(blob[1:13], blob[13:], bound_to.encode())
        except InvalidTag:
            raise SealError("sealed value does not open with this key") from None
        return json.loads(data)
