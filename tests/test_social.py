"""The social layer through a real node process and the real PDS: likes and the liked list, timed comments, play
counting and analytics, stats, now playing, preferences and the shared queue; every bad input and authorization
check; and the records the outbox writes to each person's PDS (read back with listRecords and validated)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import ServedNode, node_fixture
from helpers import Artist, Person, anonymous, db, person, publish, upload
from pds_harness import Account, authorize_headless

from plyrd.atproto.lexicon import validate
from plyrd.atproto.tids import tid_for_time
from plyrd.catalog.now_playing import NowPlaying, Playing
from plyrd.catalog.plays import dedup_window, report_after

node = node_fixture("social")


@pytest.fixture(scope="module")
def artist(node, pds) -> Person:
    return person(node, pds, "artist")


@pytest.fixture(scope="module")
def fan(node, pds) -> Person:
    return person(node, pds, "fan")


@pytest.fixture(scope="module")
def stranger(node, pds) -> Person:
    return person(node, pds, "stranger")


@pytest.fixture(scope="module")
def tracks(node, pds, artist, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Three of the artist's tracks: `song` (likes, comments, plays), `full` (the 20-comment limit) and `draft`
    (kept without a record, to show what cannot be liked yet)."""
    tmp = tmp_path_factory.mktemp("social-audio")
    made = {name: upload(artist, tmp, name, seconds=4, frequency=f)
            for name, f in (("song", 330.0), ("full", 440.0), ("draft", 550.0), ("extra", 660.0))}
    for made_track in made.values():
        publish(node, pds, made_track["id"])
    # As if not yet published (or its publishing still pending): no strongRef to point at.
    db(node, "UPDATE tracks SET record_uri = NULL, record_cid = NULL WHERE id = ?", (made["draft"]["id"],))
    return made


