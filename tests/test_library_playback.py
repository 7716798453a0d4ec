"""The web player plays music-folder files browsers cannot all play, through a real node, a real scan and real audio.

A folder holds an AIFF, an Ogg Vorbis file and an MP3 (and a longer AIFF for the browser). For a signed-in listener
the player's URL (`/audio/<file_id>` of the track's JSON) of the AIFF and the Vorbis file is an MP3 at the uploads'
rendition bitrate, made live on the first play (no ranges, nothing cached by the browser) and read from the transcode
cache after it (ranges work), the same cache entry Subsonic's `stream` uses; the MP3 is its stored bytes. Their
downloads are still the originals. Anonymous visitors get 404 for all of it. In Chromium, the web player plays a
library AIFF (its currentTime advances), seeks in it while it is live (within what the encode has sent) and once
the transcode is cached (ranges).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from audio_samples import make_audio
from browsing import DESKTOP, Session
from conftest import ServedNode, node_env, start_node
from helpers import Artist, sign_in, wait_for
from library_support import scan_library

SECONDS = 3.0
BROWSER_SECONDS = 12.0
FILES = {  # title -> (format, file name)
    "Plink Aiff": ("aiff", "plink.aiff"),
    "Plink Vorbis": ("ogg-vorbis", "plink.ogg"),
    "Plink Mp3": ("mp3", "plink.mp3"),
}
LIVE = ("Plink Aiff", "Plink Vorbis")


@dataclass
class World:
    node: ServedNode
    music: Path
    listener: Artist
    account: Any
    token: str  # a developer token, for Subsonic
    tracks: dict[str, dict[str, Any]]  # the listener's track JSON by title

    def db(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.node.data / "plyrd.db", timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def cached(self, title: str) -> list[tuple[Any, ...]]:
        return self.db("SELECT format, bitrate, blob_sha256 FROM transcodes WHERE source_sha256 = ?",
                       (self.tracks[title]["original_file_id"],))


def decoded(data: bytes) -> tuple[str, float]:
    """(format, seconds) of the audio in `data`, by decoding every frame with PyAV."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        samples = sum(frame.samples for frame in c.decode(stream))
        return c.format.name, samples / stream.codec_context.sample_rate


@pytest.fixture(scope="module")
def world(pds, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    music = tmp_path_factory.mktemp("music")
    for title, (fmt, name) in FILES.items():
        make_audio(music / name, fmt, seconds=SECONDS, kind="music", tags={"title": title, "artist": "Plinker"})
    make_audio(music / "long.aiff", "aiff", seconds=BROWSER_SECONDS, kind="music", frequency=330.0,
               tags={"title": "Plink Browser", "artist": "Plinker"})
    account = pds.create_account("plinklistener")
    node = start_node([], cwd=tmp_path_factory.mktemp("library-playback"),
                      env=node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music), PLYRD_LIBRARY_WATCH="false"))
    try:
        scan_library(node, tracks=len(FILES) + 1)
        listener = sign_in(node.url, account)
        r = httpx.post(node.url + "/auth/app-password", timeout=30, json={
            "handle": account.handle, "app_password": account.password, "token_name": "subsonic"})
        assert r.status_code == 201, r.text
        conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
        ids = dict(conn.execute("SELECT title, id FROM tracks WHERE source = 'library'").fetchall())
        conn.close()
        tracks = {}
        for title, track_id in ids.items():
            got = listener.http.get(f"/tracks/{track_id}")
            assert got.status_code == 200, got.text
            tracks[title] = got.json()
        yield World(node, music, listener, account, r.json()["token"], tracks)
    finally:
        node.stop()


