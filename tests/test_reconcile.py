"""Reconciliation against the real PDS: likes and comments written or deleted in another client show up here,
on demand and after sign-in; what is still waiting in the outbox is never dropped."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from audio_samples import make_audio
from conftest import node_env, start_node
from helpers import records, sign_in, wait_for


def pds_write(pds: Any, account: Any, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """Another client writing to the account's repo directly (as plyr.fm itself would)."""
    session = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                         json={"identifier": account.did, "password": account.password}).json()
    r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.{method}", json={"repo": account.did, **body},
                   headers={"Authorization": f"Bearer {session['accessJwt']}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_reconcile_likes_and_comments_both_ways(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        artist_account = pds.create_account("recart")
        artist = sign_in(served.url, artist_account)
        r = artist.http.post("/preferences/", json={"allow_comments": True}, headers={"X-CSRF-Token": artist.csrf})
        assert r.status_code == 200, r.text
        ids = []
        for i in range(2):
            song = make_audio(tmp_path / f"r{i}.mp3", "mp3", seconds=2, frequency=400 + 100 * i)
            up = artist.upload(song, title=f"rec {i}")
            ids.append(artist.wait(up.json()["upload_id"])[-1]["track_id"])
        wait_for(lambda: len(records(pds, artist_account.did, "fm.plyr.track")) == 2)
        tracks = [artist.http.get(f"/tracks/{i}").json() for i in ids]
        db = sqlite3.connect(served.data / "plyrd.db")
        conn_uri = {t["id"]: db.execute("SELECT record_uri, record_cid FROM tracks WHERE id = ?", (t["id"],)).fetchone()
                    for t in tracks}
        db.close()

        fan_account = pds.create_account("recfan")
        fan = sign_in(served.url, fan_account)
        # a like through the node, which reaches the PDS
        assert fan.http.post(f"/tracks/{ids[0]}/like", headers={"X-CSRF-Token": fan.csrf}).status_code in (200, 201)
        synced = wait_for(lambda: records(pds, fan_account.did, "fm.plyr.like"))
        time.sleep(0.3)  # let the outbox record what the PDS accepted

        # elsewhere: that like is deleted, and a like and a comment are made on the other track
        pds_write(pds, fan_account, "deleteRecord", {"collection": "fm.plyr.like",
                                                     "rkey": synced[0]["uri"].rsplit("/", 1)[1]})
        uri, cid = conn_uri[ids[1]]
        now = "2026-11-28T01:00:00.000Z"
        pds_write(pds, fan_account, "createRecord", {"collection": "fm.plyr.like", "record": {
            "$type": "fm.plyr.like", "subject": {"uri": uri, "cid": cid}, "createdAt": now}})
        pds_write(pds, fan_account, "createRecord", {"collection": "fm.plyr.comment", "record": {
            "$type": "fm.plyr.comment", "subject": {"uri": uri, "cid": cid}, "text": "from elsewhere",
            "timestampMs": 1000, "createdAt": now}})
        # and one like of a track this node does not carry: ignored
        pds_write(pds, fan_account, "createRecord", {"collection": "fm.plyr.like", "record": {
            "$type": "fm.plyr.like", "subject": {"uri": f"at://{fan_account.did}/fm.plyr.track/3kaaaaaaaaaaa",
                                                 "cid": cid}, "createdAt": now}})

        r = fan.http.post("/sync/reconcile", headers={"X-CSRF-Token": fan.csrf})
        assert r.status_code == 200, r.text
        report = r.json()
        assert (report["adopted"]["likes"], report["adopted"]["comments"]) == (1, 1)
        assert (report["removed"]["likes"], report["removed"]["comments"]) == (1, 0)
        liked = [t["id"] for t in fan.http.get("/tracks/liked").json()["tracks"]]
        assert liked == [ids[1]]
        comments = fan.http.get(f"/tracks/{ids[1]}/comments").json()["comments"]
        assert [c["text"] for c in comments] == ["from elsewhere"]

        # a second pass changes nothing
        again = fan.http.post("/sync/reconcile", headers={"X-CSRF-Token": fan.csrf}).json()
        assert not any(again["adopted"].values()) and not any(again["removed"].values())

        # signing in reconciles by itself: a like made elsewhere meanwhile appears
        r = fan.http.delete(f"/tracks/{ids[1]}/like", headers={"X-CSRF-Token": fan.csrf})
        assert r.status_code in (200, 204)
        wait_for(lambda: len(records(pds, fan_account.did, "fm.plyr.like")) == 1)  # only the foreign-track like
        pds_write(pds, fan_account, "createRecord", {"collection": "fm.plyr.like", "record": {
            "$type": "fm.plyr.like", "subject": {"uri": conn_uri[ids[0]][0], "cid": conn_uri[ids[0]][1]},
            "createdAt": now}})
        fresh = sign_in(served.url, fan_account)
        wait_for(lambda: ids[0] in [t["id"] for t in fresh.http.get("/tracks/liked").json()["tracks"]])
    finally:
        served.stop()


def test_profiles_are_written_adopted_and_edited(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        # someone new: signing in gives them an fm.plyr.actor.profile
        newcomer = pds.create_account("newbie")
        me = sign_in(served.url, newcomer)
        rec = wait_for(lambda: records(pds, newcomer.did, "fm.plyr.actor.profile"))[0]
        assert rec["uri"].endswith("/fm.plyr.actor.profile/self")

        r = me.http.put("/artists/me", json={"bio": "field recordings from the coast", "display_name": "the coast"},
                        headers={"X-CSRF-Token": me.csrf})
        assert r.status_code == 200, r.text
        assert r.json()["bio"] == "field recordings from the coast"
        wait_for(lambda: records(pds, newcomer.did, "fm.plyr.actor.profile")[0]["value"].get("bio")
                 == "field recordings from the coast")
        public = httpx.get(f"{served.url}/artists/by-handle/{newcomer.handle}").json()
        assert public["display_name"] == "the coast" and public["track_count"] == 0
        for body, words in (({"bio": "x" * 300}, "256"), ({"avatar_url": "http://x.example/a.png"}, "https"),
                            ({"followers": 5}, "unknown fields")):
            r = me.http.put("/artists/me", json=body, headers={"X-CSRF-Token": me.csrf})
            assert r.status_code == 400 and words in r.json()["detail"]
        assert httpx.put(f"{served.url}/artists/me", json={"bio": "x"}).status_code == 401

        # someone with a profile made elsewhere: it is adopted, not overwritten
        veteran = pds.create_account("veteran")
        pds_write(pds, veteran, "putRecord", {"collection": "fm.plyr.actor.profile", "rkey": "self", "record": {
            "$type": "fm.plyr.actor.profile", "bio": "written on plyr.fm", "createdAt": "2026-01-01T00:00:00.000Z"}})
        sign_in(served.url, veteran)
        wait_for(lambda: httpx.get(f"{served.url}/artists/{veteran.did}").json().get("bio") == "written on plyr.fm")
        assert records(pds, veteran.did, "fm.plyr.actor.profile")[0]["value"]["bio"] == "written on plyr.fm"
    finally:
        served.stop()


def test_reconcile_playlists_made_edited_and_deleted_elsewhere(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("pl")
        me = sign_in(served.url, account)
        song = make_audio(tmp_path / "p.mp3", "mp3", seconds=1)
        track_id = me.wait(me.upload(song, title="listed").json()["upload_id"])[-1]["track_id"]
        wait_for(lambda: records(pds, account.did, "fm.plyr.track"))
        db = sqlite3.connect(served.data / "plyrd.db")
        uri, cid = db.execute("SELECT record_uri, record_cid FROM tracks WHERE id = ?", (track_id,)).fetchone()
        db.close()
        csrf = {"X-CSRF-Token": me.csrf}

        # one made here, which reaches the PDS
        r = me.http.post("/lists/playlists", json={"name": "made here"}, headers=csrf)
        assert r.status_code in (200, 201), r.text
        here = wait_for(lambda: [x for x in records(pds, account.did, "fm.plyr.list")
                                 if x["value"].get("name") == "made here"])[0]
        time.sleep(0.3)

        # elsewhere: that one is deleted, and another is made with our track in it
        pds_write(pds, account, "deleteRecord", {"collection": "fm.plyr.list", "rkey": here["uri"].rsplit("/", 1)[1]})
        made = pds_write(pds, account, "createRecord", {"collection": "fm.plyr.list", "record": {
            "$type": "fm.plyr.list", "name": "made elsewhere", "listType": "playlist",
            "items": [{"subject": {"uri": uri, "cid": cid}}], "createdAt": "2026-11-28T01:00:00.000Z"}})

        report = me.http.post("/sync/reconcile", headers=csrf).json()
        assert report["adopted"]["playlists"] == 1 and report["removed"]["playlists"] == 1
        mine = me.http.get("/lists/playlists").json()
        playlists = mine["playlists"] if isinstance(mine, dict) else mine
        assert [p["name"] for p in playlists] == ["made elsewhere"]
        detail = me.http.get(f"/lists/playlists/{playlists[0]['id']}").json()
        assert [t["id"] for t in detail["tracks"]] == [track_id]

        # edited elsewhere: renamed and emptied
        pds_write(pds, account, "putRecord", {"collection": "fm.plyr.list", "rkey": made["uri"].rsplit("/", 1)[1],
                                              "record": {"$type": "fm.plyr.list", "name": "renamed elsewhere",
                                                         "listType": "playlist", "items": [],
                                                         "createdAt": "2026-11-28T01:00:00.000Z"}})
        report = me.http.post("/sync/reconcile", headers=csrf).json()
        assert report["adopted"]["playlists_updated"] == 1
        detail = me.http.get(f"/lists/playlists/{playlists[0]['id']}").json()
        assert detail["name"] == "renamed elsewhere" and detail["tracks"] == []
    finally:
        served.stop()


def test_records_found_on_the_pds_are_remembered_with_their_blobs(pds, tmp_path: Path) -> None:
    """A record reconciliation adopts enters plyrd's ledger of the PDS as the outbox's own writes do: with the CIDs
    of the blobs it keeps alive there, which is how the outbox knows not to upload those again."""
    from audio_samples import png_bytes

    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("blobs")
        token = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                           json={"identifier": account.did, "password": account.password}).json()["accessJwt"]
        r = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.repo.uploadBlob", content=png_bytes(40, 40),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        blob = r.json()["blob"]
        # another client's playlist, with a field plyr.fm's lexicon does not name holding a blob (a cover, say)
        made = pds_write(pds, account, "createRecord", {"collection": "fm.plyr.list", "record": {
            "$type": "fm.plyr.list", "name": "with a cover", "listType": "playlist", "items": [], "cover": blob,
            "createdAt": "2026-11-28T01:00:00.000Z"}})

        sign_in(served.url, account)  # signing in reconciles, which adopts the playlist

        def remembered() -> str | None:
            db = sqlite3.connect(served.data / "plyrd.db")
            try:
                row = db.execute("SELECT blob_cids FROM pds_records WHERE uri = ?", (made["uri"],)).fetchone()
            finally:
                db.close()
            return row and row[0]

        assert json.loads(wait_for(remembered)) == [blob["ref"]["$link"]]
    finally:
        served.stop()
