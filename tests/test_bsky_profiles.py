"""Profiles from Bluesky: a person's app.bsky.actor.profile, written to the real PDS with plain XRPC as the Bluesky app
would, fills their display name, bio and avatar on the node at sign-in; a change is picked up at the next read; what
the person set on the node (or in their fm.plyr.actor.profile) is never overwritten; the avatar is served by the node
as its own WebP, made from bytes whose SHA-256 is the blob CID's digest.

The hostile cases (bytes that do not match the CID, a blob over the size cap) need a PDS that lies, which the real
one never does: those tests run the module's functions in-process against a small loopback server standing in for
a PDS (did:web on localhost), with a real database, blob store and the SSRF-guarded client.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from audio_samples import jpeg_bytes, png_bytes
from conftest import node_fixture
from helpers import db_rows, sign_in, stored_files, wait_for
from PIL import Image

from plyrd.atproto.cbor import blob_cid, record_cid

node = node_fixture("bskyprofiles")

PROFILE = "app.bsky.actor.profile"


# --- writing to the PDS as another app would -------------------------------------------------------------------


def _bearer(account: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.access_jwt}"}


def upload_blob(pds: Any, account: Any, data: bytes, mime: str) -> dict[str, Any]:
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.uploadBlob", content=data,
                   headers={**_bearer(account), "Content-Type": mime})
    assert r.status_code == 200, r.text
    return r.json()["blob"]


def put_record(pds: Any, account: Any, collection: str, record: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.putRecord", headers=_bearer(account),
                   json={"repo": account.did, "collection": collection, "rkey": "self",
                         "record": {"$type": collection, **record}})
    assert r.status_code == 200, r.text
    return r.json()


def put_profile(pds: Any, account: Any, **fields: Any) -> dict[str, Any]:
    return put_record(pds, account, PROFILE, fields)


def user(node: Any, did: str) -> dict[str, Any]:
    cols = ("display_name", "bio", "avatar_url", "avatar_sha", "bsky_avatar_cid", "bsky_profile_cid",
            "profile_refreshed_at")
    row = db_rows(node, f"SELECT {', '.join(cols)} FROM users WHERE did = ?", (did,))[0]
    return dict(zip(cols, row, strict=True))


def refcount(node: Any, sha: str) -> int | None:
    rows = db_rows(node, "SELECT refcount FROM blobs WHERE sha256 = ?", (sha,))
    return rows[0][0] if rows else None


def artist(node: Any, did: str) -> dict[str, Any]:
    r = httpx.get(f"{node.url}/artists/{did}")
    assert r.status_code == 200, r.text
    return r.json()


def signed_in_with(node: Any, account: Any, check: Any) -> dict[str, Any]:
    """Sign in (which reads the Bluesky profile after reconciliation) and wait until the row passes `check`."""
    before = user(node, account.did)["profile_refreshed_at"] if db_rows(
        node, "SELECT 1 FROM users WHERE did = ?", (account.did,)) else None
    sign_in(node.url, account)
    return wait_for(lambda: (row := user(node, account.did))["profile_refreshed_at"] != before and check(row) and row)


def served_avatar(url: str) -> tuple[bytes, httpx.Response]:
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    return r.content, r


# --- against the real PDS, through a node process --------------------------------------------------------------


def test_sign_in_brings_the_bluesky_profile(node, pds) -> None:
    account = pds.create_account("bskyone")
    original = png_bytes(400, 300, (200, 40, 40))
    ref = upload_blob(pds, account, original, "image/png")
    written = put_profile(pds, account, displayName="Ocean Tapes", description="tapes <b>from</b> the sea",
                          avatar=ref, createdAt="2026-01-01T00:00:00.000Z")

    row = signed_in_with(node, account, lambda r: r["avatar_sha"])
    sha = row["avatar_sha"]
    assert row["bsky_avatar_cid"] == ref["ref"]["$link"] and row["bsky_profile_cid"] == written["cid"]
    profile = artist(node, account.did)
    assert profile["display_name"] == "Ocean Tapes"
    assert profile["bio"] == "tapes <b>from</b> the sea"
    assert profile["avatar_url"] == f"{node.url}/avatars/{sha}"

    # the node serves its own WebP (never the PDS's bytes), immutable, named by its hash
    data, r = served_avatar(profile["avatar_url"])
    assert r.headers["content-type"] == "image/webp" and "immutable" in r.headers["cache-control"]
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and hashlib.sha256(data).hexdigest() == sha
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "WEBP" and im.size == (256, 192)
        assert im.convert("RGB").getpixel((128, 96))[0] > 150  # the red of the original
    assert hashlib.sha256(original).hexdigest() not in stored_files(node)
    assert refcount(node, sha) == 1

    # the description reaches the page escaped; no other blob is served as an avatar
    page = httpx.get(f"{node.url}/u/{account.handle}").text
    assert "tapes &lt;b&gt;from&lt;/b&gt; the sea" in page and "<b>from</b>" not in page
    assert httpx.get(f"{node.url}/avatars/{'0' * 64}").status_code == 404
    assert httpx.get(f"{node.url}/avatars/{sha.upper()}").status_code == 404


def test_a_changed_profile_is_picked_up_and_the_old_avatar_released(node, pds) -> None:
    account = pds.create_account("bskytwo")
    put_profile(pds, account, displayName="First Name",
                avatar=upload_blob(pds, account, jpeg_bytes(64, 64), "image/jpeg"))
    first = signed_in_with(node, account, lambda r: r["avatar_sha"])["avatar_sha"]

    blue = png_bytes(120, 120, (20, 20, 220))
    put_profile(pds, account, displayName="Second Name", description="now with words",
                avatar=upload_blob(pds, account, blue, "image/png"))
    row = signed_in_with(node, account, lambda r: r["avatar_sha"] not in (None, first))
    assert (row["display_name"], row["bio"]) == ("Second Name", "now with words")
    assert row["avatar_url"].endswith(f"/avatars/{row['avatar_sha']}")
    # released (just after the row's transaction commits), and nobody else held it
    wait_for(lambda: refcount(node, first) is None and first not in stored_files(node))
    assert httpx.get(f"{node.url}/avatars/{first}").status_code == 404
    with Image.open(io.BytesIO(served_avatar(row["avatar_url"])[0])) as im:
        assert im.size == (120, 120)  # smaller than 256: not enlarged

    # the avatar removed on Bluesky goes here too; a record that no longer exists changes nothing
    put_profile(pds, account, displayName="Second Name", description="now with words")
    row = signed_in_with(node, account, lambda r: r["avatar_sha"] is None)
    assert row["avatar_url"] is None and row["display_name"] == "Second Name"
    httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.deleteRecord", headers=_bearer(account),
               json={"repo": account.did, "collection": PROFILE, "rkey": "self"}).raise_for_status()
    row = signed_in_with(node, account, lambda r: True)
    assert (row["display_name"], row["bio"]) == ("Second Name", "now with words")


def test_what_the_person_set_is_never_overwritten(node, pds) -> None:
    account = pds.create_account("bskyown")
    put_profile(pds, account, displayName="Bsky Name", description="bsky words",
                avatar=upload_blob(pds, account, png_bytes(50, 50), "image/png"))
    me = sign_in(node.url, account)
    first = wait_for(lambda: user(node, account.did)["avatar_sha"])
    r = me.http.put("/artists/me", json={"display_name": "Chosen Here", "bio": "my own words"},
                    headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200, r.text

    # Bluesky changes everything: the avatar follows (it is still Bluesky's), the name and bio stay the person's
    put_profile(pds, account, displayName="Bsky Renamed", description="new bsky words",
                avatar=upload_blob(pds, account, png_bytes(60, 60), "image/png"))
    row = signed_in_with(node, account, lambda r: r["avatar_sha"] not in (None, first))
    assert (row["display_name"], row["bio"]) == ("Chosen Here", "my own words")

    # an avatar chosen here stays, and the node lets its copy of Bluesky's go
    held = row["avatar_sha"]
    r = me.http.put("/artists/me", json={"avatar_url": "https://images.example.com/me.png"},
                    headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200, r.text
    put_profile(pds, account, displayName="Bsky Again",
                avatar=upload_blob(pds, account, png_bytes(70, 70), "image/png"))
    row = signed_in_with(node, account, lambda r: r["avatar_sha"] is None)
    assert row["avatar_url"] == "https://images.example.com/me.png"
    wait_for(lambda: refcount(node, held) is None)

    # cleared on the node: Bluesky fills it again
    r = me.http.put("/artists/me", json={"display_name": None}, headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200, r.text
    row = signed_in_with(node, account, lambda r: r["display_name"] is not None)
    assert row["display_name"] == "Bsky Again"


def test_a_bio_from_fm_plyr_profile_wins_and_a_bluesky_cdn_avatar_is_replaced(node, pds) -> None:
    account = pds.create_account("bskyplyr")
    cdn = f"https://cdn.bsky.app/img/avatar/plain/{account.did}/bafkreiabc@jpeg"
    put_record(pds, account, "fm.plyr.actor.profile", {"bio": "written on plyr.fm", "avatar": cdn,
                                                        "createdAt": "2026-01-01T00:00:00.000Z"})
    put_profile(pds, account, displayName="From Bsky", description="bsky words",
                avatar=upload_blob(pds, account, png_bytes(40, 40), "image/png"))
    row = signed_in_with(node, account, lambda r: r["avatar_sha"])
    assert (row["display_name"], row["bio"]) == ("From Bsky", "written on plyr.fm")
    assert row["avatar_url"] == f"{node.url}/avatars/{row['avatar_sha']}"
    # nothing of Bluesky's is written into the person's own record
    rec = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                    params={"repo": account.did, "collection": "fm.plyr.actor.profile", "rkey": "self"}).json()
    assert rec["value"]["bio"] == "written on plyr.fm" and rec["value"]["avatar"] == cdn


def profile_record_of(pds: Any, did: str) -> dict[str, Any]:
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                  params={"repo": did, "collection": "fm.plyr.actor.profile", "rkey": "self"})
    return r.json().get("value", {}) if r.status_code == 200 else {}


def test_a_bio_saved_from_the_node_follows_bluesky(node, pds) -> None:
    """The portal sends back the bio it shows: saved, Bluesky's text is in the person's fm.plyr.actor.profile too.
    When Bluesky's changes, the record follows, so the next reconciliation does not bring the old text back."""
    account = pds.create_account("bskysave")
    put_profile(pds, account, description="bsky bio one")
    me = sign_in(node.url, account)
    wait_for(lambda: user(node, account.did)["bio"] == "bsky bio one")
    r = me.http.put("/artists/me", json={"bio": "bsky bio one"}, headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200, r.text
    wait_for(lambda: profile_record_of(pds, account.did).get("bio") == "bsky bio one")

    put_profile(pds, account, description="bsky bio two")
    signed_in_with(node, account, lambda r: r["bio"] == "bsky bio two")
    wait_for(lambda: profile_record_of(pds, account.did).get("bio") == "bsky bio two")
    row = signed_in_with(node, account, lambda r: True)
    assert row["bio"] == "bsky bio two"


# --- a PDS that lies, in-process ----------------------------------------------------------------------------------


class FakePDS:
    """A loopback stand-in for a PDS that serves one did:web identity, one profile record and whatever bytes it is
    told to for each blob CID (the real PDS only ever sends the right ones)."""

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None
        self.record_cid: str | None = None
        self.blobs: dict[str, bytes] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes, mime: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", mime)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/did.json":
                    doc = {"id": fake.did, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                                        "serviceEndpoint": fake.url}]}
                    return self.answer(200, json.dumps(doc).encode())
                if url.path == "/xrpc/com.atproto.repo.getRecord" and fake.record is not None:
                    cid = fake.record_cid or record_cid(fake.record)
                    body = {"uri": f"at://{fake.did}/{PROFILE}/self", "cid": cid, "value": fake.record}
                    return self.answer(200, json.dumps(body).encode())
                if url.path == "/xrpc/com.atproto.repo.getRecord":
                    return self.answer(400, b'{"error":"RecordNotFound","message":"Could not locate record"}')
                if url.path == "/xrpc/com.atproto.sync.getBlob" and query.get("cid") in fake.blobs:
                    return self.answer(200, fake.blobs[query["cid"]], "application/octet-stream")
                return self.answer(404, b'{"error":"NotFound"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.did = f"did:web:localhost%3A{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def avatar(self, data: bytes, *, sent: bytes | None = None, mime: str = "image/png") -> dict[str, Any]:
        """A blob ref for `data`; the server sends `sent` for it (default: `data` itself)."""
        cid = blob_cid(hashlib.sha256(data).hexdigest())
        self.blobs[cid] = data if sent is None else sent
        return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(data)}

    def profile(self, **fields: Any) -> None:
        self.record = {"$type": PROFILE, **fields}
        self.record_cid = None