@pytest.mark.parametrize("title", LIVE)
def test_a_file_browsers_cannot_play_is_an_mp3_live_then_cached(world: World, title: str) -> None:
    track, http = world.tracks[title], world.listener.http
    url = f"/audio/{track['file_id']}"
    assert track["audio_url"].endswith(url), track
    assert world.cached(title) == [], "nothing played yet"

    head = http.head(url)
    assert head.status_code == 200 and head.headers["content-type"] == "audio/mpeg", head.headers
    assert world.cached(title) == [], "a HEAD encodes nothing"

    first = http.get(url, headers={"Range": "bytes=0-"})  # what a browser's <audio> asks first
    assert first.status_code == 200 and first.headers["content-type"] == "audio/mpeg", first.text[:200]
    assert first.headers["accept-ranges"] == "none" and "content-length" not in first.headers, first.headers
    assert first.headers["cache-control"] == "no-store", "a live encode is not kept by the browser"
    fmt, seconds = decoded(first.content)
    assert fmt == "mp3" and abs(seconds - SECONDS) < 0.2, (fmt, seconds)

    # The whole track was kept as the uploads' rendition would be: MP3 at 320k.
    rows = wait_for(lambda: world.cached(title))
    assert [(f, b) for f, b, _ in rows] == [("mp3", 320)], rows
    kept = rows[0][2]

    second = http.get(url)
    assert second.status_code == 200 and second.content == first.content, "the second play is the cached file"
    assert second.headers["etag"] == f'"{kept}"' and hashlib.sha256(second.content).hexdigest() == kept
    assert second.headers["accept-ranges"] == "bytes"
    assert second.headers["cache-control"].startswith("private"), "no shared cache keeps a library file"
    part = http.get(url, headers={"Range": "bytes=1000-4999"})
    assert part.status_code == 206 and part.content == first.content[1000:5000], part.headers
    assert part.headers["content-range"] == f"bytes 1000-4999/{len(first.content)}"

    # Subsonic's plain stream of the song is the same cache entry.
    rest = httpx.get(world.node.url + "/rest/stream", timeout=30,
                     params={"apiKey": world.token, "f": "json", "id": f"tr-{track['id']}"})
    assert rest.status_code == 200 and rest.content == first.content, rest.text[:200]
    assert len(world.cached(title)) == 1

    # The download is still the original file.
    original = http.get(f"/audio/{track['original_file_id']}/download")
    assert original.status_code == 200
    assert original.content == (world.music / FILES[title][1]).read_bytes()


def test_an_mp3_is_its_stored_bytes(world: World) -> None:
    track = world.tracks["Plink Mp3"]
    r = world.listener.http.get(f"/audio/{track['file_id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert r.content == (world.music / "plink.mp3").read_bytes()
    assert decoded(r.content)[0] == "mp3"
    assert world.cached("Plink Mp3") == [], "nothing transcoded"


def test_anonymous_visitors_get_nothing(world: World) -> None:
    anonymous = httpx.Client(base_url=world.node.url, timeout=30)
    for title in (*FILES, "Plink Browser"):
        track = world.tracks[title]
        for path in (f"/audio/{track['file_id']}", f"/audio/{track['original_file_id']}/download",
                     f"/tracks/{track['id']}"):
            assert anonymous.get(path).status_code == 404, (title, path)
            assert anonymous.head(path).status_code == 404, (title, path)
    assert world.cached("Plink Browser") == [], "nothing encoded for them"


def test_the_web_player_plays_a_library_aiff_and_seeks_once_cached(world: World, browser) -> None:
    context = browser.new_context(viewport=DESKTOP)
    try:
        s = Session(world.node, context.new_page(), world.account)
        s.sign_in("/")
        page = s.page
        # What makes this test mean something: this browser cannot play the AIFF as it is (the download).
        code = s.js("""(url) => new Promise((done) => { const a = new Audio();
            a.onerror = () => done(a.error.code); a.oncanplay = () => done(0); a.src = url; })""",
                    world.tracks["Plink Browser"]["download_url"].removeprefix(world.node.url))
        assert code == 4, "MEDIA_ERR_SRC_NOT_SUPPORTED"
        page.click("#main li.track:has-text('Plink Browser') [data-action=play]")
        s.wait("() => document.getElementById('audio').currentTime > 1", timeout=20_000)
        assert page.text_content("#player [data-player=title]") == "Plink Browser"
        assert page.text_content("#player [data-player=duration]") == "0:12", "the track's length, while live"
        assert not s.errors, s.errors
        wave = page.locator("#player [data-player=wave]")
        box = wave.bounding_box()
        assert box is not None
        # A seek in the live stream: Chromium reads on to it (the encode runs well ahead of the listener).
        wave.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
        s.wait("() => document.getElementById('audio').currentTime > 5.5", timeout=10_000)
        wait_for(lambda: world.cached("Plink Browser"))

        # Another track, then this one again: now the cached file, which the browser can seek in anywhere.
        page.click("#main li.track:has-text('Plink Aiff') [data-action=play]")
        s.wait("() => document.querySelector('#player [data-player=title]').textContent === 'Plink Aiff'")
        page.click("#main li.track:has-text('Plink Browser') [data-action=play]")
        s.wait("() => document.querySelector('#player [data-player=title]').textContent === 'Plink Browser' && "
               "document.getElementById('audio').currentTime > 0.2", timeout=20_000)
        assert abs(s.js("document.getElementById('audio').duration") - BROWSER_SECONDS) < 0.5, "a file, not a stream"
        wave.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
        s.wait("() => document.getElementById('audio').currentTime > 8.5", timeout=10_000)
        assert s.time() < BROWSER_SECONDS and not s.errors, (s.time(), s.errors)
    finally:
        context.close()
