"""Following and discovery against the real PDS: a node user's Bluesky follows (app.bsky.graph.follow records
written in their repo with plain createRecord) are read on sign-in; "artists you follow" lists the followed accounts
with tracks the node knows; the network feed shows other repos' tracks from followed artists (backfilled from their
PDS) and those the node's users liked, newest first, in pages; a deleted follow is gone after the next read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import helpers
import httpx
import pytest
from conftest import node_fixture
from helpers import Person, person, sign_in, upload, wait_for
from helpers import db as node_sql

from plyrd.atproto.net import make_http_client
from plyrd.errors import InvalidInput
from plyrd.network import follows

node = node_fixture("follows")


class Repo(helpers.Repo):
    """Another client writing to an account's repo (tests/helpers.py), with the records this module writes."""

    def track(self, title: str, created: str) -> dict[str, Any]:
        url = f"https://cdn.example.com/{title.replace(' ', '-')}.mp3"
        return self.create("fm.plyr.track", {"title": title, "artist": "far away", "fileType": "mp3",
                                             "createdAt": created, "audioUrl": url})

    def follow(self, did: str) -> dict[str, Any]:
        return self.create("app.bsky.graph.follow", {"subject": did, "createdAt": "2026-11-01T00:00:00.000Z"})


def titles(tracks: list[dict[str, Any]]) -> list[str]:
    return [t["title"] for t in tracks]


@pytest.fixture(scope="module")
def scene(pds, node, tmp_path_factory) -> dict[str, Any]:
    """Two artists on other nodes (their tracks in their own repos), a listener here who liked one track of each,
    an artist of this node with an upload, and a fan here who follows the first remote artist, the node's artist
    and someone with no tracks at all."""
    far = Repo(pds, pds.create_account("farone"))
    other = Repo(pds, pds.create_account("fartwo"))
    nobody = pds.create_account("nobody")
    known = far.track("far known", "2026-11-01T10:00:00.000Z")
    far.track("far new", "2026-11-20T10:00:00.000Z")  # liked by nobody: found through the follow only
    liked = other.track("other liked", "2026-11-15T10:00:00.000Z")
    listener_acct = pds.create_account("listener")
    listener = Repo(pds, listener_acct)
    for ref in (known, liked):
        listener.create("fm.plyr.like", {"subject": {"uri": ref["uri"], "cid": ref["cid"]},
                                         "createdAt": "2026-11-21T10:00:00.000Z"})
    listening = sign_in(node.url, listener_acct)  # reconciling adopts the two liked tracks
    wait_for(lambda: len(listening.http.get("/tracks/liked").json()["tracks"]) == 2)
    wait_for(lambda: node_sql(node, "SELECT 1 FROM node_users WHERE did = ?", (listener_acct.did,)))
    local: Person = person(node, pds, "localart")
    upload(local, tmp_path_factory.mktemp("follows"), "local upload", seconds=1, frequency=440)
    fan_acct = pds.create_account("fan")
    fan_repo = Repo(pds, fan_acct)
    follow_far = fan_repo.follow(far.account.did)
    fan_repo.follow(local.did)
    fan_repo.follow(nobody.did)
    fan = sign_in(node.url, fan_acct)
    return {"far": far, "other": other, "nobody": nobody, "local": local, "fan": fan, "fan_repo": fan_repo,
            "follow_far": follow_far, "listener": listening}


def test_follows_are_read_from_the_users_pds_on_sign_in(node, scene) -> None:
    fan = scene["fan"]
    wait_for(lambda: len(node_sql(node, "SELECT 1 FROM follows WHERE did = ?", (fan.did,))) == 3)
    rows = node_sql(node, "SELECT subject_did FROM follows WHERE did = ?", (fan.did,))
    assert {r[0] for r in rows} == {scene["far"].account.did, scene["local"].did, scene["nobody"].did}
    read = node_sql(node, "SELECT follows_count, follows_complete FROM node_users WHERE did = ?", (fan.did,))
    assert read == [(3, 1)]


def test_artists_you_follow_are_those_with_tracks_here(node, scene) -> None:
    fan = scene["fan"]
    wait_for(lambda: len(fan.http.get("/following/artists").json()) == 2)
    artists = fan.http.get("/following/artists").json()
    assert {a["did"]: a["track_count"] for a in artists} == {scene["far"].account.did: 2, scene["local"].did: 1}
    far = next(a for a in artists if a["did"] == scene["far"].account.did)
    assert far["handle"] == scene["far"].account.handle and set(far) == {
        "did", "handle", "display_name", "avatar_url", "track_count"}
    assert fan.http.get("/discover/network").json() == artists  # plyr.fm's path
    assert httpx.get(node.url + "/following/artists").status_code == 401