def list_records(pds: Any, did: str, collection: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords",
                  params={"repo": did, "collection": collection, "limit": 100}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["records"]


def wait_records(pds: Any, did: str, collection: str, ok: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 30) -> list[dict[str, Any]]:
    """Poll the PDS until the outbox has brought `collection` to the state `ok` accepts."""
    deadline = time.monotonic() + timeout
    while True:
        found = list_records(pds, did, collection)
        if ok(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{collection} of {did} never reached the expected state: {found}")
        time.sleep(0.25)


# ---- likes


def test_like_unlike_counts_and_the_records(node, pds, artist, fan, stranger, tracks) -> None:
    song = tracks["song"]
    uri, cid = publish(node, pds, song["id"])

    r = fan.post(f"/tracks/{song['id']}/like")
    assert r.status_code == 200, r.text
    assert r.json() == {"liked": True, "like_count": 1}
    again = fan.post(f"/tracks/{song['id']}/like")  # idempotent, as plyr.fm: the same answer, nothing changes
    assert again.status_code == 200 and again.json() == {"liked": True, "like_count": 1}
    assert stranger.post(f"/tracks/{song['id']}/like").json()["like_count"] == 2

    who = anonymous(node).get(f"/tracks/{song['id']}/likes").json()  # public
    assert who["count"] == 2 and [u["did"] for u in who["users"]] == [stranger.did, fan.did]  # newest first
    assert who["users"][1]["handle"] == fan.handle and who["users"][1]["liked_at"]

    # the fm.plyr.like in the fan's PDS: a strongRef to the exact track version
    likes = wait_records(pds, fan.did, "fm.plyr.like", lambda rs: len(rs) == 1)
    assert likes[0]["value"]["subject"] == {"uri": uri, "cid": cid}
    validate("fm.plyr.like", likes[0]["value"])
    rkey = db(node, "SELECT rkey FROM likes WHERE did = ? AND track_id = ?", (fan.did, song["id"]))[0][0]
    assert likes[0]["uri"] == f"at://{fan.did}/fm.plyr.like/{rkey}"

    r = fan.delete(f"/tracks/{song['id']}/like")
    assert r.status_code == 200 and r.json() == {"liked": False, "like_count": 1}
    again = fan.delete(f"/tracks/{song['id']}/like")  # nothing to unlike: the same answer, as plyr.fm
    assert again.status_code == 200 and again.json() == {"liked": False, "like_count": 1}
    wait_records(pds, fan.did, "fm.plyr.like", lambda rs: rs == [])
    assert anonymous(node).get(f"/tracks/{song['id']}/likes").json()["count"] == 1


def test_like_bad_input_and_authorization(node, fan, tracks) -> None:
    assert fan.post("/tracks/999999/like").status_code == 404
    assert fan.delete("/tracks/999999/like").status_code == 404
    assert anonymous(node).get("/tracks/999999/likes").status_code == 404
    r = fan.post(f"/tracks/{tracks['draft']['id']}/like")
    assert r.status_code == 422 and "missing_atproto_record" in r.json()["detail"]  # plyr.fm's 422
    assert db(node, "SELECT count(*) FROM likes WHERE track_id = ?", (tracks["draft"]["id"],)) == [(0,)]

    guest = anonymous(node)
    assert guest.post(f"/tracks/{tracks['song']['id']}/like").status_code == 401
    assert guest.delete(f"/tracks/{tracks['song']['id']}/like").status_code == 401
    assert guest.get("/tracks/liked").status_code == 401
    assert guest.put("/lists/liked/reorder", json={"items": []}).status_code == 401
    # a cookie session without its CSRF header
    assert fan.me.http.post(f"/tracks/{tracks['song']['id']}/like").status_code == 403


def test_liked_list_order_and_reorder(node, pds, artist, tracks, tmp_path: Path) -> None:
    listener = person(node, pds, "lister")
    ids = [tracks[n]["id"] for n in ("song", "full", "extra")]
    for track_id in ids:
        assert listener.post(f"/tracks/{track_id}/like").status_code == 200
    listed = listener.get("/tracks/liked").json()["tracks"]
    assert [t["id"] for t in listed] == ids[::-1]  # newest like first
    assert all(t["is_liked"] and t["like_count"] >= 1 for t in listed)

    new_order = [ids[1], ids[2], ids[0]]
    r = listener.put("/lists/liked/reorder", json={"items": new_order})
    assert r.status_code == 200 and r.json()["track_ids"] == new_order
    (rkey,) = db(node, "SELECT rkey FROM liked_lists WHERE did = ?", (listener.did,))[0]
    assert r.json()["uri"] == f"at://{listener.did}/fm.plyr.list/{rkey}" and r.json()["cid"]  # plyr.fm's {uri, cid}
    assert [t["id"] for t in listener.get("/tracks/liked").json()["tracks"]] == new_order

    # plyr.fm's strongRef items work too
    refs = {t: publish(node, pds, t) for t in ids}
    items = [{"uri": refs[t][0], "cid": refs[t][1]} for t in ids]
    assert listener.put("/lists/liked/reorder", json={"items": items}).json()["track_ids"] == ids

    wrong = [
        [ids[0], ids[1]],                      # one missing
        [ids[0], ids[1], ids[2], ids[2]],      # a repeat
        [ids[0], ids[1], tracks["draft"]["id"]],  # not liked
        [ids[0], ids[1], "x"],                 # not an item
    ]
    for items in wrong:
        r = listener.put("/lists/liked/reorder", json={"items": items})
        assert r.status_code == 400, (items, r.text)
        assert [t["id"] for t in listener.get("/tracks/liked").json()["tracks"]] == ids  # nothing changed
    assert listener.put("/lists/liked/reorder", json={"items": "no"}).status_code == 400

    # a new like goes in front of a reordered list
    other = upload(artist, tmp_path, "later", seconds=2, frequency=770.0)
    publish(node, pds, other["id"])
    listener.post(f"/tracks/{other['id']}/like")
    assert [t["id"] for t in listener.get("/tracks/liked").json()["tracks"]] == [other["id"], *ids]

    # the "Liked Tracks" list record on the listener's PDS follows, in their order
    order = [other["id"], *ids]
    uris = {t: db(node, "SELECT record_uri FROM tracks WHERE id = ?", (t,))[0][0] for t in order}
    liked = wait_records(pds, listener.did, "fm.plyr.list", lambda found: any(
        r["value"].get("listType") == "liked"
        and [i["subject"]["uri"] for i in r["value"]["items"]] == [uris[t] for t in order] for r in found))
    record = next(r for r in liked if r["value"]["listType"] == "liked")["value"]
    validate("fm.plyr.list", record)
    assert record["name"] == "Liked Tracks"
    listener.delete(f"/tracks/{ids[0]}/like")
    wait_records(pds, listener.did, "fm.plyr.list", lambda found: any(
        r["value"].get("listType") == "liked" and len(r["value"]["items"]) == 3 for r in found))
    assert len([r for r in list_records(pds, listener.did, "fm.plyr.list") if r["value"]["listType"] == "liked"]) == 1


def test_public_liked_list_follows_the_preference(node, fan, stranger, tracks) -> None:
    fan.post(f"/tracks/{tracks['extra']['id']}/like")
    guest = anonymous(node)
    r = guest.get(f"/users/{fan.handle}/likes")
    assert r.status_code == 403  # show_liked_on_profile is off by default
    assert fan.get(f"/users/{fan.handle}/likes").status_code == 200  # always visible to its owner
    assert fan.post("/preferences/", json={"show_liked_on_profile": True}).status_code == 200
    body = guest.get(f"/users/{fan.handle}/likes").json()
    assert body["user"]["did"] == fan.did and body["count"] == len(body["tracks"]) >= 1
    assert tracks["extra"]["id"] in [t["id"] for t in body["tracks"]]
    assert stranger.get(f"/users/{fan.did}/likes").status_code == 200  # a DID works where a handle does
    assert guest.get("/users/nobody.test/likes").status_code == 404


# ---- comments


def test_comments_need_the_artist_to_turn_them_on(node, artist, fan, tracks) -> None:
    song = tracks["song"]["id"]
    r = fan.post(f"/tracks/{song}/comments", json={"text": "lovely", "timestamp_ms": 1000})
    assert r.status_code == 403 and "comments" in r.json()["detail"]
    body = anonymous(node).get(f"/tracks/{song}/comments").json()
    assert body == {"comments": [], "count": 0, "comments_enabled": False}


def test_comment_create_edit_delete_and_records(node, pds, artist, fan, stranger, tracks) -> None:
    song = tracks["song"]
    uri, cid = publish(node, pds, song["id"])
    assert artist.post("/preferences/", json={"allow_comments": True}).json()["allow_comments"] is True

    r = fan.post(f"/tracks/{song['id']}/comments", json={"text": "  the drop at 3s  ", "timestamp_ms": 3000})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["text"] == "the drop at 3s" and first["timestamp_ms"] == 3000 and first["user_did"] == fan.did
    assert first["user_handle"] == fan.handle and first["updated_at"] is None
    early = stranger.post(f"/tracks/{song['id']}/comments", json={"text": "intro 🎹", "timestamp_ms": 0}).json()

    listing = anonymous(node).get(f"/tracks/{song['id']}/comments").json()
    assert listing["comments_enabled"] is True and listing["count"] == 2
    assert [c["id"] for c in listing["comments"]] == [early["id"], first["id"]]  # by position

    records = wait_records(pds, fan.did, "fm.plyr.comment", lambda rs: len(rs) == 1)
    value = records[0]["value"]
    validate("fm.plyr.comment", value)
    assert value["subject"] == {"uri": uri, "cid": cid}
    assert value["text"] == "the drop at 3s" and value["timestampMs"] == 3000 and "updatedAt" not in value

    # only the author edits or deletes
    assert stranger.patch(f"/tracks/comments/{first['id']}", json={"text": "mine now"}).status_code == 403
    assert artist.delete(f"/tracks/comments/{first['id']}").status_code == 403
    assert anonymous(node).patch(f"/tracks/comments/{first['id']}", json={"text": "x"}).status_code == 401
    assert anonymous(node).delete(f"/tracks/comments/{first['id']}").status_code == 401

    r = fan.patch(f"/tracks/comments/{first['id']}", json={"text": "the drop at 3 s!"})
    assert r.status_code == 200 and r.json()["text"] == "the drop at 3 s!" and r.json()["updated_at"]
    records = wait_records(pds, fan.did, "fm.plyr.comment",
                           lambda rs: len(rs) == 1 and rs[0]["value"]["text"] == "the drop at 3 s!")
    edited = records[0]["value"]
    validate("fm.plyr.comment", edited)
    assert edited["updatedAt"] and edited["createdAt"] == value["createdAt"]  # same record, same birth
    assert records[0]["uri"].endswith(db(node, "SELECT rkey FROM comments WHERE id = ?", (first["id"],))[0][0])

    assert fan.delete(f"/tracks/comments/{first['id']}").json() == {"deleted": True}
    assert fan.delete(f"/tracks/comments/{first['id']}").status_code == 404
    wait_records(pds, fan.did, "fm.plyr.comment", lambda rs: rs == [])
    assert anonymous(node).get(f"/tracks/{song['id']}/comments").json()["count"] == 1
    # the stranger's comment is still on their own PDS
    validate("fm.plyr.comment", wait_records(pds, stranger.did, "fm.plyr.comment", lambda rs: len(rs) == 1)[0]
             ["value"])


def test_comment_bad_input(node, artist, fan, tracks) -> None:
    artist.post("/preferences/", json={"allow_comments": True})
    song = tracks["song"]["id"]
    duration_ms = round(tracks["song"]["duration"] * 1000)
    cases = [
        ({"text": "", "timestamp_ms": 0}, 400),
        ({"text": "   ", "timestamp_ms": 0}, 400),
        ({"text": "x" * 1001, "timestamp_ms": 0}, 400),
        ({"text": "é" * 600, "timestamp_ms": 0}, 400),  # 600 characters but 1200 UTF-8 bytes: over the lexicon
        ({"text": 5, "timestamp_ms": 0}, 400),
        ({"text": "ok", "timestamp_ms": -1}, 400),
        ({"text": "ok", "timestamp_ms": duration_ms + 1000}, 400),
        ({"text": "ok", "timestamp_ms": "10"}, 400),
        ({"text": "ok"}, 400),
    ]
    before = db(node, "SELECT count(*) FROM comments")
    for body, status in cases:
        r = fan.post(f"/tracks/{song}/comments", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]
    assert db(node, "SELECT count(*) FROM comments") == before
    ok = fan.post(f"/tracks/{song}/comments", json={"text": "x" * 1000, "timestamp_ms": duration_ms})
    assert ok.status_code == 200  # exactly at both limits
    assert fan.patch(f"/tracks/comments/{ok.json()['id']}", json={"text": "y" * 1001}).status_code == 400
    assert fan.patch(f"/tracks/comments/{ok.json()['id']}", json={}).status_code == 400
    assert fan.patch("/tracks/comments/999999", json={"text": "x"}).status_code == 404
    assert fan.post("/tracks/999999/comments", json={"text": "x", "timestamp_ms": 0}).status_code == 404
    assert anonymous(node).get("/tracks/999999/comments").status_code == 404
    assert anonymous(node).post(f"/tracks/{song}/comments", json={"text": "x", "timestamp_ms": 0}).status_code == 401
    r = fan.post(f"/tracks/{tracks['draft']['id']}/comments", json={"text": "x", "timestamp_ms": 0})
    assert r.status_code == 409
    fan.delete(f"/tracks/comments/{ok.json()['id']}")


def test_twenty_comments_per_track(node, artist, fan, stranger, tracks) -> None:
    artist.post("/preferences/", json={"allow_comments": True})
    full = tracks["full"]["id"]
    for i in range(20):
        who = fan if i % 2 else stranger
        r = who.post(f"/tracks/{full}/comments", json={"text": f"comment {i}", "timestamp_ms": i * 100})
        assert r.status_code == 200, r.text
    r = fan.post(f"/tracks/{full}/comments", json={"text": "one too many", "timestamp_ms": 50})
    assert r.status_code == 400 and "20" in r.json()["detail"]
    listing = anonymous(node).get(f"/tracks/{full}/comments").json()
    assert listing["count"] == 20
    assert [c["timestamp_ms"] for c in listing["comments"]] == sorted(c["timestamp_ms"] for c in listing["comments"])
    # turning comments off hides them (plyr.fm's behaviour) and refuses new ones with 403
    artist.post("/preferences/", json={"allow_comments": False})
    assert anonymous(node).get(f"/tracks/{full}/comments").json()["comments_enabled"] is False
    assert fan.post(f"/tracks/{full}/comments", json={"text": "x", "timestamp_ms": 0}).status_code == 403
    artist.post("/preferences/", json={"allow_comments": True})


# ---- plays


def test_play_counting_dedup_and_anonymous_cookie(node, pds, artist, tracks) -> None:
    listener = person(node, pds, "listener")
    track = tracks["extra"]
    start = track_count = db(node, "SELECT play_count FROM tracks WHERE id = ?", (track["id"],))[0][0]

    r = listener.post(f"/tracks/{track['id']}/play", json={"listened_ms": 2000})
    assert r.status_code == 200 and r.json() == {"play_count": start + 1, "counted": True}
    # a second report inside the window (clamp(4 s, 30 s, 1 h) = 30 s) is not counted
    r = listener.post(f"/tracks/{track['id']}/play")
    assert r.json() == {"play_count": start + 1, "counted": False}

    # anonymous: the first report sets the HttpOnly cookie that identifies the listener afterwards
    guest = anonymous(node)
    r = guest.post(f"/tracks/{track['id']}/play")
    assert r.status_code == 200 and r.json()["counted"] is True
    cookie = r.headers["set-cookie"]
    assert "plyr_play_id=" in cookie and "HttpOnly" in cookie and "Max-Age" in cookie
    assert guest.post(f"/tracks/{track['id']}/play").json()["counted"] is False  # the cookie came back
    assert "set-cookie" not in guest.post(f"/tracks/{track['id']}/play").headers
    assert anonymous(node).post(f"/tracks/{track['id']}/play").json()["counted"] is True  # another browser
    track_count = start + 3
    assert db(node, "SELECT play_count FROM tracks WHERE id = ?", (track["id"],)) == [(track_count,)]
    events = db(node, "SELECT listener, listened_ms FROM play_events WHERE track_id = ? ORDER BY id", (track["id"],))
    assert events[-3][0] == listener.did and events[-3][1] == 2000
    assert events[-2][0].startswith("anon:") and events[-1][0].startswith("anon:") and events[-2] != events[-1]

    # once the window has passed, the same listener counts again (the window is moved by rewriting the event time)
    db(node, "UPDATE play_events SET played_at = played_at - 31 WHERE listener = ?", (listener.did,))
    assert listener.post(f"/tracks/{track['id']}/play").json() == {"play_count": track_count + 1, "counted": True}
    assert listener.get(f"/tracks/{track['id']}").json()["id"] == track["id"]


def test_play_bad_input(node, fan, tracks) -> None:
    track = tracks["extra"]["id"]
    assert fan.post("/tracks/999999/play").status_code == 404
    # reported before min(30 s, half of a 4 s track) = 2 s of listening
    r = fan.post(f"/tracks/{track}/play", json={"listened_ms": 500})
    assert r.status_code == 400 and "2 s" in r.json()["detail"]
    assert fan.post(f"/tracks/{track}/play", json={"listened_ms": "lots"}).status_code == 400
    assert fan.me.http.post(f"/tracks/{track}/play", content=b"[1]",
                            headers={"X-CSRF-Token": fan.me.csrf}).status_code == 400


def test_teal_scrobble_only_when_enabled(node, pds, tracks) -> None:
    listener = person(node, pds, "scrobbler")
    track = tracks["song"]
    assert listener.post(f"/tracks/{track['id']}/play").json()["counted"] is True
    time.sleep(1)
    assert list_records(pds, listener.did, "fm.teal.feed.play") == []  # scrobbling is off by default

    prefs = listener.post("/preferences/", json={"enable_teal_scrobbling": True}).json()
    assert prefs["enable_teal_scrobbling"] is True and prefs["teal_needs_reauth"] is False  # app passwords cover it
    db(node, "UPDATE play_events SET played_at = played_at - 31 WHERE listener = ?", (listener.did,))
    before = time.time()
    assert listener.post(f"/tracks/{track['id']}/play", json={"listened_ms": 2500}).json()["counted"] is True
    plays = wait_records(pds, listener.did, "fm.teal.feed.play", lambda rs: len(rs) == 1)
    play = plays[0]["value"]
    validate("fm.teal.feed.play", play)
    assert play["trackName"] == track["title"] and play["artists"] == [{"artistName": track["artist"]}]
    assert play["originUri"] == f"{node.url}/track/{track['id']}" and play["duration"] == round(track["duration"])
    played = datetime.fromisoformat(play["playedTime"].replace("Z", "+00:00"))
    assert before - 3.5 < played.timestamp() < time.time()  # when the listening started
    assert plays[0]["uri"].rsplit("/", 1)[1] == tid_for_time(played)  # keyed by playedTime: retries land once
    status = wait_records(pds, listener.did, "fm.teal.actor.status", lambda rs: len(rs) == 1)[0]
    assert status["uri"].endswith("/fm.teal.actor.status/self")
    validate("fm.teal.actor.status", status["value"])
    assert status["value"]["item"]["trackName"] == track["title"]


def test_analytics_and_stats(node, artist, fan, tracks) -> None:
    song = tracks["song"]["id"]
    fan.post(f"/tracks/{song}/play")
    r = artist.get("/artists/me/analytics", params={"days": 7})
    assert r.status_code == 200, r.text
    a = r.json()
    plays = db(node, "SELECT sum(play_count), count(*), sum(duration) FROM tracks WHERE artist_did = ?",
               (artist.did,))[0]
    assert a["total_plays"] == plays[0] and a["total_items"] == plays[1]
    assert a["total_duration_seconds"] == int(plays[2])
    assert len(a["plays_per_day"]) == 7 and a["period"]["days"] == 7
    today = datetime.now(UTC).date().isoformat()
    assert a["plays_per_day"][-1]["date"] == today and a["period"]["end"] == today
    events = db(node, "SELECT count(*), count(DISTINCT listener) FROM play_events e JOIN tracks t"
                      " ON t.id = e.track_id WHERE t.artist_did = ?", (artist.did,))[0]
    assert sum(d["plays"] for d in a["plays_per_day"]) == events[0] == a["period_plays"]
    assert a["unique_listeners"] == events[1]
    assert a["top_tracks"] and a["top_tracks"][0]["plays"] >= a["top_tracks"][-1]["plays"]
    top = db(node, "SELECT max(play_count) FROM tracks WHERE artist_did = ?", (artist.did,))[0][0]
    assert a["top_item"]["play_count"] == top
    assert fan.get("/artists/me/analytics").json()["total_items"] == 0  # a listener has no tracks
    assert artist.get("/artists/me/analytics", params={"days": 0}).status_code == 400
    assert artist.get("/artists/me/analytics", params={"days": "x"}).status_code == 400
    assert anonymous(node).get("/artists/me/analytics").status_code == 401

    stats = anonymous(node).get("/stats").json()
    totals = db(node, "SELECT sum(play_count), count(*), count(DISTINCT artist_did), sum(duration) FROM tracks"
                      " WHERE status = 'ready'")[0]
    assert stats == {"total_plays": totals[0], "total_tracks": totals[1], "total_artists": totals[2],
                     "total_duration_seconds": int(totals[3])}


# ---- now playing


def test_now_playing(node, pds, artist, tracks) -> None:
    listener = person(node, pds, "nowplay")
    guest = anonymous(node)
    assert guest.get(f"/now-playing/by-did/{listener.did}").status_code == 204
    assert guest.get(f"/now-playing/by-handle/{listener.handle}").status_code == 204
    assert guest.get("/now-playing/by-handle/nobody.test").status_code == 404

    song = tracks["song"]
    r = listener.post("/now-playing/", json={"track_id": song["id"], "progress_ms": 1500, "file_id": "ignored",
                                             "track_name": "ignored too"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    body = guest.get(f"/now-playing/by-handle/{listener.handle}").json()
    assert body["track_id"] == song["id"] and body["track_name"] == song["title"]
    assert body["artist_name"] == song["artist"] and body["is_playing"] is True
    assert 1500 <= body["progress_ms"] <= body["duration_ms"] == round(song["duration"] * 1000)
    assert body["track_url"] == f"{node.url}/track/{song['id']}" and body["file_id"] == song["file_id"]
    assert body["service_base_url"] == urlsplit(node.url).netloc
    assert guest.get(f"/now-playing/by-did/{listener.did}").json()["track_id"] == song["id"]

    listener.post("/now-playing/", json={"track_id": song["id"], "progress_ms": 1500, "is_playing": False})
    assert guest.get(f"/now-playing/by-did/{listener.did}").status_code == 204  # paused
    listener.post("/now-playing/", json={"track_id": song["id"], "progress_ms": 2000})
    assert listener.delete("/now-playing/").json() == {"status": "ok"}
    assert guest.get(f"/now-playing/by-did/{listener.did}").status_code == 204

    for bad in ({"track_id": "1", "progress_ms": 0}, {"progress_ms": 0}, {"track_id": song["id"], "progress_ms": -5},
                {"track_id": song["id"], "is_playing": "yes"}):
        assert listener.post("/now-playing/", json=bad).status_code == 400, bad
    assert listener.post("/now-playing/", json={"track_id": 999999, "progress_ms": 0}).status_code == 404
    assert guest.post("/now-playing/", json={"track_id": song["id"], "progress_ms": 0}).status_code == 401
    assert guest.delete("/now-playing/").status_code == 401

    # with scrobbling on, a report also sets the teal.fm status (rkey self)
    listener.post("/preferences/", json={"enable_teal_scrobbling": True})
    listener.post("/now-playing/", json={"track_id": tracks["extra"]["id"], "progress_ms": 0})
    status = wait_records(pds, listener.did, "fm.teal.actor.status", lambda rs: len(rs) == 1)[0]["value"]
    validate("fm.teal.actor.status", status)
    assert status["item"]["trackName"] == tracks["extra"]["title"]
    expiry = datetime.fromisoformat(status["expiry"].replace("Z", "+00:00"))
    set_at = datetime.fromisoformat(status["time"].replace("Z", "+00:00"))
    assert (expiry - set_at).total_seconds() == 600
    assert list_records(pds, listener.did, "fm.teal.feed.play") == []  # now playing is not a play


# ---- preferences


def test_preferences_defaults_update_and_validation(node, pds) -> None:
    who = person(node, pds, "prefs")
    r = who.get("/preferences/")
    assert r.status_code == 200
    assert r.json() == {"theme": "dark", "accent_color": "#6a9fff", "auto_advance": True, "allow_comments": False,
                        "hidden_tags": ["ai"], "show_sensitive_artwork": False, "enable_teal_scrobbling": False,
                        "show_liked_on_profile": False, "download_policy": "anyone", "support_url": None,
                        "teal_needs_reauth": False}
    assert db(node, "SELECT count(*) FROM preferences WHERE did = ?", (who.did,)) == [(1,)]  # defaults created

    r = who.post("/preferences/", json={"theme": "light", "accent_color": "#FF00aa", "hidden_tags": [" AI ", "Suno",
                                                                                                      "suno"]})
    assert r.status_code == 200, r.text
    assert r.json()["theme"] == "light" and r.json()["accent_color"] == "#ff00aa"
    assert r.json()["hidden_tags"] == ["ai", "suno"] and r.json()["auto_advance"] is True  # the rest unchanged
    assert who.post("/preferences/", json={"auto_advance": False}).json()["theme"] == "light"

    bad = [
        {"theme": "live"}, {"theme": 1}, {"accent_color": "red"}, {"accent_color": "#12345"},
        {"auto_advance": "yes"}, {"allow_comments": 1}, {"hidden_tags": "ai"}, {"hidden_tags": [1]},
        {"hidden_tags": ["x" * 51]}, {"hidden_tags": [f"t{i}" for i in range(51)]},
        {"show_sensitive_artwork": None}, {"enable_teal_scrobbling": "true"}, {"show_liked_on_profile": 0},
        {"font_family": "mono"}, {"theme": "dark", "surprise": True},
    ]
    for body in bad:
        r = who.post("/preferences/", json=body)
        assert r.status_code == 400, (body, r.text)
    assert who.post("/preferences/", json=[]).status_code == 400
    assert who.get("/preferences/").json()["theme"] == "light"  # nothing half-applied

    guest = anonymous(node)
    assert guest.get("/preferences/").status_code == 401
    assert guest.post("/preferences/", json={"theme": "dark"}).status_code == 401


def oauth_sign_in(node: ServedNode, account: Account) -> Person:
    """An OAuth browser session through the PDS's own sign-in and consent screens (base scopes only, no teal)."""
    http = httpx.Client(base_url=node.url, timeout=30)
    r = http.get("/auth/start", params={"handle": account.handle})
    assert r.status_code == 307, r.text
    callback = authorize_headless(r.headers["location"], account.handle, account.password)
    parts = urlsplit(callback)
    r = http.get(f"{parts.path}?{parts.query}", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    me = r.json()
    return Person(Artist(http, me["csrf_token"], me["did"]), account)


def test_teal_needs_reauth_for_an_oauth_session_without_teal(node, pds, tracks) -> None:
    who = oauth_sign_in(node, pds.create_account("oauthfan"))
    assert who.get("/auth/me").json()["teal_scrobbling_granted"] is False
    r = who.post("/preferences/", json={"enable_teal_scrobbling": True})
    assert r.status_code == 200 and r.json()["teal_needs_reauth"] is True
    assert who.get("/preferences/").json()["teal_needs_reauth"] is True
    # the play counts, but nothing is written to teal.fm collections the grant does not cover
    assert who.post(f"/tracks/{tracks['song']['id']}/play").json()["counted"] is True
    time.sleep(1)
    assert list_records(pds, who.did, "fm.teal.feed.play") == []
    assert db(node, "SELECT count(*) FROM outbox WHERE did = ? AND collection LIKE 'fm.teal.%'", (who.did,)) == [(0,)]


# ---- queue


def test_queue_revisions_and_hydration(node, pds, tracks) -> None:
    who = person(node, pds, "queue")
    r = who.get("/queue/")
    assert r.status_code == 200 and r.headers["etag"] == '"0"'
    assert r.json()["revision"] == 0 and r.json()["state"]["track_ids"] == [] and r.json()["tracks"] == []

    song, extra = tracks["song"], tracks["extra"]
    state = {"track_ids": [song["file_id"], extra["file_id"], song["file_id"]], "current_index": 1,
             "current_track_id": extra["file_id"], "shuffle": False,
             "original_order_ids": [song["file_id"], extra["file_id"]], "auto_advance": True, "progress_ms": 1234}
    r = who.put("/queue/", json={"state": state}, headers={"If-Match": '"0"'})
    assert r.status_code == 200, r.text
    # the revision is the ETag (weak once the answer is gzipped: the same queue, another representation)
    assert r.headers["etag"].removeprefix("W/") == '"1"' and r.json()["revision"] == 1
    assert r.json()["state"]["progress_ms"] == 1234 and r.json()["state"]["repeat_mode"] == "none"
    assert sorted(t["id"] for t in r.json()["tracks"]) == sorted([song["id"], extra["id"]])
    assert all(t["file_id"] in (song["file_id"], extra["file_id"]) for t in r.json()["tracks"])

    got = who.get("/queue/")
    assert got.headers["etag"].removeprefix("W/") == '"1"' and got.json()["state"] == r.json()["state"]
    assert who.get("/queue/", headers={"If-None-Match": '"1"'}).status_code == 304
    assert who.get("/queue/", headers={"If-None-Match": got.headers["etag"]}).status_code == 304

    # a stale revision is refused; none at all replaces whatever is there (plyr.fm: last write wins)
    r = who.put("/queue/", json={"state": state}, headers={"If-Match": '"0"'})
    assert r.status_code == 409
    r = who.put("/queue/", json={"state": {**state, "progress_ms": 99}})
    assert r.status_code == 200 and r.json()["revision"] == 2 and r.json()["state"]["progress_ms"] == 99
    # integer track ids work as entries too
    r = who.put("/queue/", json={"state": {"track_ids": [song["id"]], "current_index": 0}},
                headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["revision"] == 3 and [t["id"] for t in r.json()["tracks"]] == [song["id"]]

    bad = [
        {"track_ids": [999999]},
        {"track_ids": ["f" * 64]},
        {"track_ids": ["not-a-file-id"]},
        {"track_ids": [song["id"]], "current_index": 1},
        {"track_ids": [], "current_index": 1},
        {"track_ids": [song["id"]] * 501},
        {"track_ids": [song["id"]], "current_track_id": extra["id"]},
        {"track_ids": [song["id"]], "repeat_mode": "forever"},
        {"track_ids": [song["id"]], "shuffle": "no"},
        {"track_ids": [song["id"]], "progress_ms": -1},
        {"track_ids": [song["id"]], "volume": 11},
        "not an object",
    ]
    for s in bad:
        r = who.put("/queue/", json={"state": s}, headers={"If-Match": '"3"'})
        assert r.status_code == 400, (s, r.text)
    assert who.put("/queue/", json={"nothing": 1}, headers={"If-Match": '"3"'}).status_code == 400
    assert who.get("/queue/").json()["revision"] == 3  # nothing changed
    assert who.put("/queue/", json={"state": {"track_ids": [song["id"]] * 500}},
                   headers={"If-Match": '"3"'}).status_code == 200  # the limit itself is fine

    guest = anonymous(node)
    assert guest.get("/queue/").status_code == 401
    assert guest.put("/queue/", json={"state": {}}, headers={"If-Match": '"0"'}).status_code == 401


def test_queue_two_tabs_one_wins(node, pds, tracks) -> None:
    """Two writers on the same revision: exactly one succeeds, the other gets 409 and refetches."""
    who = person(node, pds, "tabs")
    song = tracks["song"]["id"]

    async def both() -> list[int]:
        async with httpx.AsyncClient(base_url=node.url, cookies=who.me.http.cookies, timeout=30) as h:
            results = await asyncio.gather(*[
                h.put("/queue/", json={"state": {"track_ids": [song] * n}},
                      headers={"If-Match": '"0"', "X-CSRF-Token": who.me.csrf}) for n in (1, 2)])
        return sorted(r.status_code for r in results)

    assert asyncio.run(both()) == [200, 409]
    assert who.get("/queue/").json()["revision"] == 1
    assert json.loads(db(node, "SELECT state FROM queue_state WHERE did = ?", (who.did,))[0][0])["track_ids"]


# ---- the rules themselves, without a node


def test_play_rule_numbers() -> None:
    assert [dedup_window(d) for d in (4, 30, 200, 3600, 7200)] == [30, 30, 200, 3600, 3600]
    assert [report_after(d) for d in (4, 60, 600)] == [2, 30, 30]


def test_now_playing_entries_expire_and_stay_bounded() -> None:
    store = NowPlaying(ttl=300, max_entries=2)

    def entry(track_id: int, at: float) -> Playing:
        return Playing(track_id, 0, True, 1000, "t", "a", None, "f" * 64, None, reported_at=at)

    store.put("did:plc:a", entry(1, 1000.0))
    assert store.get("did:plc:a", now=1299.0) is not None
    assert store.get("did:plc:a", now=1301.0) is None  # five minutes without a report
    store.put("did:plc:a", entry(1, 2000.0))
    store.put("did:plc:b", entry(2, 2001.0))
    store.put("did:plc:c", entry(3, 2002.0))  # over the bound: the least recently reported goes
    assert store.get("did:plc:a", now=2003.0) is None
    assert store.get("did:plc:c", now=2003.0).track_id == 3
