"""POST /tracks/probe-tags through a real node: the tags of every accepted format from a sample of the file (its start,
or its start and end), clear 4xx for everything else, 413 past the limits, a signed-in uploader only, nothing stored."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import FORMATS, SPECS, jpeg_bytes, make_audio, make_video
from conftest import node_env, node_fixture, start_node
from helpers import Artist, sign_in, stored_files

from plyrd.media.head_tags import HEAD_MAX, TAIL_MAX

TAGS = {"title": "Low Tide", "artist": "the band", "album": "Harbour Songs", "album_artist": "the band",
        "track": "3/9", "date": "2021-04-05", "genre": "Ambient"}


def noisy_jpeg(px: int) -> bytes:
    """A cover that does not compress: about 1 MB at 1000 px, like a real photo at full quality."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 255, (px, px, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


node = node_fixture("probe-tags", PLYRD_STORAGE_MAX_UPLOAD_MB="50")


@pytest.fixture(scope="module")
def artist(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("tagreader"))


def probe(who: Artist | httpx.Client, body: bytes, headers: dict[str, str] | None = None,
          **params: Any) -> httpx.Response:
    http = who.http if isinstance(who, Artist) else who
    h = {"X-CSRF-Token": who.csrf} if isinstance(who, Artist) else {}
    return http.post("/tracks/probe-tags", content=body, params=params,
                     headers={"Content-Type": "application/octet-stream", **h, **(headers or {})})


def head_and_tail(data: bytes, head: int, tail: int) -> tuple[bytes, dict[str, int]]:
    """The body and query the upload page sends: the whole file when it is small, else its start and end."""
    if len(data) <= head + tail:
        return data, {"size": len(data)}
    return data[:head] + data[-tail:], {"size": len(data), "tail": tail}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_from_its_start_and_end(artist, tmp_path: Path, fmt: str) -> None:
    spec = SPECS[fmt]
    src = make_audio(tmp_path / f"song.{spec.ext}", fmt, seconds=12, kind="noise", tags=TAGS,
                     cover=jpeg_bytes(300, 300) if spec.cover else None)
    data = src.read_bytes()
    body, params = head_and_tail(data, 256 * 1024, 64 * 1024)
    assert len(body) < len(data) or fmt in ("mp3", "m4a-aac", "ogg-opus", "webm-opus")  # most are really cut
    r = probe(artist, body, **params)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["title"], got["artist"], got["album"], got["track_number"]) == (
        "Low Tide", "the band", "Harbour Songs", 3), got
    assert got["genre"] == "Ambient" and got["year"] == 2021
    assert got["container"] == spec.ext and got["lossless"] == (fmt in (
        "wav", "wav24", "flac", "flac24", "aiff", "m4a-alac"))
    assert got["has_cover"] is spec.cover
    assert got["duration"] is None or abs(got["duration"] - 12) < 0.1


def test_tags_at_the_end_need_the_tail(artist, tmp_path: Path) -> None:
    # FFmpeg writes an M4A's `moov` atom (tags included) after the audio: the start alone cannot hold them.
    data = make_audio(tmp_path / "late.m4a", "m4a-alac", seconds=12, kind="noise", tags=TAGS).read_bytes()
    r = probe(artist, data[:64 * 1024], size=len(data))
    assert r.status_code == 422, r.text
    assert "send more of it" in r.json()["detail"]
    r = probe(artist, data[:64 * 1024] + data[-64 * 1024:], size=len(data), tail=64 * 1024)
    assert r.status_code == 200 and r.json()["title"] == "Low Tide", r.text


def test_a_big_cover_ahead_of_the_audio_needs_a_bigger_start(artist, tmp_path: Path) -> None:
    # The ID3 tag, cover included, comes before the audio: 256 KiB of it is not enough to find the first frame.
    src = make_audio(tmp_path / "cover.mp3", "mp3", seconds=3, tags=TAGS, cover=noisy_jpeg(900))
    data = src.read_bytes()
    assert len(data) > 512 * 1024
    r = probe(artist, data[:256 * 1024], size=len(data))
    assert r.status_code == 422 and "MP3" in r.json()["detail"], r.text
    r = probe(artist, data, size=len(data))  # what the page retries with: everything up to the limits
    assert r.status_code == 200 and r.json()["title"] == "Low Tide" and r.json()["has_cover"] is True


def test_untagged_audio_answers_nulls(artist, tmp_path: Path) -> None:
    data = make_audio(tmp_path / "bare.wav", "wav", seconds=1).read_bytes()
    r = probe(artist, data)  # no size: the body is the whole file
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["title"] is None and got["track_number"] is None and got["container"] == "wav"
    assert abs(got["duration"] - 1) < 0.05