def test_the_network_feed_has_followed_and_liked_remote_tracks_newest_first(node, scene) -> None:
    fan = scene["fan"]
    # "far new" came from the followed artist's PDS (backfill): no like or playlist names it
    assert titles(fan.http.get("/feeds/network").json()["tracks"]) == ["far new", "other liked", "far known"]
    # anonymous visitors: only what the node's users liked; the node's own uploads are never in it
    anonymous = httpx.get(node.url + "/feeds/network").json()
    assert titles(anonymous["tracks"]) == ["other liked", "far known"] and anonymous["has_more"] is False
    seen, cursor = [], None
    while True:
        page = fan.http.get("/feeds/network", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += titles(page["tracks"])
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if not cursor:
            break
    assert seen == ["far new", "other liked", "far known"]
    assert fan.http.get("/feeds/network", params={"cursor": "nope"}).status_code == 400


def test_the_network_page_and_the_home_chip(node, scene) -> None:
    html = scene["fan"].http.get("/network").text
    assert "artists you follow" in html and scene["far"].account.handle in html and "far new" in html
    assert "local upload" not in html.split('id="network-heading"')[1]
    anonymous = httpx.get(node.url + "/network").text
    assert 'id="following-heading"' not in anonymous and "other liked" in anonymous and "far new" not in anonymous
    assert '<a class="chip" href="/network">network</a>' in httpx.get(node.url + "/").text


def test_an_inactive_repo_leaves_the_feed(node, scene) -> None:
    other = scene["other"].account.did
    node_sql(node, "UPDATE users SET repo_status = 'deactivated' WHERE did = ?", (other,))
    try:
        assert titles(scene["fan"].http.get("/feeds/network").json()["tracks"]) == ["far new", "far known"]
    finally:
        node_sql(node, "UPDATE users SET repo_status = NULL WHERE did = ?", (other,))


def test_a_deleted_follow_is_gone_after_the_next_read(node, pds, scene) -> None:
    fan_repo, fan = scene["fan_repo"], scene["fan"]
    fan_repo.call("deleteRecord", {"collection": "app.bsky.graph.follow",
                                   "rkey": scene["follow_far"]["uri"].rsplit("/", 1)[1]})
    sign_in(node.url, fan_repo.account)  # a sign-in reads them again
    wait_for(lambda: len(node_sql(node, "SELECT 1 FROM follows WHERE did = ?", (fan.did,))) == 2)
    assert [a["did"] for a in fan.http.get("/following/artists").json()] == [scene["local"].did]
    assert titles(fan.http.get("/feeds/network").json()["tracks"]) == ["other liked", "far known"]


# ---- the module's parts, in process ------------------------------------------------------------------------


async def test_ingest_creates_and_deletes_apply_only_to_node_users(db) -> None:
    follow = {"$type": "app.bsky.graph.follow", "subject": "did:plc:abc", "createdAt": "2026-11-01T00:00:00Z"}
    assert await follows.follow_created(db, "did:plc:stranger", "3kabc", follow) is None
    await follows.mark_node_user(db, "did:plc:here")
    kept = await follows.follow_created(db, "did:plc:here", "3kabc", follow)
    assert kept is not None and kept.subject_did == "did:plc:abc"
    assert await db.fetchall("SELECT did, subject_did FROM follows") != []
    for bad in ({**follow, "subject": "alice.test"}, {**follow, "createdAt": "yesterday"},
                {**follow, "$type": "app.bsky.feed.like"}, "nope"):
        with pytest.raises(InvalidInput):
            await follows.follow_created(db, "did:plc:here", "3kdef", bad)
    assert await follows.is_followed(db, "did:plc:abc") and not await follows.is_followed(db, "did:plc:here")
    assert await follows.follow_deleted(db, "did:plc:here", "3kabc") is True
    assert await follows.follow_deleted(db, "did:plc:here", "3kabc") is False
    assert await db.fetchall("SELECT * FROM follows") == []
    await follows.follow_created(db, "did:plc:here", "3kabc", follow)
    async with db.write() as conn:  # account deletion
        await follows.forget_follows(conn, "did:plc:here")
    assert await db.fetchall("SELECT * FROM follows") == [] and await db.fetchall("SELECT * FROM node_users") == []


async def test_follows_are_read_again_daily_for_users_who_still_sign_in(db) -> None:
    now = time.time()
    users = [("did:plc:never", now - 60, None), ("did:plc:yesterday", now - 86400 * 3, now - 86400 * 2),
             ("did:plc:fresh", now - 60, now - 3600), ("did:plc:gone", now - 86400 * 100, None)]
    await db.execute("INSERT INTO node_users(did, signed_in_at, follows_read_at) VALUES (?, ?, ?), (?, ?, ?),"
                     " (?, ?, ?), (?, ?, ?)", [v for u in users for v in u])
    assert await follows.due_for_refresh(db, now) == ["did:plc:never", "did:plc:yesterday"]


async def test_reading_stops_at_the_cap_with_the_newest(pds, tmp_path: Path) -> None:
    reader = Repo(pds, pds.create_account("capped"))
    subjects = [pds.create_account(f"sub{i}").did for i in range(5)]
    for did in subjects:
        reader.follow(did)
    # a record its PDS did not validate (as any repo may hold): skipped, counted
    reader.call("createRecord", {"collection": "app.bsky.graph.follow", "validate": False, "record": {
        "$type": "app.bsky.graph.follow", "subject": "not a did", "createdAt": "2026-11-01T00:00:00.000Z"}})
    async with make_http_client(allow_private=True, user_agent="plyrd-test") as http:
        everything = await follows.read_follows(http, pds.pds_url, reader.account.did)
        capped = await follows.read_follows(http, pds.pds_url, reader.account.did, cap=3)
    assert everything.complete and everything.skipped == 1 and [f.subject_did for f in everything.follows] == \
        subjects[::-1]
    assert not capped.complete and capped.skipped == 1 and [f.subject_did for f in capped.follows] == \
        subjects[::-1][:2]


async def test_a_new_follow_from_ingest_backfills_a_known_artist(pds, tmp_path: Path) -> None:
    """What the ingest handler does with a follow event, in a node of its own (in process): the follow is kept, and
    the followed artist, known here by one track, has their newest other tracks read from their PDS."""
    from plyrd.config import load_config
    from plyrd.node import Node

    artist = Repo(pds, pds.create_account("ingested"))
    first = artist.track("first known", "2026-11-01T10:00:00.000Z")
    artist.track("second new", "2026-11-02T10:00:00.000Z")
    config = load_config(env={}, overrides={
        "storage.data_dir": str(tmp_path / "data"), "atproto.plc_url": pds.plc_url,
        "atproto.handle_resolver_url": pds.pds_url, "atproto.allow_private_addresses": True})
    node = Node(config)
    await node.start()
    try:
        assert await node.remote_tracks.resolve(first["uri"], first["cid"]) is not None
        await follows.mark_node_user(node.db, "did:plc:listenerhere")
        kept = await follows.follow_created(node.db, "did:plc:listenerhere", "3kfollow", {
            "$type": "app.bsky.graph.follow", "subject": artist.account.did, "createdAt": "2026-11-03T00:00:00Z"})
        assert kept is not None
        node.follows.followed(kept.subject_did)
        deadline = time.monotonic() + 20
        while not await node.db.fetchone("SELECT 1 FROM tracks WHERE title = 'second new' AND source = 'remote'"):
            assert time.monotonic() < deadline, "the followed artist's new track was never adopted"
            await asyncio.sleep(0.1)
    finally:
        await node.stop()


async def test_a_failed_read_keeps_the_follows_and_waits_a_day(db, pds) -> None:
    from plyrd.atproto.identity import IdentityResolver

    gone = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"  # no such DID in the PLC directory
    await follows.mark_node_user(db, gone)
    await follows.follow_created(db, gone, "3kabc", {"$type": "app.bsky.graph.follow", "subject": "did:plc:abc",
                                                     "createdAt": "2026-11-01T00:00:00Z"})
    async with make_http_client(allow_private=True, user_agent="plyrd-test") as http:
        reader = follows.Follows(db, http, IdentityResolver(http, plc_url=pds.plc_url), None)
        assert await reader.refresh(gone) is None
    assert await db.fetchall("SELECT subject_did FROM follows WHERE did = ?", (gone,)) != []
    assert await follows.due_for_refresh(db, time.time()) == []
