"""Remote tracks against the real PDS: a listener's likes, comments and playlist items of tracks in another
repo (an artist on plyr.fm or another node, written there with plain createRecord) resolve to remote tracks on
sign-in: shown with their artist, artwork and title, found by search, and kept (as unavailable) when the record
goes away."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_fixture
from helpers import NOW, Repo, db, records, sign_in, wait_for
from plyrfm._internal.types import Track

node = node_fixture("remote")


@pytest.fixture(scope="module")
def scene(pds, node, tmp_path_factory) -> dict[str, Any]:
    """An artist who is not on this node publishes two tracks (one with a cover blob); a listener likes one,
    comments on it and puts both in a playlist, all in their own repo."""
    tmp = tmp_path_factory.mktemp("remote")
    artist_acct = pds.create_account("farartist")
    artist = Repo(pds, artist_acct)
    audio = make_audio(tmp / "far.mp3", "mp3", seconds=2, frequency=523).read_bytes()
    cover = artist.blob(jpeg_bytes(64, 64), "image/jpeg")
    # a PDS serves only blobs some record references (plyr.fm's covers are referenced by the artist's records)
    artist.call("putRecord", {"collection": "app.bsky.actor.profile", "rkey": "self",
                              "record": {"$type": "app.bsky.actor.profile", "avatar": cover,
                                         "displayName": "far artist on bluesky"}})
    cover_url = (f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob?did={artist_acct.did}"
                 f"&cid={cover['ref']['$link']}")
    one = artist.create("fm.plyr.track", {
        "title": "harbour lights", "artist": "far artist", "album": "coastline", "fileType": "mp3",
        "duration": 2, "createdAt": NOW, "audioBlob": artist.blob(audio, "audio/mpeg"), "imageUrl": cover_url})
    two = artist.create("fm.plyr.track", {
        "title": "only a url", "artist": "far artist", "fileType": "mp3", "createdAt": NOW,
        "audioUrl": "https://cdn.example.com/audio/x.mp3"})
    listener_acct = pds.create_account("farfan")
    listener = Repo(pds, listener_acct)
    listener.create("fm.plyr.like", {"subject": {"uri": one["uri"], "cid": one["cid"]}, "createdAt": NOW})
    listener.create("fm.plyr.comment", {"subject": {"uri": one["uri"], "cid": one["cid"]}, "text": "lovely",
                                        "timestampMs": 500, "createdAt": NOW})
    listener.create("fm.plyr.list", {"name": "far away", "listType": "playlist", "createdAt": NOW, "items": [
        {"subject": {"uri": one["uri"], "cid": one["cid"]}}, {"subject": {"uri": two["uri"], "cid": two["cid"]}}]})
    fan = sign_in(node.url, listener_acct)  # signing in reconciles, in the background
    wait_for(lambda: fan.http.get("/tracks/liked").json()["tracks"])
    r = fan.http.post("/sync/reconcile", headers={"X-CSRF-Token": fan.csrf})  # on demand too: nothing new
    assert r.status_code == 200, r.text
    return {"artist": artist, "artist_acct": artist_acct, "one": one, "two": two, "fan": fan, "audio": audio,
            "report": r.json()}


def _track_id(node: Any, uri: str) -> int:
    rows = db(node, "SELECT id FROM tracks WHERE record_uri = ?", (uri,))
    assert rows, f"{uri} is not a track here"
    return int(rows[0][0])


def test_a_like_of_another_repos_track_is_kept_as_a_remote_track(node, scene) -> None:
    report = scene["report"]  # the second pass, after the sign-in's: everything was adopted once
    assert not report["adopted"]["likes"] and not report["adopted"]["comments"], report
    liked = scene["fan"].http.get("/tracks/liked").json()["tracks"]
    assert [t["title"] for t in liked] == ["harbour lights"]
    track = liked[0]
    assert track["source"] == "remote" and track["artist_did"] == scene["artist_acct"].did
    # named by the record's artist until their Bluesky profile (read in the background) names them
    assert track["artist"] in ("far artist", "far artist on bluesky") and track["album_name"] == "coastline"
    assert track["atproto_record_uri"] == scene["one"]["uri"]
    assert track["atproto_record_cid"] == scene["one"]["cid"]
    assert track["is_liked"] is True and track["like_count"] == 1
    # its audio is the blob the record names: the file id is the SHA-256 its CID carries
    assert track["file_id"] == hashlib.sha256(scene["audio"]).hexdigest()
    # its cover came from the artist's repo, checked and stored like an upload's
    assert track["image_url"] and "/images/" in track["image_url"]
    assert httpx.get(track["thumbnail_url"]).headers["content-type"] == "image/webp"
    # the artist is known by their handle and PDS
    rows = db(node, "SELECT handle, pds_url FROM users WHERE did = ?", (scene["artist_acct"].did,))
    assert rows[0][0] == scene["artist_acct"].handle and rows[0][1]
    # first seen, their Bluesky profile is read: name and avatar from app.bsky.actor.profile
    wait_for(lambda: db(node, "SELECT display_name, avatar_url FROM users WHERE did = ?",
                        (scene["artist_acct"].did,))[0][0] == "far artist on bluesky")
    avatar = db(node, "SELECT avatar_url FROM users WHERE did = ?", (scene["artist_acct"].did,))[0][0]
    assert "/avatars/" in avatar and httpx.get(avatar).headers["content-type"] == "image/webp"


def test_remote_tracks_open_for_anyone_and_comments_show(node, scene) -> None:
    tid = _track_id(node, scene["one"]["uri"])
    anon = httpx.get(f"{node.url}/tracks/{tid}")
    assert anon.status_code == 200 and anon.json()["title"] == "harbour lights"
    comments = httpx.get(f"{node.url}/tracks/{tid}/comments").json()["comments"]
    assert [c["text"] for c in comments] == ["lovely"]
    page = httpx.get(f"{node.url}/track/{tid}")
    assert page.status_code == 200 and "harbour lights" in page.text


def test_playlist_items_resolve_including_url_only_records(node, scene) -> None:
    fan = scene["fan"]
    lists = fan.http.get("/lists/playlists").json()
    mine = [p for p in (lists if isinstance(lists, list) else lists.get("playlists", [])) if p["name"] == "far away"]
    assert mine, lists
    detail = fan.http.get(f"/lists/playlists/{mine[0]['id']}").json()
    assert [t["title"] for t in detail["tracks"]] == ["harbour lights", "only a url"]
    url_only = detail["tracks"][1]
    assert url_only["source"] == "remote" and url_only["original_file_id"] is None
    # relayed by the node from the record's https audioUrl (same origin for the player's Web Audio), under a file
    # id of its own: plyr.fm's SDK needs one for every track, and parses both remote tracks
    assert url_only["file_id"] == f"remote-{url_only['id']}"
    assert url_only["audio_url"] == f"{node.url}/audio/remote-{url_only['id']}"
    assert [Track.model_validate(t).title for t in detail["tracks"]] == ["harbour lights", "only a url"]


def test_remote_tracks_stay_out_of_the_nodes_feed_but_are_searchable(node, scene) -> None:
    latest = httpx.get(f"{node.url}/tracks/").json()["tracks"]
    assert "harbour lights" not in [t["title"] for t in latest]

    def found() -> bool:
        r = httpx.get(f"{node.url}/search/", params={"q": "harbour lights", "type": "tracks"}).json()
        return "harbour lights" in [x.get("title") for x in r["results"]]

    wait_for(found)


def test_a_deleted_record_leaves_an_unavailable_track_and_the_like(node, scene) -> None:
    one = scene["one"]
    tid = _track_id(node, one["uri"])
    scene["artist"].call("deleteRecord", {"collection": "fm.plyr.track", "rkey": one["uri"].rsplit("/", 1)[1]})
    fan = scene["fan"]
    # the next sync (a sign-in reconciles; a record the PDS no longer has is found gone when read again)
    db(node, "UPDATE remote_tracks SET fetched_at = 0 WHERE track_id = ?", (tid,))
    r = fan.http.post("/sync/reconcile", headers={"X-CSRF-Token": fan.csrf})
    assert r.status_code == 200, r.text
    assert r.json()["remote"]["refreshed"] >= 1
    liked = fan.http.get("/tracks/liked").json()["tracks"]
    assert [t["title"] for t in liked] == ["harbour lights"]
    assert liked[0]["status"] == "unavailable" and liked[0]["playable"] is False


def test_an_inactive_repo_hides_its_tracks(node, scene) -> None:
    tid = _track_id(node, scene["two"]["uri"])
    assert httpx.get(f"{node.url}/tracks/{tid}").status_code == 200
    db(node, "UPDATE users SET repo_status = 'deactivated' WHERE did = ?", (scene["artist_acct"].did,))
    try:
        assert httpx.get(f"{node.url}/tracks/{tid}").status_code == 404
    finally:
        db(node, "UPDATE users SET repo_status = NULL WHERE did = ?", (scene["artist_acct"].did,))


def test_garbage_references_resolve_to_nothing(node, pds, tmp_path: Path) -> None:
    acct = pds.create_account("farjunk")
    repo = Repo(pds, acct)
    bogus = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    for uri in (f"at://{acct.did}/fm.plyr.track/3kaaaaaaaaaaa", f"at://{acct.did}/app.bsky.feed.post/3kaaaaaaaaaaa",
                "at://did:plc:doesnotexist000000000000/fm.plyr.track/3kaaaaaaaaaaa"):
        repo.create("fm.plyr.like", {"subject": {"uri": uri, "cid": bogus}, "createdAt": NOW})
    me = sign_in(node.url, acct)
    r = me.http.post("/sync/reconcile", headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200 and r.json()["adopted"]["likes"] == 0
    assert me.http.get("/tracks/liked").json()["tracks"] == []


def test_listeners_like_and_add_remote_tracks_through_the_node(node, pds, scene) -> None:
    """A like made here of a remote track is an fm.plyr.like in the listener's repo naming the artist's record; a
    track plyr.fm's SDK adds to a playlist by URI is read from its artist's PDS if the node does not know it."""
    artist = scene["artist"]
    fresh = artist.create("fm.plyr.track", {"title": "new tide", "artist": "far artist", "fileType": "mp3",
                                            "createdAt": NOW, "audioUrl": "https://cdn.example.com/t.mp3"})
    acct = pds.create_account("farlist")
    me = sign_in(node.url, acct)
    # by URI: visitors learn nothing new (no PDS is asked for them), a signed-in listener's request reads it
    assert httpx.get(f"{node.url}/tracks/by-uri", params={"uri": fresh["uri"]}).status_code == 404
    r = me.http.get("/tracks/by-uri", params={"uri": fresh["uri"], "cid": fresh["cid"]})
    assert r.status_code == 200 and r.json()["title"] == "new tide"
    tid = r.json()["id"]
    r = me.http.post(f"/tracks/{tid}/like", headers={"X-CSRF-Token": me.csrf})
    assert r.status_code in (200, 201), r.text
    liked = wait_for(lambda: records(pds, acct.did, "fm.plyr.like"))
    assert liked[0]["value"]["subject"] == {"uri": fresh["uri"], "cid": fresh["cid"]}

    another = artist.create("fm.plyr.track", {"title": "low water", "artist": "far artist", "fileType": "mp3",
                                              "createdAt": NOW, "audioUrl": "https://cdn.example.com/w.mp3"})
    r = me.http.post("/lists/playlists", json={"name": "tides"}, headers={"X-CSRF-Token": me.csrf})
    assert r.status_code in (200, 201), r.text
    playlist = r.json()["id"]
    r = me.http.post(f"/lists/playlists/{playlist}/tracks", json={"track_uri": another["uri"],
                                                                  "track_cid": another["cid"]},
                     headers={"X-CSRF-Token": me.csrf})
    assert r.status_code == 200, r.text
    detail = me.http.get(f"/lists/playlists/{playlist}").json()
    assert [t["title"] for t in detail["tracks"]] == ["low water"]