@pytest.fixture(scope="module")
def fake_pds() -> Iterator[FakePDS]:
    fake = FakePDS()
    yield fake
    fake.server.shutdown()


@pytest.fixture
async def sync(tmp_path: Path, fake_pds: FakePDS) -> AsyncIterator[Any]:
    from plyrd.atproto.identity import IdentityResolver
    from plyrd.atproto.net import make_http_client
    from plyrd.db import Database
    from plyrd.network.bsky_profiles import ProfileSync
    from plyrd.storage import BlobStore

    db = Database(tmp_path / "plyrd.db")
    await db.open()
    http = make_http_client(allow_private=True, user_agent="plyrd-test")
    identity = IdentityResolver(http, web_base_url=lambda host: "http://" + host.replace("localhost", "127.0.0.1"))
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    await db.execute("INSERT INTO users(did, handle) VALUES (?, 'liar.test')", (fake_pds.did,))
    yield ProfileSync(db, store, http, identity, "https://node.example")
    await http.aclose()
    await db.close()


async def row_of(sync: Any, did: str) -> dict[str, Any]:
    row = await sync.db.fetchone("SELECT * FROM users WHERE did = ?", (did,))
    return dict(row)


async def test_a_hostile_avatar_keeps_the_old_one(sync, fake_pds: FakePDS, caplog) -> None:
    from plyrd.network.bsky_profiles import is_avatar, sync_bsky_profile

    caplog.set_level(logging.INFO, logger="plyrd.bsky_profiles")
    did = fake_pds.did
    fake_pds.profile(displayName="Honest", avatar=fake_pds.avatar(png_bytes(80, 80)))
    assert await sync_bsky_profile(sync, did) == "updated"
    good = await row_of(sync, did)
    assert good["display_name"] == "Honest" and good["avatar_url"] == f"https://node.example/avatars/{good['avatar_sha']}"
    assert await is_avatar(sync.db, good["avatar_sha"])

    real = png_bytes(90, 90, (1, 2, 3))
    cases = {
        "hash to": fake_pds.avatar(real, sent=png_bytes(90, 90, (3, 2, 1))),  # other bytes than the CID names
        "not a PNG or JPEG": fake_pds.avatar(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),  # honest CID, no image
        "more than the 2097152 bytes": fake_pds.avatar(b"\x89PNG\r\n\x1a\n" + bytes(3_000_000)),  # over the cap
        "corrupt": fake_pds.avatar(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200),  # a PNG signature, then nothing
        "could not be fetched": {**fake_pds.avatar(b"x"), "ref": {"$link": blob_cid("ab" * 32)}},  # not there
    }
    cases["more than the 2097152 bytes"]["size"] = 900_000  # what a record may say; the bytes sent say otherwise
    for i, (why, ref) in enumerate(cases.items()):
        caplog.clear()
        fake_pds.profile(displayName=f"Still Here {i}", avatar=ref)
        assert await sync_bsky_profile(sync, did) == "updated", why
        row = await row_of(sync, did)
        assert row["display_name"] == f"Still Here {i}", why  # the text still applies
        assert (row["avatar_sha"], row["avatar_url"]) == (good["avatar_sha"], good["avatar_url"]), why
        assert row["bsky_avatar_cid"] == good["bsky_avatar_cid"], why
        refused = [r for r in caplog.records if r.getMessage() == "bluesky avatar refused"]
        assert refused and why in refused[0].fields["reason"], (why, [r.__dict__.get("fields") for r in refused])
    blobs = await sync.db.fetchall("SELECT sha256, refcount FROM blobs")
    assert [(b["sha256"], b["refcount"]) for b in blobs] == [(good["avatar_sha"], 1)]  # nothing else kept
    assert [p.name for p in (sync.store.root).rglob("*") if p.is_file()] == [good["avatar_sha"]]


