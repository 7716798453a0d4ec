"""Tracks as fm.plyr.track records on the artist's real PDS: published when playable, with the audio as a blob,
rewritten on edit with the blob kept, deleted with the track."""

from __future__ import annotations

from pathlib import Path

import httpx
from audio_samples import make_audio
from conftest import node_env, start_node
from helpers import records, sign_in, wait_for

from plyrd.atproto.cbor import blob_cid
from plyrd.atproto.lexicon import validate


def test_track_records_follow_the_track(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("publish")
        artist = sign_in(served.url, account)
        song = make_audio(tmp_path / "song.aiff", "aiff", seconds=2, kind="music")
        r = artist.upload(song, title="on the pds", description="notes", tags='["x"]')
        track_id = artist.wait(r.json()["upload_id"])[-1]["track_id"]
        track = artist.http.get(f"/tracks/{track_id}").json()

        stored = wait_for(lambda: records(pds, account.did, "fm.plyr.track"))
        assert len(stored) == 1
        rec = stored[0]["value"]
        validate("fm.plyr.track", rec)
        assert rec["title"] == "on the pds" and rec["fileType"] == "mp3" and rec["duration"] == 2
        assert rec["audioUrl"] == f"{served.url}/audio/{track['file_id']}"
        assert rec["audioBlob"]["ref"]["$link"] == blob_cid(track["file_id"])
        blob = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob",
                         params={"did": account.did, "cid": rec["audioBlob"]["ref"]["$link"]})
        assert blob.status_code == 200 and blob.content == artist.http.get(f"/audio/{track['file_id']}").content
        uri = stored[0]["uri"]

        r = artist.http.patch(f"/tracks/{track_id}", files={"title": (None, "renamed")},
                              headers={"X-CSRF-Token": artist.csrf})
        assert r.status_code == 200
        updated = wait_for(lambda: [s for s in records(pds, account.did, "fm.plyr.track")
                                    if s["value"]["title"] == "renamed"])
        assert updated[0]["uri"] == uri  # the same record, rewritten
        assert updated[0]["value"]["audioBlob"] == rec["audioBlob"]  # never without its blob

        r = artist.http.delete(f"/tracks/{track_id}", headers={"X-CSRF-Token": artist.csrf})
        assert r.status_code == 204
        wait_for(lambda: not records(pds, account.did, "fm.plyr.track"))
    finally:
        served.stop()


def test_audio_over_the_blob_limit_is_published_by_url(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_ATPROTO_PDS_BLOB_LIMIT_MB="1"))
    try:
        account = pds.create_account("bigfile")
        artist = sign_in(served.url, account)
        song = make_audio(tmp_path / "big.wav", "wav", seconds=8)  # about 1.4 MB
        r = artist.upload(song, title="by url")
        artist.wait(r.json()["upload_id"])
        rec = wait_for(lambda: records(pds, account.did, "fm.plyr.track"))[0]["value"]
        assert "audioBlob" not in rec and rec["audioUrl"].startswith(served.url + "/audio/")
        assert rec["fileType"] == "wav"
    finally:
        served.stop()


def test_lossless_originals_are_published_with_the_blob_type_the_pds_detects(pds, tmp_path: Path) -> None:
    """A PDS sniffs blob types itself (FLAC is audio/x-flac, WAV audio/vnd.wave) and refuses records naming
    another: web-playable originals must reach the PDS as records with their audio."""
    served = start_node([], cwd=tmp_path, env=node_env(pds))
    try:
        account = pds.create_account("lossless")
        artist = sign_in(served.url, account)
        for fmt in ("flac", "wav", "m4a-aac"):
            song = make_audio(tmp_path / f"s.{fmt.split('-')[0]}", fmt, seconds=1, frequency=300)
            artist.wait(artist.upload(song, title=fmt).json()["upload_id"])
        stored = wait_for(lambda: (lambda rs: rs if len(rs) == 3 else None)(records(pds, account.did, "fm.plyr.track")))
        mimes = {r["value"]["title"]: r["value"]["audioBlob"]["mimeType"] for r in stored}
        assert mimes == {"flac": "audio/x-flac", "wav": "audio/vnd.wave", "m4a-aac": "audio/x-m4a"}
        assert artist.http.get("/sync/").json()["outbox"]["failed"] == 0
    finally:
        served.stop()
