"""Audio in, audio out, through a real node process: upload every accepted format, watch the progress events,
stream the result with ranges, verify the bytes; refuse bad input leaving nothing behind; dedup; refcounted delete;
a crash in the middle of a job."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from audio_samples import FORMATS, jpeg_bytes, make_audio, make_video, png_bytes
from conftest import node_env, node_fixture, start_node
from helpers import Artist, db_rows, sign_in, stored_files

NEEDS_RENDITION = {"aiff", "m4a-alac", "ogg-vorbis", "ogg-opus", "webm-opus"}


node = node_fixture("uploads", PLYRD_MEDIA_MAX_DURATION_MINUTES="1")


@pytest.fixture(scope="module")
def artist(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("artist"))


@pytest.fixture(scope="module")
def refused(node, pds) -> Artist:
    """Whose uploads the refusal tests send: uploads are limited to 20 a minute per person, and this module sends
    more than that within a minute."""
    return sign_in(node.url, pds.create_account("refused"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_end_to_end(node, artist, tmp_path: Path, fmt: str) -> None:
    src = make_audio(tmp_path / f"song.{fmt.split('-')[0]}", fmt, seconds=3, kind="music",
                     tags={"title": f"tagged {fmt}", "artist": "the band"})
    r = artist.upload(src, tags='["Test", "formats"]')
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending" and body["upload_id"]

    events = artist.wait(body["upload_id"])
    assert events[-1]["status"] == "completed", events
    assert events[-1]["percent"] == 100 and events[-1]["track_id"]

    track = artist.http.get(f"/tracks/{events[-1]['track_id']}").json()
    assert track["title"] == f"tagged {fmt}"  # prefilled from the file's tags
    assert track["tags"] == ["test", "formats"]
    assert track["playable"] and track["status"] == "ready"
    assert abs(track["duration"] - 3) < 0.15
    assert len(track["peaks"]) == 1000 and max(track["peaks"]) > 0.05
    assert track["track_gain_db"] is not None
    if fmt in NEEDS_RENDITION:
        assert track["file_type"] == "mp3" and track["file_id"] != track["original_file_id"]
    else:
        assert track["file_id"] == track["original_file_id"]

    # the original, byte for byte, as an attachment named artist - title.ext
    r = artist.http.get(f"/audio/{track['original_file_id']}/download")
    assert r.status_code == 200 and r.content == src.read_bytes()
    assert "attachment" in r.headers["content-disposition"] and f"tagged {fmt}" in r.headers["content-disposition"]

    # the playable file, whole and in ranges
    url = f"/audio/{track['file_id']}"
    whole = artist.http.get(url)
    assert whole.status_code == 200
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert whole.headers["etag"] == f'"{track["file_id"]}"'
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"].startswith("audio/")
    data = whole.content
    part = artist.http.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert artist.http.get(url, headers={"Range": "bytes=-500"}).content == data[-500:]
    assert artist.http.get(url, headers={"Range": f"bytes={len(data) - 10}-"}).content == data[-10:]
    bad = artist.http.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    head = artist.http.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and not head.content
    if fmt in NEEDS_RENDITION:
        from plyrd.media.probe import probe

        rendition = tmp_path / "rendition.mp3"
        rendition.write_bytes(data)
        info = probe(rendition)
        assert (info.codec, info.sample_rate) == ("mp3", 44100) and abs(info.duration - 3) < 0.15


def test_cover_art_from_the_file_and_from_the_form(node, artist, tmp_path: Path) -> None:
    src = make_audio(tmp_path / "covered.flac", "flac", seconds=1, cover=jpeg_bytes(400, 300))
    r = artist.upload(src, title="with a cover")
    track_id = artist.wait(r.json()["upload_id"])[-1]["track_id"]
    track = artist.http.get(f"/tracks/{track_id}").json()
    assert track["title"] == "with a cover"
    thumb = artist.http.get(track["thumbnail_url"].split(node.url)[1])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(thumb.content)).size) == 96

    src2 = make_audio(tmp_path / "plain.mp3", "mp3", seconds=1, frequency=300)
    r = artist.upload(src2, title="form cover", image=("cover.png", png_bytes(200, 200), "image/png"))
    assert r.status_code == 200, r.text
    track = artist.http.get(f"/tracks/{artist.wait(r.json()['upload_id'])[-1]['track_id']}").json()
    assert track["image_url"] and artist.http.get(track["image_url"].split(node.url)[1]).status_code == 200


@pytest.mark.parametrize(("make", "status", "words"), [
    (lambda d: _write(d / "empty.mp3", b""), 415, "empty"),
    (lambda d: _write(d / "noise.flac", os.urandom(50_000)), 415, ""),
    (lambda d: _write(d / "notes.mp3", b"these are my lyrics, not audio\n" * 200), 415, "text"),
    (lambda d: _write(d / "picture.mp3", png_bytes(64, 64)), 415, "PNG"),
    (lambda d: make_video(d / "clip.mp4", seconds=1), 422, "no audio stream"),
    (lambda d: _truncate(make_audio(d / "cut.flac", "flac", seconds=4, kind="music")), 422, ""),
    (lambda d: make_audio(d / "long.wav", "wav", seconds=61, channels=1, sample_rate=8000), 422, "long"),
])
def test_bad_audio_is_refused_and_leaves_nothing(node, refused, tmp_path: Path, make, status: int, words: str) -> None:
    before_files = stored_files(node)
    before_blobs = db_rows(node, "SELECT count(*) FROM blobs")[0][0]
    before_uploads = db_rows(node, "SELECT count(*) FROM uploads")[0][0]
    r = refused.upload(make(tmp_path), title="bad")
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words.lower() in detail.lower()
    assert stored_files(node) == before_files
    assert db_rows(node, "SELECT count(*) FROM blobs")[0][0] == before_blobs
    assert db_rows(node, "SELECT count(*) FROM uploads")[0][0] == before_uploads
    assert not list((node.data / "tmp").iterdir())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_bad_form_input(node, artist, refused, tmp_path: Path) -> None:
    song = make_audio(tmp_path / "ok.mp3", "mp3", seconds=1, frequency=550)
    before = stored_files(node)
    cases = [
        (refused.upload(song, tags="not json"), 400, "tags"),
        (refused.upload(song, tags=json.dumps([f"t{i}" for i in range(11)])), 400, "10 tags"),
        (refused.upload(song, description="x" * 5001), 400, "5000"),
        (refused.upload(None, title="no file"), 400, "file"),
        (refused.upload(song, image=("cover.jpg", b"<svg></svg>", "image/jpeg")), 415, ""),
    ]
    for r, status, words in cases:
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
    assert stored_files(node) == before
    # JSON, not a multipart form
    r = refused.http.post("/tracks/", json={"title": "x"}, headers={"X-CSRF-Token": refused.csrf})
    assert r.status_code == 415
    # not signed in, and without the CSRF token
    r = httpx.post(node.url + "/tracks/", files={"file": ("a.mp3", song.read_bytes())})
    assert r.status_code == 401
    r = artist.http.post("/tracks/", files={"file": ("a.mp3", song.read_bytes())})
    assert r.status_code == 403


def test_dedup_and_refcounted_delete(node, artist, pds, tmp_path: Path) -> None:
    other = sign_in(node.url, pds.create_account("band"))
    song = make_audio(tmp_path / "shared.aiff", "aiff", seconds=2, frequency=660)
    cover = ("c.jpg", jpeg_bytes(120, 120, (1, 2, 3)), "image/jpeg")
    ids = []
    for who in (artist, other):
        r = who.upload(song, title="same bytes", image=cover)
        assert r.status_code == 200, r.text
        ids.append(who.wait(r.json()["upload_id"])[-1]["track_id"])
    a, b = (artist.http.get(f"/tracks/{i}").json() for i in ids)
    assert a["original_file_id"] == b["original_file_id"] and a["file_id"] == b["file_id"]
    sha = a["original_file_id"]
    assert db_rows(node, f"SELECT refcount FROM blobs WHERE sha256 = '{sha}'") == [(2,)]
    assert sum(1 for p in stored_files(node) if p == sha) == 1  # stored once

    r = artist.upload(song, title="again")
    assert r.status_code == 409 and str(ids[0]) in r.json()["detail"]

    r = other.http.delete(f"/tracks/{ids[0]}", headers={"X-CSRF-Token": other.csrf})
    assert r.status_code == 403  # not theirs
    r = artist.http.delete(f"/tracks/{ids[0]}", headers={"X-CSRF-Token": artist.csrf})
    assert r.status_code == 204
    assert artist.http.get(f"/tracks/{ids[0]}").status_code == 404
    assert sha in stored_files(node)  # the other track still uses it
    assert artist.http.get(f"/audio/{sha}").status_code == 200

    files = {b[k] for k in ("original_file_id", "file_id")}
    r = other.http.delete(f"/tracks/{ids[1]}", headers={"X-CSRF-Token": other.csrf})
    assert r.status_code == 204
    assert not files & stored_files(node)
    assert db_rows(node, f"SELECT count(*) FROM blobs WHERE sha256 = '{sha}'") == [(0,)]
    assert artist.http.get(f"/audio/{sha}").status_code == 404


def test_oversize_upload_is_413(pds, tmp_path: Path) -> None:
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_STORAGE_MAX_UPLOAD_MB="1"))
    try:
        who = sign_in(served.url, pds.create_account("big"))
        big = make_audio(tmp_path / "big.wav", "wav", seconds=15)  # about 2.6 MB
        r = who.upload(big, title="too big")
        assert r.status_code == 413
        assert not stored_files(served) and not list((served.data / "tmp").iterdir())
    finally:
        served.stop()


def test_uploads_only_from_listed_artists(pds, tmp_path: Path) -> None:
    allowed = pds.create_account("label")
    served = start_node([], cwd=tmp_path, env=node_env(pds, PLYRD_AUTH_UPLOADERS=allowed.did))
    try:
        song = make_audio(tmp_path / "s.mp3", "mp3", seconds=1)
        outsider = sign_in(served.url, pds.create_account("outsider"))
        r = outsider.upload(song, title="nope")
        assert r.status_code == 403 and "listed artists" in r.json()["detail"]
        r = sign_in(served.url, allowed).upload(song, title="yes")
        assert r.status_code == 200
    finally:
        served.stop()


def test_a_crash_mid_job_resumes_after_restart(pds, tmp_path: Path) -> None:
    env = node_env(pds, PLYRD_MEDIA_WORKERS="1")
    served = start_node([], cwd=tmp_path, env=env)
    account = pds.create_account("crash")
    who = sign_in(served.url, account)
    # long enough that the transcode is still running when the node is killed
    song = make_audio(tmp_path / "long.aiff", "aiff", seconds=240, channels=2, kind="music")
    r = who.upload(song, title="survives a crash")
    assert r.status_code == 200, r.text
    upload_id = r.json()["upload_id"]
    with who.http.stream("GET", f"/tracks/uploads/{upload_id}/progress", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["phase"] == "transcoding":
                break
    served.proc.send_signal(signal.SIGKILL)  # no graceful anything
    served.proc.wait(10)
    assert db_rows(served, "SELECT state FROM jobs") == [("running",)]

    port = int(served.url.rsplit(":", 1)[1])
    restarted = start_node([], cwd=tmp_path, env=env, port=port, log_path=tmp_path / "second.log")
    try:
        who = sign_in(restarted.url, account)
        deadline = time.monotonic() + 120
        events = who.wait(upload_id, timeout=120)
        assert events[-1]["status"] == "completed", (events, restarted.log())
        assert time.monotonic() < deadline
        track = who.http.get(f"/tracks/{events[-1]['track_id']}").json()
        assert track["playable"] and track["file_type"] == "mp3"
        assert db_rows(restarted, "SELECT count(*) FROM tracks") == [(1,)]
        # nothing orphaned: every stored file has its row with a reference, nothing left in tmp/
        rows = dict(db_rows(restarted, "SELECT sha256, refcount FROM blobs"))
        assert stored_files(restarted) == set(rows)
        assert all(count >= 1 for count in rows.values())
        assert not list((restarted.data / "tmp").iterdir())
        assert "interrupted job recovered" in restarted.log()
    finally:
        restarted.stop()
