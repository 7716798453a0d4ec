"""Admins keeping a shared node clean, through the admin API on a real node: a takedown hides a track from every API
and page for everyone but its owner (who sees why) and the admins, its files and its record stay; restore brings it
back; comments and playlists the same; artwork flagged sensitive is blurred; a suspended uploader listens but cannot
upload or comment; a purge waits for the grace period; every action is in the audit log; only admins may act."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import node_env, start_node
from helpers import Person, anonymous, db, person, publish, records, sign_in, stored_files, upload, wait_for


@pytest.fixture(scope="module")
def world(pds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    admin_acct = pds.create_account("modadmin")
    node = start_node([], cwd=tmp_path_factory.mktemp("moderation"), env=node_env(
        pds, PLYRD_AUTH_ADMINS=admin_acct.handle, PLYRD_MODERATION_PURGE_GRACE_DAYS="1"))
    try:
        admin = Person(sign_in(node.url, admin_acct), admin_acct)
        artist, listener = person(node, pds, "modart"), person(node, pds, "modfan")
        assert artist.post("/preferences/", json={"allow_comments": True}).status_code == 200
        tmp = tmp_path_factory.mktemp("modaudio")
        tracks = [upload(artist, tmp, f"mod song {i}", seconds=1.5, frequency=300 + 50 * i) for i in range(3)]
        for t in tracks:
            publish(node, pds, t["id"])
        yield {"node": node, "pds": pds, "admin": admin, "artist": artist, "listener": listener, "tracks": tracks,
               "tmp": tmp}
    finally:
        node.stop()


def _sees(who: Any, track_id: int) -> dict[str, bool]:
    """Where a track shows for someone (a Person or an anonymous client): its detail, the latest feed, its page."""
    get = who.get
    feed = [t["id"] for t in get("/tracks/").json()["tracks"]]
    return {"detail": get(f"/tracks/{track_id}").status_code == 200, "feed": track_id in feed,
            "page": get(f"/track/{track_id}").status_code == 200}


def test_only_admins_act(world) -> None:
    track = world["tracks"][0]["id"]
    for who in (world["artist"], world["listener"]):
        r = who.post(f"/admin/api/tracks/{track}/takedown", json={"reason": "no"})
        assert r.status_code == 403
    assert anonymous(world["node"]).post(f"/admin/api/tracks/{track}/takedown",
                                         json={"reason": "x"}).status_code == 401
    assert world["listener"].get("/admin/api/audit").status_code == 403
    # an admin's cookie without the CSRF header is refused too
    r = world["admin"].me.http.post(f"/admin/api/tracks/{track}/takedown", json={"reason": "x"})
    assert r.status_code == 403
    assert world["admin"].post(f"/admin/api/tracks/{track}/takedown", json={}).status_code == 400  # say why


def test_a_takedown_hides_the_track_from_all_but_owner_and_admins(world) -> None:
    node, admin, artist, listener = world["node"], world["admin"], world["artist"], world["listener"]
    track = world["tracks"][0]
    files_before = stored_files(node)
    assert listener.post(f"/tracks/{track['id']}/like").status_code in (200, 201)
    r = admin.post(f"/admin/api/tracks/{track['id']}/takedown", json={"reason": "not theirs to publish"})
    assert r.status_code == 200, r.text
    anon = anonymous(node)
    for who in (anon, listener):
        assert _sees(who, track["id"]) == {"detail": False, "feed": False, "page": False}
        assert who.get(f"/audio/{track['file_id']}").status_code == 404
    assert track["id"] not in [t["id"] for t in listener.get("/tracks/liked").json()["tracks"]]
    # the owner sees it, and why, but it is discovered by nobody
    mine = artist.get(f"/tracks/{track['id']}").json()
    assert mine["taken_down"] == "not theirs to publish"
    assert _sees(artist, track["id"]) == {"detail": True, "feed": False, "page": True}
    assert "not theirs to publish" in artist.get(f"/track/{track['id']}").text
    # admins see it
    assert admin.get(f"/tracks/{track['id']}").json()["taken_down"] == "not theirs to publish"
    # files and the record stay
    assert stored_files(node) >= files_before
    assert any(r["uri"] == db(node, "SELECT record_uri FROM tracks WHERE id = ?", (track["id"],))[0][0]
               for r in records(world["pds"], artist.did, "fm.plyr.track"))
    # search leaves it out for everyone
    wait_for(lambda: track["title"] not in [x.get("title") for x in anon.get(
        "/search/", params={"q": track["title"], "type": "tracks"}).json()["results"]])

    r = admin.post(f"/admin/api/tracks/{track['id']}/restore", json={"reason": "licence shown"})
    assert r.status_code == 200, r.text
    assert _sees(anon, track["id"])["detail"] and _sees(listener, track["id"])["feed"]
    assert listener.get(f"/tracks/{track['id']}").json()["taken_down"] is None


def test_comments_and_playlists_are_taken_down_for_all_but_their_owner(world) -> None:
    admin, artist, listener = world["admin"], world["artist"], world["listener"]
    track = world["tracks"][1]["id"]
    r = listener.post(f"/tracks/{track}/comments", json={"text": "rude words", "timestamp_ms": 100})
    assert r.status_code in (200, 201), r.text
    comment = r.json()["id"]
    r = admin.post(f"/admin/api/comments/{comment}/takedown", json={"reason": "abuse"})
    assert r.status_code == 200, r.text
    assert artist.get(f"/tracks/{track}/comments").json()["comments"] == []
    own = listener.get(f"/tracks/{track}/comments").json()["comments"]
    assert [c["taken_down"] for c in own] == ["abuse"]
    # nor can anyone else report it: it does not exist for them
    r = artist.post("/moderation/reports", json={"target_type": "comment", "target_id": comment, "reason": "abuse"})
    assert r.status_code == 404

    r = listener.post("/lists/playlists", json={"name": "bad list"})
    playlist = r.json()["id"]
    assert admin.post(f"/admin/api/playlists/{playlist}/takedown", json={"reason": "spam"}).status_code == 200
    assert artist.get(f"/lists/playlists/{playlist}").status_code == 404
    r = artist.post("/moderation/reports", json={"target_type": "playlist", "target_id": playlist, "reason": "spam"})
    assert r.status_code == 404
    assert anonymous(world["node"]).get(f"/playlist/{playlist}").status_code == 404
    assert listener.get(f"/lists/playlists/{playlist}").status_code == 200
    assert admin.post(f"/admin/api/playlists/{playlist}/restore", json={}).status_code == 200
    assert artist.get(f"/lists/playlists/{playlist}").status_code == 200


def test_flagged_artwork_is_sensitive(world) -> None:
    admin, listener = world["admin"], world["listener"]
    track = world["tracks"][1]["id"]
    assert listener.get(f"/tracks/{track}").json()["sensitive"] is False
    r = admin.post(f"/admin/api/tracks/{track}/sensitive", json={"value": "nudity", "reason": "cover"})
    assert r.status_code == 200, r.text
    shown = listener.get(f"/tracks/{track}").json()
    assert shown["sensitive"] is True and shown["operator_labels"] == ["nudity"]
    assert admin.post(f"/admin/api/tracks/{track}/sensitive", json={"value": "bogus"}).status_code == 400
    assert admin.delete(f"/admin/api/tracks/{track}/sensitive").status_code == 200
    assert listener.get(f"/tracks/{track}").json()["sensitive"] is False


def test_a_suspended_uploader_listens_but_cannot_upload_or_comment(world) -> None:
    admin, artist, node = world["admin"], world["artist"], world["node"]
    track = world["tracks"][2]["id"]
    r = admin.post(f"/admin/api/users/{artist.did}/suspend", json={"reason": "repeated copyright claims"})
    assert r.status_code == 200, r.text
    files = stored_files(node)
    r = artist.me.upload(Path(__file__), title="nope")
    assert r.status_code == 403 and "suspended" in r.json()["detail"]
    assert stored_files(node) == files  # the refused upload left nothing
    r = artist.post(f"/tracks/{track}/comments", json={"text": "hi", "timestamp_ms": 0})
    assert r.status_code == 403
    assert artist.get("/tracks/liked").status_code == 200 and artist.get(f"/tracks/{track}").status_code == 200
    assert admin.post(f"/admin/api/users/{artist.did}/restore", json={}).status_code == 200
    r = artist.post(f"/tracks/{track}/comments", json={"text": "hi again", "timestamp_ms": 0})
    assert r.status_code in (200, 201), r.text


def test_purge_waits_for_the_grace_period_then_removes_the_files(world) -> None:
    admin, node, artist = world["admin"], world["node"], world["artist"]
    extra = upload(artist, world["tmp"], "to be purged", seconds=1.2, frequency=880)
    assert admin.post(f"/admin/api/tracks/{extra['id']}/purge", json={}).status_code == 400  # not taken down
    assert admin.post(f"/admin/api/tracks/{extra['id']}/takedown", json={"reason": "stolen"}).status_code == 200
    r = admin.post(f"/admin/api/tracks/{extra['id']}/purge", json={})
    assert r.status_code == 400 and "purge_grace_days" in r.json()["detail"]
    db(node, "UPDATE tracks SET taken_down_at = taken_down_at - 2 * 86400 WHERE id = ?", (extra["id"],))
    assert admin.post(f"/admin/api/tracks/{extra['id']}/purge", json={"reason": "gone"}).status_code == 200
    assert extra["file_id"] not in stored_files(node)
    left = artist.get(f"/tracks/{extra['id']}").json()  # a tombstone its owner still sees, with the reason
    assert left["taken_down"] == "stolen" and left["playable"] is False
    assert admin.post(f"/admin/api/tracks/{extra['id']}/purge", json={}).status_code == 400  # once
    # the artist's record is theirs and stays; signing in again does not bring it back as a new track
    uri = db(node, "SELECT record_uri FROM tracks WHERE id = ?", (extra["id"],))[0][0]
    again = sign_in(node.url, artist.account)
    r = again.http.post("/sync/reconcile", headers={"X-CSRF-Token": again.csrf})
    assert r.status_code == 200, r.text
    assert db(node, "SELECT count(*) FROM tracks WHERE record_uri = ?", (uri,))[0][0] == 1
    assert anonymous(node).get(f"/tracks/{extra['id']}").status_code == 404


def test_reports_fold_and_close_with_the_action(world) -> None:
    admin, listener, artist = world["admin"], world["listener"], world["artist"]
    track = world["tracks"][2]["id"]
    for who in (listener, world["admin"]):
        r = who.post("/moderation/reports", json={"target_type": "track", "target_id": track, "reason": "spam"})
        assert r.status_code == 201, r.text
    cases = [c for c in admin.get("/admin/api/reports").json()["reports"] if c["target_id"] == str(track)]
    assert len(cases) == 1 and cases[0]["entries"] == 2
    case = cases[0]["id"]
    r = admin.post(f"/admin/api/tracks/{track}/takedown", json={"reason": "spam", "report_id": case})
    assert r.status_code == 200, r.text
    assert not [c for c in admin.get("/admin/api/reports").json()["reports"] if c["id"] == case]
    closed = admin.get("/admin/api/reports", params={"state": "resolved"}).json()["reports"]
    assert [c["resolution"] for c in closed if c["id"] == case] == ["taken down: spam"]
    assert admin.post(f"/admin/api/tracks/{track}/restore", json={}).status_code == 200
    del artist


def test_every_action_is_in_the_audit_log(world) -> None:
    entries = world["admin"].get("/admin/api/audit").json()["entries"]
    actions = {e["action"] for e in entries}
    assert {"takedown", "restore", "flag_sensitive", "clear_sensitive", "suspend", "unsuspend", "purge"} <= actions
    first = next(e for e in entries if e["action"] == "suspend")
    assert first["actor"] == world["admin"].did and first["reason"] == "repeated copyright claims"
    assert first["target_id"] == world["artist"].did and first["created_at"] > 0
