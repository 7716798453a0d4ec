"""Ingest against the real PDS's own firehose (com.atproto.sync.subscribeRepos): what other clients write with plain
createRecord reaches the node within seconds, through the node's one event handler (plyrd.network.events): likes and
comments on its tracks from people who never signed in here, a listener's likes of another repo's track (which then
plays here with verified bytes), deletes, and account deactivation."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_env, start_node
from helpers import NOW, Repo, db, publish, sign_in, wait_for


@pytest.fixture(scope="module")
def node(pds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    firehose = pds.pds_url.replace("http://", "ws://", 1)
    admin = pds.create_account("ingadmin")
    served = start_node([], cwd=tmp_path_factory.mktemp("ingest"), env=node_env(
        pds, PLYRD_INGEST_ENABLED="true", PLYRD_INGEST_FIREHOSE_URL=firehose, PLYRD_AUTH_ADMINS=admin.handle))
    served.admin = admin  # type: ignore[attr-defined]
    yield served
    served.stop()


@pytest.fixture(scope="module")
def local_track(node: ServedNode, pds: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A track of an artist of this node, published to their PDS, taking comments."""
    acct = pds.create_account("ingart")
    artist = sign_in(node.url, acct)
    r = artist.http.post("/preferences/", json={"allow_comments": True}, headers={"X-CSRF-Token": artist.csrf})
    assert r.status_code == 200, r.text
    song = make_audio(tmp_path_factory.mktemp("ing") / "local.mp3", "mp3", seconds=2, frequency=440)
    up = artist.upload(song, title="local song")
    track_id = artist.wait(up.json()["upload_id"])[-1]["track_id"]
    uri, cid = publish(node, pds, track_id)
    return {"id": track_id, "uri": uri, "cid": cid, "artist": artist}


def _track(node: ServedNode, track_id: int) -> dict[str, Any]:
    return httpx.get(f"{node.url}/tracks/{track_id}").json()


def test_a_strangers_like_and_comment_arrive_and_go(node, pds, local_track) -> None:
    stranger = Repo(pds, pds.create_account("ingfan"))  # never signs in here
    ref = {"uri": local_track["uri"], "cid": local_track["cid"]}
    like = stranger.create("fm.plyr.like", {"subject": ref, "createdAt": NOW})
    stranger.create("fm.plyr.comment", {"subject": ref, "text": "heard this on plyr.fm", "timestampMs": 700,
                                        "createdAt": NOW})
    wait_for(lambda: _track(node, local_track["id"])["like_count"] == 1, timeout=15)
    comments = wait_for(lambda: httpx.get(f"{node.url}/tracks/{local_track['id']}/comments").json()["comments"])
    assert comments[0]["text"] == "heard this on plyr.fm"
    likers = httpx.get(f"{node.url}/tracks/{local_track['id']}/likes").json()["users"]
    assert likers[0]["did"] == stranger.account.did
    # the stranger is named by their handle once resolved
    wait_for(lambda: db(node, "SELECT handle FROM users WHERE did = ?", (stranger.account.did,))[0][0]
             == stranger.account.handle)

    stranger.call("deleteRecord", {"collection": "fm.plyr.like", "rkey": like["uri"].rsplit("/", 1)[1]})
    wait_for(lambda: _track(node, local_track["id"])["like_count"] == 0, timeout=15)


def test_garbage_and_likes_of_unknown_tracks_are_not_kept(node, pds, local_track) -> None:
    stranger = Repo(pds, pds.create_account("ingjunk"))
    other = f"at://{stranger.account.did}/fm.plyr.track/3kaaaaaaaaaaa"
    stranger.create("fm.plyr.like", {"subject": {"uri": other, "cid": local_track["cid"]}, "createdAt": NOW})
    # not what the lexicon allows (no createdAt): skipped, never applied
    stranger.create("fm.plyr.like", {"subject": {"uri": local_track["uri"], "cid": local_track["cid"]}})
    # a marker after them: once it is in, the two before were handled
    stranger.create("fm.plyr.comment", {"subject": {"uri": local_track["uri"], "cid": local_track["cid"]},
                                        "text": "marker", "timestampMs": 1, "createdAt": NOW})
    wait_for(lambda: "marker" in [c["text"] for c in httpx.get(
        f"{node.url}/tracks/{local_track['id']}/comments").json()["comments"]], timeout=15)
    assert db(node, "SELECT count(*) FROM likes WHERE did = ?", (stranger.account.did,))[0][0] == 0
    assert db(node, "SELECT count(*) FROM tracks WHERE record_uri = ?", (other,))[0][0] == 0