async def test_a_broken_or_missing_profile_leaves_the_row(sync, fake_pds: FakePDS, caplog) -> None:
    from plyrd.network.bsky_profiles import sync_bsky_profile

    did = fake_pds.did
    fake_pds.profile(displayName="Kept", description="kept words")
    assert await sync_bsky_profile(sync, did) == "updated"
    kept = await row_of(sync, did)
    caplog.set_level(logging.INFO, logger="plyrd.bsky_profiles")

    broken: list[tuple[str, dict[str, Any], str | None]] = [
        ("maxGraphemes", {"displayName": "n" * 65}, None),
        ("maxLength", {"description": "é" * 1281}, None),
        ("accept", {"avatar": {**fake_pds.avatar(b"GIF89a"), "mimeType": "image/gif"}}, None),
        ("not the CID of its contents", {"displayName": "Forged"}, record_cid({"$type": PROFILE, "displayName": "x"})),
        ("does not name a SHA-256", {"avatar": {"$type": "blob", "mimeType": "image/png", "size": 10,
                                                "ref": {"$link": record_cid({"a": 1})}}}, None),
    ]
    for why, fields, forged_cid in broken:
        caplog.clear()
        fake_pds.profile(**fields)
        fake_pds.record_cid = forged_cid
        assert await sync_bsky_profile(sync, did) == "failed", why
        row = await row_of(sync, did)
        assert (row["display_name"], row["bio"]) == ("Kept", "kept words"), why
        logged = [r for r in caplog.records if r.getMessage() == "bluesky profile not read"]
        assert logged and why in logged[0].fields["reason"], why

    fake_pds.record = None  # no profile at all
    assert await sync_bsky_profile(sync, did) == "missing"
    row = await row_of(sync, did)
    assert (row["display_name"], row["bio"]) == ("Kept", "kept words")
    assert row["profile_refreshed_at"] > kept["profile_refreshed_at"]


