"""Listeners' reports (POST /moderation/reports, plyr.fm's shape) through a real node, the real PDS for sign-in and a
real scan of a music folder: every kind of subject, cases that fold reports of one subject, one entry per reporter,
validation, subjects hidden from the reporter (404, as opening them would: a report cannot probe), sign-in, CSRF and
the 10-an-hour limit, and no row for a refused report. Also GET /moderation/sensitive-images (the operator's flags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import ServedNode, node_env, start_node
from helpers import Person, anonymous, db, person
from library_support import scan_library


@dataclass
class World:
    node: ServedNode
    artist: Person
    track: dict[str, Any]  # the artist's, with artwork
    comment: int  # the artist's comment on it
    playlist: str  # the artist's public playlist
    private_playlist: str
    library_track: int  # from the node's music folder: only librarian.test (auth.library_listeners) and admins see it


@pytest.fixture(scope="module")
def world(pds, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    music = tmp_path_factory.mktemp("music")
    make_audio(music / "Folder Song.flac", "flac", seconds=1.0, frequency=480.0,
               tags={"title": "Folder Song", "artist": "Somebody"})
    node = start_node([], cwd=tmp_path_factory.mktemp("reports"),
                      env=node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music), PLYRD_LIBRARY_WATCH="false",
                                   PLYRD_AUTH_LIBRARY_LISTENERS="librarian.test"))
    try:
        scan_library(node, tracks=1)
        artist = person(node, pds, "rpartist")
        src = make_audio(tmp_path_factory.mktemp("up") / "song.mp3", "mp3", seconds=1.0, frequency=600.0)
        r = artist.me.upload(src, image=("c.jpg", jpeg_bytes(64, 64), "image/jpeg"), title="Reported Song")
        assert r.status_code == 200, r.text
        done = artist.me.wait(r.json()["upload_id"])[-1]
        assert done["status"] == "completed", done
        track = artist.get(f"/tracks/{done['track_id']}").json()
        assert artist.post("/preferences/", json={"allow_comments": True}).status_code == 200
        c = artist.post(f"/tracks/{track['id']}/comments", json={"text": "first", "timestamp_ms": 0})
        assert c.status_code in (200, 201), c.text
        lists = [artist.post("/lists/playlists", json={"name": n, "is_private": p}) for n, p in
                 (("open list", False), ("secret list", True))]
        assert all(r.status_code == 200 for r in lists), [r.text for r in lists]
        [(library_track,)] = db(node, "SELECT id FROM tracks WHERE source = 'library'")
        yield World(node, artist, track, c.json()["id"], lists[0].json()["id"], lists[1].json()["id"], library_track)
    finally:
        node.stop()


@pytest.fixture(scope="module")
def refused(world: World, pds) -> Person:  # type: ignore[no-untyped-def]
    """One listener for the invalid reports: six refusals stay under the ten an hour."""
    return person(world.node, pds, "rpbad")


def report(who: Person | httpx.Client, **body: Any) -> httpx.Response:
    return who.post("/moderation/reports", json=body)


def cases(node: ServedNode, target_type: str, target_id: str) -> list[tuple[Any, ...]]:
    return db(node, "SELECT id, state, reason, entries FROM reports WHERE target_type = ? AND target_id = ?",
              (target_type, target_id))


def entries(node: ServedNode, reporter: str) -> list[tuple[Any, ...]]:
    return db(node, "SELECT report_id, reason, description FROM report_entries WHERE reporter = ? ORDER BY id",
              (reporter,))


def test_every_kind_of_subject_is_received(world: World, pds) -> None:
    fan = person(world.node, pds, "rpfan")
    subjects = [("track", world.track["id"]), ("comment", str(world.comment)), ("playlist", world.playlist),
                ("artist", world.artist.did), ("tag", "drum and bass")]
    for kind, target in subjects:
        r = report(fan, target_type=kind, target_id=target, reason="spam", description=f"about a {kind}",
                   target_name="ignored", target_url="https://example.com/ignored")
        assert r.status_code == 201, (kind, r.text)
        body = r.json()
        assert body["received"] is True and body["joined_existing"] is False and isinstance(body["report_id"], int)
        assert cases(world.node, kind, str(target)) == [(body["report_id"], "open", "spam", 1)]
    assert [(e[1], e[2]) for e in entries(world.node, fan.did)] == [("spam", f"about a {k}") for k, _ in subjects]


def test_reports_of_one_track_fold_into_one_case(world: World, pds) -> None:
    track = str(world.track["id"])
    one, two = person(world.node, pds, "rpone"), person(world.node, pds, "rptwo")
    already = cases(world.node, "track", track)  # the test above opened it, or this one does
    first = report(one, target_type="track", target_id=track, reason="copyright")
    second = report(two, target_type="track", target_id=track, reason="abuse", description="  hurtful words  ")
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["joined_existing"] is bool(already) and second.json()["joined_existing"] is True
    case = first.json()["report_id"]
    assert second.json()["report_id"] == case
    [(case_id, state, _, count)] = cases(world.node, "track", track)
    assert case_id == case and state == "open"
    assert entries(world.node, one.did) == [(case, "copyright", None)]
    assert entries(world.node, two.did) == [(case, "abuse", "hurtful words")]
    assert count == len(db(world.node, "SELECT 1 FROM report_entries WHERE report_id = ?", (case,))) >= 2

    # The same listener again: their one entry in the case is updated, not added to.
    again = report(one, target_type="track", target_id=track, reason="other", description="it was a cover, sorry")
    assert again.status_code == 201 and again.json() == {"received": True, "report_id": case,
                                                          "joined_existing": True}
    assert entries(world.node, one.did) == [(case, "other", "it was a cover, sorry")]
    assert cases(world.node, "track", track)[0][3] == count

    # Once the case is closed, a new report of the same track opens a new one.
    db(world.node, "UPDATE reports SET state = 'resolved' WHERE id = ?", (case,))
    fresh = report(two, target_type="track", target_id=track, reason="spam")
    assert fresh.status_code == 201 and fresh.json()["joined_existing"] is False
    assert fresh.json()["report_id"] != case
    assert [c[1] for c in cases(world.node, "track", track)] == ["resolved", "open"]


@pytest.mark.parametrize(("body", "words"), [
    ({"target_type": "track", "reason": "rude"}, "reason must be one of"),
    ({"target_type": "video", "reason": "spam"}, "target_type must be one of"),
    ({"target_type": "track", "reason": "spam", "description": "x" * 1001}, "at most 1000"),
    ({"target_type": "track", "reason": "spam", "description": 7}, "description must be a string"),
    ({"target_type": "track", "reason": "spam", "target_id": ""}, "target_id"),
    ({"target_type": "track", "reason": "spam", "extra": 1}, "unknown fields: extra"),
])
def test_invalid_reports_are_refused(world: World, refused: Person, body: dict[str, Any], words: str) -> None:
    who = refused
    r = report(who, **{"target_id": str(world.track["id"]), **body})
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert entries(world.node, who.did) == []


def test_a_description_of_exactly_1000_characters_is_taken(world: World, pds) -> None:
    who = person(world.node, pds, "rplong")
    r = report(who, target_type="tag", target_id="long notes", reason="other", description="é" * 1000)
    assert r.status_code == 201, r.text
    assert entries(world.node, who.did)[0][2] == "é" * 1000


def test_what_the_reporter_cannot_see_is_not_found(world: World, pds) -> None:
    """A library track (the reporter is not a library listener), someone's private playlist, a taken-down track,
    and what does not exist all answer 404 alike, and leave nothing behind."""
    who = person(world.node, pds, "rpprobe")
    hidden = [("track", str(world.library_track)), ("playlist", world.private_playlist), ("track", "99999999"),
              ("track", "not-a-number"), ("comment", "99999999"), ("playlist", "00000000-0000-4000-8000-000000000000"),
              ("artist", "did:plc:nobodyhereatall0000000"), ("artist", "someone.example.com"), ("album", "nope")]
    for kind, target in hidden:
        r = report(who, target_type=kind, target_id=target, reason="abuse")
        assert r.status_code == 404, (kind, target, r.text)
    # its owner still reports their private playlist (they see it); nobody else learns it exists
    assert report(world.artist, target_type="playlist", target_id=world.private_playlist,
                  reason="other").status_code == 201
    assert entries(world.node, who.did) == []
    assert cases(world.node, "track", str(world.library_track)) == []


def test_a_taken_down_track_cannot_be_reported_by_others(world: World, pds, tmp_path: Path) -> None:
    who = person(world.node, pds, "rptaken")
    upload = world.artist.me.upload(make_audio(tmp_path / "t.mp3", "mp3", seconds=1.0, frequency=300.0),
                                    title="Gone Song")
    done = world.artist.me.wait(upload.json()["upload_id"])[-1]
    db(world.node, "UPDATE tracks SET taken_down = 'by the admins', taken_down_at = 1 WHERE id = ?",
       (done["track_id"],))
    r = report(who, target_type="track", target_id=str(done["track_id"]), reason="spam")
    assert r.status_code == 404, r.text
    assert entries(world.node, who.did) == []


def test_anonymous_and_cross_site_and_csrf_less_reports_are_refused(world: World, pds) -> None:
    body = {"target_type": "track", "target_id": str(world.track["id"]), "reason": "spam"}
    before = db(world.node, "SELECT count(*) FROM report_entries")
    r = anonymous(world.node).post("/moderation/reports", json=body)
    assert r.status_code == 401, r.text
    who = person(world.node, pds, "rpcsrf")
    r = who.me.http.post("/moderation/reports", json=body)  # the session cookie without its X-CSRF-Token
    assert r.status_code == 403 and "CSRF" in r.json()["detail"], r.text
    r = who.post("/moderation/reports", json=body, headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 403, r.text
    r = who.me.http.post("/moderation/reports", content=json.dumps(body),  # a form can send text/plain cross-site
                         headers={"X-CSRF-Token": who.me.csrf, "Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert db(world.node, "SELECT count(*) FROM report_entries") == before


def test_the_eleventh_report_in_an_hour_is_refused(world: World, pds) -> None:
    who = person(world.node, pds, "rplimit")
    for n in range(10):
        r = report(who, target_type="tag", target_id=f"tag {n}", reason="spam")
        assert r.status_code == 201, (n, r.text)
    r = report(who, target_type="tag", target_id="tag 10", reason="spam")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
    assert "reports" in r.json()["detail"]
    assert len(entries(world.node, who.did)) == 10 and cases(world.node, "tag", "tag 10") == []
    # someone else is not held back by them
    assert report(person(world.node, pds, "rpother"), target_type="tag", target_id="tag 10",
                  reason="spam").status_code == 201


def test_sensitive_images_list_the_operators_flags(world: World, pds) -> None:
    http = anonymous(world.node)
    r = http.get("/moderation/sensitive-images")
    assert r.status_code == 200 and r.json() == {"image_ids": [], "urls": []}
    assert r.headers["Cache-Control"] == "public, s-maxage=300, max-age=60"
    track = world.track
    # an artist's own content notice is not the operator's list (the track JSON's `sensitive` carries it)
    db(world.node, "UPDATE tracks SET self_labels = '[\"nudity\"]' WHERE id = ?", (track["id"],))
    assert http.get("/moderation/sensitive-images").json() == {"image_ids": [], "urls": []}
    db(world.node, "UPDATE tracks SET operator_labels = '[\"copyright-violation\", \"sexual\"]' WHERE id = ?",
       (track["id"],))
    body = http.get("/moderation/sensitive-images").json()
    assert track["image_url"] and track["thumbnail_url"]
    assert set(body["urls"]) == {track["image_url"], track["thumbnail_url"]}
    shas = {u.rsplit("/", 1)[1] for u in body["urls"]}
    assert shas <= set(body["image_ids"]) and len(body["image_ids"]) == 3  # original, display, thumbnail
    for sha in body["image_ids"]:  # each names an image the node serves
        assert http.get(f"/images/{sha}").status_code == 200
    signed_in = world.artist.get("/moderation/sensitive-images")
    assert signed_in.json() == body and signed_in.headers["Cache-Control"].startswith("private")
    # a flagged track nobody but its owner may see leaves the public list
    db(world.node, "UPDATE tracks SET taken_down = 'x' WHERE id = ?", (track["id"],))
    try:
        assert http.get("/moderation/sensitive-images").json() == {"image_ids": [], "urls": []}
    finally:
        db(world.node, "UPDATE tracks SET taken_down = NULL, operator_labels = '[]', self_labels = '[]' WHERE id = ?",
           (track["id"],))