def test_a_listeners_like_made_elsewhere_resolves_and_plays(node, pds, tmp_path: Path) -> None:
    far = Repo(pds, pds.create_account("ingfar"))
    audio = make_audio(tmp_path / "far.mp3", "mp3", seconds=2, frequency=660).read_bytes()
    track = far.create("fm.plyr.track", {"title": "far song", "artist": "far away", "fileType": "mp3",
                                         "duration": 2, "createdAt": NOW,
                                         "audioBlob": far.blob(audio, "audio/mpeg")})
    listener_acct = pds.create_account("inglis")
    listener = sign_in(node.url, listener_acct)
    wait_for(lambda: db(node, "SELECT 1 FROM node_users WHERE did = ?", (listener_acct.did,)))
    Repo(pds, listener_acct).create("fm.plyr.like", {"subject": {"uri": track["uri"], "cid": track["cid"]},
                                                     "createdAt": NOW})
    liked = wait_for(lambda: listener.http.get("/tracks/liked").json()["tracks"], timeout=15)
    assert liked[0]["title"] == "far song" and liked[0]["source"] == "remote"
    r = httpx.get(f"{node.url}/audio/{liked[0]['file_id']}")
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(audio).hexdigest() == liked[0]["file_id"]


def test_a_deactivated_repo_hides_its_tracks_until_it_returns(node, pds) -> None:
    acct = pds.create_account("ingdeact")
    repo = Repo(pds, acct)
    track = repo.create("fm.plyr.track", {"title": "soon gone", "artist": "deact", "fileType": "mp3",
                                          "createdAt": NOW, "audioUrl": "https://cdn.example.com/a.mp3"})
    fan_acct = pds.create_account("ingdfan")
    sign_in(node.url, fan_acct)
    wait_for(lambda: db(node, "SELECT 1 FROM node_users WHERE did = ?", (fan_acct.did,)))
    Repo(pds, fan_acct).create("fm.plyr.like", {"subject": {"uri": track["uri"], "cid": track["cid"]},
                                                "createdAt": NOW})
    tid = wait_for(lambda: db(node, "SELECT id FROM tracks WHERE record_uri = ?", (track["uri"],)), timeout=15)[0][0]
    assert httpx.get(f"{node.url}/tracks/{tid}").status_code == 200
    repo.server("deactivateAccount", {})
    wait_for(lambda: httpx.get(f"{node.url}/tracks/{tid}").status_code == 404, timeout=15)
    repo.server("activateAccount")
    wait_for(lambda: httpx.get(f"{node.url}/tracks/{tid}").status_code == 200, timeout=15)


def test_a_follow_made_elsewhere_brings_the_artists_new_tracks(node, pds) -> None:
    """A node user follows an artist in their Bluesky app; the artist then publishes a track on plyr.fm: it is in
    the node's network feed within seconds, through the firehose alone."""
    artist = Repo(pds, pds.create_account("ingfol"))
    listener_acct = pds.create_account("ingfoll")
    listener = sign_in(node.url, listener_acct)
    wait_for(lambda: db(node, "SELECT 1 FROM node_users WHERE did = ?", (listener_acct.did,)))
    Repo(pds, listener_acct).create("app.bsky.graph.follow", {"subject": artist.account.did, "createdAt": NOW})
    wait_for(lambda: db(node, "SELECT 1 FROM follows WHERE did = ? AND subject_did = ?",
                        (listener_acct.did, artist.account.did)), timeout=15)
    artist.create("fm.plyr.track", {"title": "fresh from the sea", "artist": "ingfol", "fileType": "mp3",
                                    "createdAt": NOW, "audioUrl": "https://cdn.example.com/s.mp3"})
    # (the feed also holds other repos' tracks this module's listeners liked)
    feed = wait_for(lambda: [t["title"] for t in listener.http.get("/feeds/network").json()["tracks"]
                             if t["artist_did"] == artist.account.did], timeout=15)
    assert feed == ["fresh from the sea"]
    followed = listener.http.get("/following/artists").json()
    assert [a["did"] for a in followed] == [artist.account.did]


def test_the_admin_overview_says_what_ingest_is_doing(node, local_track) -> None:
    admin = sign_in(node.url, node.admin)
    page = admin.http.get("/admin").text
    follows = re.search(r"<p data-ingest>following firehose <code>(.*?)</code>: (connected|not connected) · "
                        r"(\d+) events? read, (\d+) kept", page)
    assert follows, page
    assert follows.group(2) == "connected" and int(follows.group(3)) >= int(follows.group(4)) > 0