def test_bad_input_is_a_clear_4xx(artist, tmp_path: Path) -> None:
    text = b"these are not the droids you are looking for\n" * 40
    r = probe(artist, text, size=len(text))
    assert r.status_code == 415 and "text file" in r.json()["detail"], r.text
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    r = probe(artist, png)
    assert r.status_code == 415 and "PNG image" in r.json()["detail"]
    video = make_video(tmp_path / "clip.mp4", with_audio=True).read_bytes()
    r = probe(artist, video)
    assert r.status_code == 415 and "video" in r.json()["detail"], r.text
    silent_video = make_video(tmp_path / "silent.mp4").read_bytes()
    r = probe(artist, silent_video)
    assert r.status_code == 422 and "no audio stream" in r.json()["detail"], r.text
    # A whole file that looks like FLAC but is cut to pieces: corrupt, not "send more".
    flac = make_audio(tmp_path / "x.flac", "flac", seconds=1).read_bytes()
    r = probe(artist, flac[:40])
    assert r.status_code == 422 and "send more" not in r.json()["detail"], r.text

    for body, params, words in [
        (b"", {}, "request body"),
        (flac, {"tail": "lots"}, "whole number"),
        (flac, {"size": "-4"}, "whole number"),
        (flac, {"tail": len(flac) + 1, "size": len(flac) * 2}, "only"),
        (flac, {"tail": len(flac), "size": len(flac) * 2}, "not only its end"),
        (flac, {"tail": 10}, "whole size"),
        (flac, {"size": 10}, "smaller than"),
    ]:
        r = probe(artist, body, **params)
        assert r.status_code == 400 and words in r.json()["detail"], (params, r.text)


def test_limits_answer_413(artist) -> None:
    head = b"ID3" + bytes(HEAD_MAX)  # one past the head limit
    r = probe(artist, head)
    assert r.status_code == 413 and "MiB" in r.json()["detail"], r.text
    r = probe(artist, b"ID3" + bytes(1000) + bytes(TAIL_MAX + 1), size=HEAD_MAX * 4, tail=TAIL_MAX + 1)
    assert r.status_code == 413 and "last" in r.json()["detail"], r.text
    # Past the whole body limit: refused from Content-Length, before any of the body is read (a raw socket, as a
    # client still writing a body the server will not read may see its write fail before the answer).
    port = int(str(artist.http.base_url).rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"POST /tracks/probe-tags?tail={TAIL_MAX}&size={HEAD_MAX * 4} HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Length: {HEAD_MAX + TAIL_MAX + 1}\r\nX-CSRF-Token: {artist.csrf}\r\n"
                      f"Cookie: session_id={artist.http.cookies['session_id']}\r\n\r\n").encode())
        raw = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            raw += chunk
    answer = raw.decode()
    assert answer.startswith("HTTP/1.1 413") and "MiB" in answer, answer
    # The file itself is larger than this node takes (50 MB here): say so before it is sent.
    r = probe(artist, b"ID3" + bytes(100), size=51 * 1024 * 1024)
    assert r.status_code == 413 and "50 MB" in r.json()["detail"], r.text


def test_nothing_is_stored(node, artist, tmp_path: Path) -> None:
    before = stored_files(node)
    data = make_audio(tmp_path / "keep.flac", "flac", seconds=2, tags=TAGS).read_bytes()
    for _ in range(3):
        assert probe(artist, data).status_code == 200
    assert probe(artist, b"plain text, not audio").status_code == 415
    assert stored_files(node) == before
    tmp = node.data / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())  # not even a temporary file: the sample stays in memory


def test_only_a_signed_in_uploader(node, pds, tmp_path_factory) -> None:
    data = b"ID3" + bytes(100)
    r = httpx.post(node.url + "/tracks/probe-tags", content=data)
    assert r.status_code == 401
    # Signed in by cookie but without the CSRF header: refused like every cookie write.
    who = sign_in(node.url, pds.create_account("tagnocsrf"))
    r = who.http.post("/tracks/probe-tags", content=data)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]

    # A node that takes uploads only from a listed artist refuses everyone else.
    closed = start_node([], cwd=tmp_path_factory.mktemp("probe-closed"),
                        env=node_env(pds, PLYRD_AUTH_UPLOADERS="did:plc:somebodyelse"))
    try:
        listener = sign_in(closed.url, pds.create_account("taglistener"))
        r = probe(listener, data)
        assert r.status_code == 403 and "listed artists" in r.json()["detail"], r.text
    finally:
        closed.stop()
