"""Account export (a streamed zip of originals and metadata) and account deletion, through a real node."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from audio_samples import make_audio
from conftest import node_env, start_node
from helpers import db_rows, sign_in, stored_files


def test_export_then_delete_account(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("leaving")
        me = sign_in(served.url, account)
        friend = sign_in(served.url, pds.create_account("staying"))
        shared = make_audio(tmp_path / "shared.flac", "flac", seconds=2, frequency=500)
        mine = make_audio(tmp_path / "mine.wav", "wav", seconds=2, frequency=700)
        tracks = {}
        for who, path, title in ((me, shared, "same song"), (me, mine, "same song"), (friend, shared, "theirs")):
            r = who.upload(path, title=title)
            assert r.status_code == 200, r.text
            tracks[(who.did, path.name)] = who.wait(r.json()["upload_id"])[-1]["track_id"]

        with me.http.stream("GET", "/account/export") as r:
            assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
            assert "attachment" in r.headers["content-disposition"]
            data = b"".join(r.iter_bytes())
        z = zipfile.ZipFile(io.BytesIO(data))
        assert z.testzip() is None
        meta = json.loads(z.read("plyrd-export.json"))
        assert meta["user"]["did"] == me.did and len(meta["tracks"]) == 2
        originals = sorted(n for n in z.namelist() if n.startswith("tracks/"))
        assert len(originals) == 2 and originals[0] != originals[1]  # same title, two files
        assert sorted(z.read(n) for n in originals) == sorted([shared.read_bytes(), mine.read_bytes()])
        assert friend.http.get("/account/export").status_code == 200  # everyone exports only their own
        assert me.http.get("/account/export", headers={"Cookie": "session_id=forged"}).status_code == 401

        r = me.http.request("DELETE", "/account/", json={"confirmation": "someone-else.test"},
                            headers={"X-CSRF-Token": me.csrf})
        assert r.status_code == 400 and account.handle in r.json()["detail"]
        assert len(db_rows(served, f"SELECT id FROM tracks WHERE artist_did = '{me.did}'")) == 2

        mine_sha = me.http.get(f"/tracks/{tracks[(me.did, 'mine.wav')]}").json()["original_file_id"]
        shared_sha = friend.http.get(f"/tracks/{tracks[(friend.did, 'shared.flac')]}").json()["original_file_id"]
        r = me.http.request("DELETE", "/account/", json={"confirmation": "@" + account.handle.upper()},
                            headers={"X-CSRF-Token": me.csrf})
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["tracks"] == 2 and r.json()["deleted"]["sessions"] >= 1
        assert me.http.get("/auth/me").status_code == 401
        assert db_rows(served, f"SELECT count(*) FROM tracks WHERE artist_did = '{me.did}'") == [(0,)]
        assert mine_sha not in stored_files(served)
        assert shared_sha in stored_files(served)  # the friend's track still uses these bytes
        assert friend.http.get(f"/audio/{shared_sha}").status_code == 200
    finally:
        served.stop()


def test_delete_account_with_its_pds_records(pds, tmp_path: Path) -> None:
    from test_publishing import records, wait_for

    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("wipe")
        me = sign_in(served.url, account)
        song = make_audio(tmp_path / "w.mp3", "mp3", seconds=1)
        track_id = me.wait(me.upload(song, title="to be wiped").json()["upload_id"])[-1]["track_id"]
        wait_for(lambda: records(pds, account.did, "fm.plyr.track"))
        assert me.http.post(f"/tracks/{track_id}/like", headers={"X-CSRF-Token": me.csrf}).status_code in (200, 201)
        wait_for(lambda: records(pds, account.did, "fm.plyr.like"))
        wait_for(lambda: records(pds, account.did, "fm.plyr.actor.profile"))
        wait_for(lambda: records(pds, account.did, "fm.plyr.list"))

        r = me.http.request("DELETE", "/account/", json={"confirmation": account.handle,
                                                         "delete_atproto_records": "yes"},
                            headers={"X-CSRF-Token": me.csrf})
        assert r.status_code == 400  # not a boolean: nothing happens
        assert records(pds, account.did, "fm.plyr.track")

        r = me.http.request("DELETE", "/account/", json={"confirmation": account.handle,
                                                         "delete_atproto_records": True},
                            headers={"X-CSRF-Token": me.csrf})
        assert r.status_code == 200, r.text
        # the track, the like, the Liked Tracks list and the profile every signed-in user gets
        assert r.json()["atproto_records_deleted"] is True and r.json()["atproto_records_deleted_count"] == 4
        for collection in ("fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.actor.profile"):
            assert records(pds, account.did, collection) == []
        assert db_rows(served, f"SELECT count(*) FROM outbox WHERE did = '{account.did}'") == [(0,)]
    finally:
        served.stop()