async def test_the_daily_refresh_reads_only_what_is_due(sync, fake_pds: FakePDS) -> None:
    from plyrd.library import LIBRARY_DID
    from plyrd.network.bsky_profiles import refresh_due_profiles

    fake_pds.profile(displayName="Daily")
    await sync.db.execute("INSERT OR IGNORE INTO users(did) VALUES (?)", (LIBRARY_DID,))
    assert await refresh_due_profiles(sync, max_age_hours=24) == 1  # never read; the library is nobody's profile
    assert (await row_of(sync, fake_pds.did))["display_name"] == "Daily"

    fake_pds.profile(displayName="Daily Renamed")
    assert await refresh_due_profiles(sync, max_age_hours=24) == 0  # read a moment ago
    await sync.db.execute("UPDATE users SET profile_refreshed_at = ? WHERE did = ?",
                          (time.time() - 25 * 3600, fake_pds.did))
    assert await refresh_due_profiles(sync, max_age_hours=24, budget_seconds=0) == 0  # out of time: next run
    assert (await row_of(sync, fake_pds.did))["display_name"] == "Daily"
    assert await refresh_due_profiles(sync, max_age_hours=24) == 1
    assert (await row_of(sync, fake_pds.did))["display_name"] == "Daily Renamed"


async def test_release_avatar_lets_the_copy_go(sync, fake_pds: FakePDS) -> None:
    from plyrd.network.bsky_profiles import is_avatar, release_avatar, sync_bsky_profile

    fake_pds.profile(displayName="Leaving", avatar=fake_pds.avatar(jpeg_bytes(40, 40)))
    assert await sync_bsky_profile(sync, fake_pds.did) == "updated"
    sha = (await row_of(sync, fake_pds.did))["avatar_sha"]
    async with sync.db.write() as conn:
        released = await release_avatar(conn, sync.store, fake_pds.did)
    assert released == [sha] and await sync.store.remove_unreferenced(released) == 1
    row = await row_of(sync, fake_pds.did)
    assert (row["avatar_sha"], row["avatar_url"], row["display_name"]) == (None, None, "Leaving")
    assert not await is_avatar(sync.db, sha) and not sync.store.path_for(sha).exists()


async def test_a_remote_artists_placeholder_name_gives_way_but_a_node_users_name_does_not(sync, fake_pds) -> None:
    from plyrd.network.bsky_profiles import sync_bsky_profile

    # named by a track record's `artist` when the node met them (plyrd.network.remote_tracks); never signed in here
    await sync.db.execute("UPDATE users SET display_name = 'From The Record' WHERE did = ?", (fake_pds.did,))
    fake_pds.profile(displayName="Their Bluesky Name", description="hello")
    assert await sync_bsky_profile(sync, fake_pds.did) == "updated"
    assert (await row_of(sync, fake_pds.did))["display_name"] == "Their Bluesky Name"

    # someone who signed in here (reconciliation gave them a profile) and chose a name keeps it
    await sync.db.execute("UPDATE users SET display_name = 'Chosen Here', profile_created_at = 1 WHERE did = ?",
                          (fake_pds.did,))
    fake_pds.profile(displayName="Renamed On Bluesky")
    assert await sync_bsky_profile(sync, fake_pds.did) == "updated"  # the description went away: the bio too
    row = await row_of(sync, fake_pds.did)
    assert (row["display_name"], row["bio"]) == ("Chosen Here", None)
