"""Sharing a track to Bluesky against a real node and the real PDS: the post in the listener's own repo, its link card
and picture read back from the PDS, every refusal leaving no post, and the OAuth path: a session without permission
to post is sent to its PDS for only that permission, and shares once back. The scope arithmetic is checked on its
own too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_env, start_node
from helpers import Person, db, person, records, sign_in
from library_support import scan_library
from pds_harness import authorize_headless

from plyrd.atproto.jwt import ES256Key
from plyrd.atproto.oauth import (
    BASE_SCOPE,
    SHARE_SCOPES,
    TEAL_SCOPES,
    client_metadata,
    confidential_client,
    covers,
    parse_scopes,
    widened_scope,
)
from plyrd.auth.service import FULL_SCOPE, Session
from plyrd.network import share
from plyrd.storage import BlobStore

POST = "app.bsky.feed.post"
POST_SCOPE = "repo:app.bsky.feed.post?action=create"
JSON = {"Accept": "application/json"}


@dataclass
class World:
    node: Any
    artist: Person
    listener: Person  # named in auth.library_listeners: sees the library's tracks
    outsider: Person  # does not
    track: dict[str, Any]  # the artist's upload, with artwork
    library_track: int


@pytest.fixture(scope="module")
def world(pds, tmp_path_factory: pytest.TempPathFactory) -> Any:
    music = tmp_path_factory.mktemp("share-music")
    make_audio(music / "folder song.mp3", "mp3", seconds=1.0, frequency=440.0, tags={"title": "Folder Song"})
    listener_account = pds.create_account("sharelisten")
    node = start_node([], cwd=tmp_path_factory.mktemp("share"),
                      env=node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music), PLYRD_LIBRARY_WATCH="false",
                                   PLYRD_AUTH_LIBRARY_LISTENERS=listener_account.handle))
    try:
        scan_library(node, tracks=1)
        artist = person(node, pds, "shareartist")
        src = make_audio(tmp_path_factory.mktemp("share-up") / "up.mp3", "mp3", seconds=1.5, frequency=660.0)
        r = artist.me.upload(src, image=("cover.jpg", jpeg_bytes(320, 320, (30, 90, 200)), "image/jpeg"),
                             title="Harbour Lights")
        assert r.status_code == 200, r.text
        done = artist.me.wait(r.json()["upload_id"])[-1]
        assert done["status"] == "completed", done
        track = artist.get(f"/tracks/{done['track_id']}").json()
        listener = Person(sign_in(node.url, listener_account), listener_account)
        [(library_id,)] = db(node, "SELECT id FROM tracks WHERE source = 'library'")
        yield World(node, artist, listener, person(node, pds, "shareout"), track, library_id)
    finally:
        node.stop()


def get_record(pds: Any, uri: str) -> dict[str, Any]:
    _, _, repo, collection, rkey = uri.split("/", 4)
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                  params={"repo": repo, "collection": collection, "rkey": rkey}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def posts(pds: Any, did: str) -> list[dict[str, Any]]:
    return records(pds, did, POST)


# ---- with an app password: the session may write anything, so a share posts at once


def test_a_share_posts_a_link_card_with_the_artwork(world: World, pds) -> None:
    track, who = world.track, world.listener
    text = "at dusk — https://example.com/notes/1."
    r = who.post(f"/tracks/{track['id']}/share", json={"text": text})
    assert r.status_code == 201, r.text
    shared = r.json()
    rkey = shared["uri"].rsplit("/", 1)[-1]
    assert shared["uri"] == f"at://{who.did}/{POST}/{rkey}"
    assert shared["url"] == f"https://bsky.app/profile/{who.did}/post/{rkey}"

    got = get_record(pds, shared["uri"])
    assert got["cid"] == shared["cid"]
    post = got["value"]
    assert post["$type"] == POST and post["text"] == text
    card = post["embed"]
    assert card["$type"] == "app.bsky.embed.external"
    assert card["external"]["uri"] == f"{world.node.url}/track/{track['id']}"
    assert card["external"]["title"] == "Harbour Lights"
    assert card["external"]["description"] == f"{track['artist']} — Harbour Lights"
    # The typed URL is a link (Bluesky shows only faceted URLs as links), by UTF-8 bytes, without the full stop.
    start = len("at dusk — ".encode())
    assert post["facets"] == [{"index": {"byteStart": start, "byteEnd": start + len("https://example.com/notes/1")},
                               "features": [{"$type": "app.bsky.richtext.facet#link",
                                             "uri": "https://example.com/notes/1"}]}]

    # The card's picture is a blob in the listener's repo: the track's artwork as the node serves it.
    thumb = card["external"]["thumb"]
    assert thumb["$type"] == "blob" and thumb["mimeType"] == "image/webp"
    blob = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob",
                     params={"did": who.did, "cid": thumb["ref"]["$link"]}, timeout=30)
    assert blob.status_code == 200 and blob.headers["content-type"] == "image/webp"
    artwork = httpx.get(track["image_url"], timeout=30)
    assert blob.content == artwork.content and len(blob.content) == thumb["size"]


def test_text_is_counted_as_bluesky_counts_it(world: World, pds) -> None:
    who = world.outsider
    before = len(posts(pds, who.did))
    too_long = "ab" * 150 + "!"
    r = who.post(f"/tracks/{world.track['id']}/share", json={"text": too_long})
    assert r.status_code == 400 and "300" in r.json()["detail"] and "301" in r.json()["detail"]
    r = who.post(f"/tracks/{world.track['id']}/share", json={"text": 5})
    assert r.status_code == 400
    assert len(posts(pds, who.did)) == before  # refused before anything went to the PDS
    # 300 accented letters written as letter + combining accent: 600 code points, 300 characters.
    accented = "e\u0301" * 300
    r = who.post(f"/tracks/{world.track['id']}/share", json={"text": accented})
    assert r.status_code == 201, r.text
    assert get_record(pds, r.json()["uri"])["value"]["text"] == accented
    # No text at all: a post that is only the card.
    r = who.post(f"/tracks/{world.track['id']}/share")
    assert r.status_code == 201, r.text
    assert get_record(pds, r.json()["uri"])["value"]["text"] == ""


def test_refusals_leave_no_post(world: World, pds) -> None:
    who, track_id = world.listener, world.track["id"]
    before = len(posts(pds, who.did))
    # Without the CSRF header a cookie cannot post (a forged form from another site).
    r = who.me.http.post(f"/tracks/{track_id}/share", json={"text": "forged"})
    assert r.status_code == 403
    # Nobody signed in.
    r = httpx.post(f"{world.node.url}/tracks/{track_id}/share", json={}, timeout=30)
    assert r.status_code == 401
    # Tracks that do not exist, or that the caller may not see: the same 404.
    assert who.post("/tracks/999999/share", json={}).status_code == 404
    r = world.outsider.post(f"/tracks/{world.library_track}/share", json={})
    assert r.status_code == 404
    # The node's own music folder never leaves the node, even for a listener who may play it here.
    assert who.get(f"/tracks/{world.library_track}").status_code == 200
    r = who.post(f"/tracks/{world.library_track}/share", json={})
    assert r.status_code == 403 and "music folder" in r.json()["detail"]
    assert len(posts(pds, who.did)) == before


async def test_the_card_picture_fits_bluesky_and_respects_content_notices(db, tmp_path) -> None:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "tmp").mkdir()
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    display = await store.put_bytes(b"d" * 1000, "image/webp")
    thumb = await store.put_bytes(b"t" * 100, "image/webp")
    big = await store.put_bytes(b"b" * (share.MAX_THUMB_BYTES + 1), "image/webp")

    def row(display_sha: str | None, thumb_sha: str | None, labels: str = "[]") -> dict[str, Any]:
        return {"display_sha": display_sha, "thumb_sha": thumb_sha, "self_labels": labels}

    assert share.card_artwork(row(display.sha256, thumb.sha256), store) == display.path  # the larger rendition
    assert share.card_artwork(row(big.sha256, thumb.sha256), store) == thumb.path  # over the card's limit
    assert share.card_artwork(row("f" * 64, thumb.sha256), store) == thumb.path  # a file gone from the store
    assert share.card_artwork(row(None, None), store) is None
    # Artwork the artist put a content notice on stays out of feeds (the page's own link preview leaves it out too).
    assert share.card_artwork(row(display.sha256, thumb.sha256, '["graphic-media"]'), store) is None


# ---- OAuth: a grant without the permission to post, and the upgrade that adds only it


def test_the_upgrade_asks_for_what_is_held_plus_only_posting() -> None:
    # What the node's client declares (its metadata's scope; the server refuses anything else) includes sharing.
    key = ES256Key.generate().private_jwk()
    declared = client_metadata(confidential_client("https://music.example.org", FULL_SCOPE, key))["scope"].split()
    assert set(SHARE_SCOPES.split()) <= set(declared)
    assert covers(declared, SHARE_SCOPES) and not covers(BASE_SCOPE, SHARE_SCOPES)

    # A sign-in grant: the base scope, no teal.fm: the upgrade keeps exactly that and adds the post and its picture.
    assert widened_scope(FULL_SCOPE, BASE_SCOPE, SHARE_SCOPES).split() == [*BASE_SCOPE.split(), *SHARE_SCOPES.split()]
    # With teal.fm granted, that stays too, in the declared order.
    both = f"{BASE_SCOPE} {TEAL_SCOPES}"
    assert widened_scope(FULL_SCOPE, both, SHARE_SCOPES) == FULL_SCOPE
    # A grant the server answered in its expanded form is compared by what it grants, not as a string.
    expanded = ("atproto blob:*/* repo?collection=fm.plyr.track&collection=fm.plyr.like&collection=fm.plyr.comment"
                "&collection=fm.plyr.list&collection=fm.plyr.actor.profile")
    assert widened_scope(FULL_SCOPE, expanded, SHARE_SCOPES).split() == [*BASE_SCOPE.split(), *SHARE_SCOPES.split()]
    with pytest.raises(ValueError, match="does not declare"):
        widened_scope(FULL_SCOPE, BASE_SCOPE, "repo:app.bsky.graph.follow")

    def session(auth_type: str, scope: str) -> Session:
        return Session("h", "did:plc:abc", None, "browser", auth_type, None, None, scope, 0.0, 0.0, None)

    assert session("password", "").share_granted
    assert not session("oauth", BASE_SCOPE).share_granted
    assert session("oauth", f"{BASE_SCOPE} {POST_SCOPE}").share_granted  # blob:*/* covers the picture
    assert session("oauth", "atproto transition:generic").share_granted
    assert not session("oauth", "atproto repo:app.bsky.feed.post?action=delete blob:*/*").share_granted


async def oauth_browser(node_url: str, account: Any) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    """A client signed in to the node with OAuth through the PDS (as a browser would, cookies and all)."""
    http = httpx.AsyncClient(base_url=node_url, timeout=30)
    r = await http.get("/auth/start", params={"handle": account.handle}, headers=JSON)
    assert r.status_code == 307, r.text
    callback = await asyncio.to_thread(authorize_headless, r.headers["location"], account.handle, account.password)
    r = await http.get(f"/auth/callback?{urlsplit(callback).query}", headers=JSON)
    assert r.status_code == 200, r.text
    return http, r.json()


async def test_oauth_share_asks_for_the_permission_then_posts(world: World, pds) -> None:
    account = pds.create_account("shareoauth")
    http, me = await oauth_browser(world.node.url, account)
    csrf = {"X-CSRF-Token": me["csrf_token"], **JSON}
    track_id = world.track["id"]
    try:
        before = set(me["scopes"])
        assert me["auth_type"] == "oauth" and POST_SCOPE not in before

        r = await http.post(f"/tracks/{track_id}/share", json={"text": "first try"}, headers=csrf)
        assert r.status_code == 403, r.text
        answer = r.json()
        assert answer["code"] == "needs_permission" and "permission" in answer["detail"]
        assert answer["auth_url"].startswith(f"{pds.pds_url}/oauth/authorize?")
        assert posts(pds, account.did) == []
        # Checks come first: a bad share never starts an authorization.
        r = await http.post(f"/tracks/{track_id}/share", json={"text": "x" * 301}, headers=csrf)
        assert r.status_code == 400

        # At the PDS the person approves; the browser comes back to the track page, same session, one more permission.
        callback = await asyncio.to_thread(authorize_headless, answer["auth_url"], account.handle, account.password)
        r = await http.get(f"/auth/callback?{urlsplit(callback).query}", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == f"/track/{track_id}?share=granted"
        after = (await http.get("/auth/me")).json()
        assert after["did"] == me["did"] and after["auth_type"] == "oauth"
        assert set(after["scopes"]) == before | parse_scopes(SHARE_SCOPES)  # nothing else asked for, nothing lost
        assert not after["teal_scrobbling_granted"]

        r = await http.post(f"/tracks/{track_id}/share", json={"text": "first try"}, headers=csrf)
        assert r.status_code == 201, r.text
        post = get_record(pds, r.json()["uri"])["value"]
        assert post["text"] == "first try"
        assert post["embed"]["external"]["uri"] == f"{world.node.url}/track/{track_id}"
        assert post["embed"]["external"]["thumb"]["mimeType"] == "image/webp"
    finally:
        await http.aclose()
