"""Subsonic passwords: one per user, made by the node, for Subsonic apps (no HTTP here).

Subsonic apps sign in with `t` = md5(password + `s`) for a salt `s` of their choosing, which the node can check
only with the password in hand: so it is kept sealed (AES-GCM under secrets.token_key, plyrd.auth.sealing), not
hashed, as Navidrome keeps its passwords encrypted. That is also why it is the node's, never the person's choice:
a generated password is worth nothing anywhere else if the database and key leak together, and it has ~100 bits,
so guessing it online is hopeless even before the throttles in plyrd.subsonic.auth.

The password is handed out once, by `create` (which also regenerates: the old one stops working at once); the
node never shows it again. A sealed value that no longer opens (token_key changed) counts as no password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass

from ..atproto.identity import is_did, normalize_handle
from ..auth.sealing import Sealer, SealError
from ..db import Database
from ..db.queries import one
from ..errors import InvalidInput, NotFound

# 32 symbols, 5 bits each, without 0/o and 1/l (read off a screen, typed on a phone): 4 groups of 5 = 100 bits.
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
GROUPS = 4
GROUP_LENGTH = 5
TOUCH_INTERVAL = 3600  # last use is written at most hourly, not on every request an app makes


@dataclass(frozen=True)
class Account:
    """A user of this node as a Subsonic username names them."""

    did: str
    handle: str | None


@dataclass(frozen=True)
class Stored:
    """A user's Subsonic password as the node holds it: the password itself only in memory, never shown again."""

    password: str
    created_at: float
    last_used_at: float | None


def generate() -> str:
    """A fresh password: four dash-separated groups of five lowercase letters and digits."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))


def _bytes(text: str) -> bytes:
    # Compared as bytes: hmac.compare_digest refuses str with non-ASCII characters, and input is anybody's.
    return text.encode("utf-8", "surrogatepass")


def matches(password: str, presented: str) -> bool:
    """Subsonic's `p` (already decoded from `enc:`), compared in constant time."""
    return hmac.compare_digest(_bytes(password), _bytes(presented))


def matches_token(password: str, token: str, salt: str) -> bool:
    """Subsonic's `t` (hex md5 of password + salt, either case), compared in constant time."""
    expected = hashlib.md5(_bytes(password + salt)).hexdigest()  # md5: Subsonic's protocol, not our choice
    return hmac.compare_digest(expected.encode(), _bytes(token.lower()))


def _bound(did: str) -> str:
    # Bound to the DID (and to this use), so a sealed value copied onto another row or table does not open.
    return "subsonic-password:" + did


def read_account(conn: sqlite3.Connection, username: str) -> Account | None:
    """`SubsonicPasswords.find_account` inside a function run on a connection's thread (Database.read_fn)."""
    name = username.strip()
    if is_did(name):
        row = one(conn, "SELECT did, handle FROM users WHERE did = ?", (name,))
    else:
        try:
            handle = normalize_handle(name)
        except InvalidInput:
            return None
        row = one(conn, "SELECT did, handle FROM users WHERE handle = ?", (handle,))
    return Account(row["did"], row["handle"]) if row else None


def read_sealed(conn: sqlite3.Connection, did: str) -> sqlite3.Row | None:
    """The user's sealed password row, on a connection's thread (`SubsonicPasswords.unseal` opens it)."""
    return one(conn, "SELECT * FROM subsonic_passwords WHERE did = ?", (did,))


class SubsonicPasswords:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    async def find_account(self, username: str) -> Account | None:
        """The user a Subsonic username names: their handle (any case, a leading @ allowed) or their DID."""
        return await self.db.read_fn(read_account, username)

    async def stored(self, did: str) -> Stored | None:
        """The user's password, or None when they have none (or it was sealed under another token_key)."""
        return self.unseal(did, await self.db.read_fn(read_sealed, did))

    def unseal(self, did: str, row: sqlite3.Row | None) -> Stored | None:
        """The password of a `read_sealed` row, or None (no row, or sealed under another token_key)."""
        if row is None:
            return None
        try:
            password = self.sealer.open(row["sealed"], bound_to=_bound(did))["password"]
        except (SealError, KeyError, TypeError):
            return None
        return Stored(password, row["created_at"], row["last_used_at"])

    async def create(self, did: str) -> str:
        """A new password for `did`, replacing any other: the only time the caller sees it."""
        password = generate()
        sealed = self.sealer.seal({"password": password}, bound_to=_bound(did))
        async with self.db.write() as conn:
            cur = await conn.execute("SELECT 1 FROM users WHERE did = ?", (did,))
            if await cur.fetchone() is None:
                raise NotFound("no such user on this node: they must sign in here once first")
            await conn.execute(
                "INSERT INTO subsonic_passwords(did, sealed) VALUES (?, ?) ON CONFLICT(did) DO UPDATE SET"
                " sealed = excluded.sealed, created_at = excluded.created_at, last_used_at = NULL",
                (did, sealed),
            )
        return password

    async def revoke(self, did: str) -> bool:
        """Delete the user's password; False when there was none."""
        return await self.db.execute("DELETE FROM subsonic_passwords WHERE did = ?", (did,)) > 0

    async def touch(self, did: str, stored: Stored) -> None:
        """Record a sign-in with the password (at most hourly)."""
        now = time.time()
        if stored.last_used_at is None or now - stored.last_used_at > TOUCH_INTERVAL:
            await self.db.execute("UPDATE subsonic_passwords SET last_used_at = ? WHERE did = ?", (now, did))
