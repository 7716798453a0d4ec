"""Subsonic `stream` transcoding against a real node with real audio: FLAC to MP3 and Opus at a bitrate, timeOffset,
first bytes before the encode ends, the cache (second play a file read with ranges, freed with its track, nothing
left by a listener who leaves), stored files sent unchanged when they already fit, HEAD and estimateContentLength,
download never transcoding, the bound on concurrent transcodes, and py-sonic's `stream`. The cache's size bound and
two concurrent first plays of one key run against a real database and blob store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
import libsonic
import pytest
import subsonic_support
from audio_samples import make_audio
from conftest import node_fixture
from helpers import db_rows, stored_files
from subsonic_support import rest_listener

from plyrd.db import Database
from plyrd.storage import BlobStore
from plyrd.subsonic.envelope import SubsonicError
from plyrd.subsonic.streaming import Stored, Transcode, announced, choose
from plyrd.subsonic.transcode_cache import TranscodeCache

# Two transcoding slots, so the refusal past the bound is quick to reach.
node = node_fixture("subsonic-transcode", PLYRD_SUBSONIC_MAX_TRANSCODES="2")


class Listener(subsonic_support.Listener):
    def stream(self, track_id: int, **params: Any) -> httpx.Response:
        return self.rest.get("/rest/stream", params=self.params(id=f"tr-{track_id}", **params))


@pytest.fixture(scope="module")
def alice(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("stalice"), Listener, timeout=60)


@pytest.fixture(scope="module")
def library(alice: Listener, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("transcode-audio")
    files = {
        "song": make_audio(tmp / "song.flac", "flac", seconds=20.0, kind="music"),
        # Ten minutes (silence keeps the upload small): long enough that the encode outlasts a first read.
        "long": make_audio(tmp / "long.flac", "flac", seconds=600.0, kind="silence"),
        "gone": make_audio(tmp / "gone.flac", "flac", seconds=6.0, frequency=330.0),
        "mp3": make_audio(tmp / "plain.mp3", "mp3", seconds=4.0, frequency=550.0),
    }
    ids: dict[str, int] = {}
    for key, path in files.items():
        ids[key] = alice.upload(path, wait=120, title=f"Transcode {key}")
    return {"files": files, "ids": ids}


def _decoded(data: bytes, *, cut: bool = False) -> tuple[str, float, int]:
    """(codec, seconds of audio, sample rate) of encoded bytes, decoded with PyAV; `cut`: the last packet may be
    short (a body cut to a promised length), as players allow."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        samples = 0
        for packet in c.demux(stream):
            try:
                samples += sum(f.samples for f in packet.decode())
            except av.InvalidDataError:
                if not cut:
                    raise
        rate = stream.codec_context.sample_rate
        return stream.codec_context.name, samples / rate, rate


def _source(node, track_id: int) -> str:
    return db_rows(node, "SELECT original_sha FROM tracks WHERE id = ?", (track_id,))[0][0]


def _cached(node, track_id: int, fmt: str, kbps: int) -> list[tuple[Any, ...]]:
    return db_rows(node, "SELECT blob_sha256, size FROM transcodes WHERE source_sha256 = ? AND format = ? AND "
                   "bitrate = ?", (_source(node, track_id), fmt, kbps))


def _wait_cached(node, track_id: int, fmt: str, kbps: int) -> tuple[Any, ...]:
    deadline = time.monotonic() + 20
    while not (rows := _cached(node, track_id, fmt, kbps)):
        assert time.monotonic() < deadline, "the finished transcode was not cached"
        time.sleep(0.05)
    return rows[0]


def _temp_files(node) -> list[Path]:
    return [p for p in (node.data / "tmp").glob("blob-*")]


def test_flac_to_mp3_at_128k(node, alice: Listener, library: dict[str, Any]) -> None:
    r = alice.stream(library["ids"]["song"], format="mp3", maxBitRate=128)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mpeg"
    assert "content-length" not in r.headers or r.headers.get("etag")  # live: no length (a cached replay has one)
    codec, seconds, rate = _decoded(r.content)
    assert codec.startswith("mp3") and rate == 44100
    assert abs(seconds - 20.0) < 0.2, seconds
    assert abs(len(r.content) * 8 / seconds / 1000 - 128) < 4


def test_flac_to_opus(node, alice: Listener, library: dict[str, Any]) -> None:
    r = alice.stream(library["ids"]["song"], format="opus", maxBitRate=96)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/ogg"
    codec, seconds, rate = _decoded(r.content)
    assert codec == "opus" and rate == 48000
    assert abs(seconds - 20.0) < 0.2, seconds
    assert len(r.content) * 8 / seconds / 1000 < 160  # about the asked rate (Opus is VBR), far under the FLAC's
    assert _cached(node, library["ids"]["song"], "opus", 96)


def test_time_offset_starts_later(node, alice: Listener, library: dict[str, Any]) -> None:
    r = alice.stream(library["ids"]["song"], format="mp3", maxBitRate=128, timeOffset=15)
    assert r.status_code == 200, r.text
    _, seconds, _ = _decoded(r.content)
    assert abs(seconds - 5.0) < 0.2, seconds
    r = alice.stream(library["ids"]["song"], format="opus", maxBitRate=64, timeOffset="12.5")
    _, seconds, _ = _decoded(r.content)
    assert abs(seconds - 7.5) < 0.1, seconds
    # A seek is a one-off: never cached.
    assert not _cached(node, library["ids"]["song"], "opus", 64)
    assert alice.stream(library["ids"]["song"], format="mp3", timeOffset="-3").json()["subsonic-response"][
        "error"]["code"] == 0


def test_first_bytes_arrive_before_the_encode_ends(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["long"]
    with alice.rest.stream("GET", "/rest/stream", params=alice.params(id=f"tr-{track}", format="mp3",
                                                                        maxBitRate=128)) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        began = time.monotonic()
        chunks = r.iter_bytes()
        first = next(chunks)
        assert first[:3] == b"ID3" or first[0] == 0xFF
        # Ten minutes at 128 kbit/s is 9.6 MB; the encode is paced (30 s of audio, then 16x realtime), so a reader
        # taking everything it can has far less than the whole after a second, and nothing is kept yet.
        got = len(first)
        while time.monotonic() - began < 1.0:
            got += len(next(chunks))
        assert 30 * 16_000 <= got < 80 * 16_000, got  # unpaced, this machine encodes about 140 s in that second
        assert not _cached(node, track, "mp3", 128)


def test_second_play_is_the_cached_file(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["song"]
    first = alice.stream(track, format="mp3", maxBitRate=160)
    assert first.status_code == 200 and "etag" not in first.headers
    sha, size = _wait_cached(node, track, "mp3", 160)
    assert size == len(first.content) and sha in stored_files(node)
    second = alice.stream(track, format="mp3", maxBitRate=160)
    assert second.content == first.content
    assert second.headers["content-length"] == str(size) and second.headers["etag"] == f'"{sha}"'
    assert second.headers["content-type"] == "audio/mpeg"
    part = alice.rest.get("/rest/stream", params=alice.params(id=f"tr-{track}", format="mp3", maxBitRate=160),
                          headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == first.content[1000:2000]
    assert len(_cached(node, track, "mp3", 160)) == 1


def test_a_listener_who_leaves_leaves_nothing(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["long"]
    with httpx.Client(base_url=node.url, timeout=30) as c, c.stream(
            "GET", "/rest/stream", params=alice.params(id=f"tr-{track}", format="mp3", maxBitRate=96)) as r:
        # (an error in the envelope is HTTP 200 too: the content type tells them apart)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg", r.read()
        # Keep the iterator: a generator dropped at once is closed, and httpx then closes the stream, which is the
        # listener leaving before the check below (a race the loaded CI machine lost now and then).
        chunks = r.iter_bytes()
        next(chunks)
        assert _temp_files(node), ("the copy for the cache should be under way",
                                   _cached(node, track, "mp3", 96), list((node.data / "tmp").iterdir()))
    deadline = time.monotonic() + 10
    while _temp_files(node):
        assert time.monotonic() < deadline, _temp_files(node)
        time.sleep(0.05)
    time.sleep(0.5)
    assert not _cached(node, track, "mp3", 96)
    assert not _temp_files(node)


def test_deleting_the_track_frees_its_transcodes(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["gone"]
    blobs = set()
    for fmt, kbps in (("mp3", 128), ("opus", 64)):
        assert alice.stream(track, format=fmt, maxBitRate=kbps).status_code == 200
        blobs.add(_wait_cached(node, track, fmt, kbps)[0])
    assert blobs <= stored_files(node)
    source = _source(node, track)
    r = alice.artist.http.delete(f"/tracks/{track}", headers={"X-CSRF-Token": alice.artist.csrf})
    assert r.status_code in (200, 204), r.text
    assert not db_rows(node, "SELECT 1 FROM transcodes WHERE source_sha256 = ?", (source,))
    assert not db_rows(node, "SELECT 1 FROM blobs WHERE sha256 IN (?, ?)", tuple(sorted(blobs)))
    assert not blobs & stored_files(node)


def test_stored_mp3_within_the_limit_is_sent_unchanged(node, alice: Listener, library: dict[str, Any]) -> None:
    track, original = library["ids"]["mp3"], library["files"]["mp3"].read_bytes()
    for params in ({"maxBitRate": 320}, {"format": "mp3", "maxBitRate": 320}, {"format": "raw", "maxBitRate": 64},
                   {"maxBitRate": 0}, {}):
        r = alice.stream(track, **params)
        assert r.status_code == 200 and r.content == original, params
        assert r.headers["accept-ranges"] == "bytes"
    lower = alice.stream(track, maxBitRate=64)
    assert lower.content != original and lower.headers["content-type"] == "audio/mpeg"
    assert abs(len(lower.content) * 8 / _decoded(lower.content)[1] / 1000 - 64) < 4


def test_head_and_estimated_length(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["song"]
    params = alice.params(id=f"tr-{track}", format="mp3", maxBitRate=112)
    head = alice.rest.head("/rest/stream", params=params)
    assert head.status_code == 200 and head.headers["content-type"] == "audio/mpeg" and head.content == b""
    assert not _cached(node, track, "mp3", 112)  # nothing was encoded
    head = alice.rest.head("/rest/stream", params={**params, "estimateContentLength": "true"})
    assert head.status_code == 200 and head.content == b""
    r = alice.rest.get("/rest/stream", params={**params, "estimateContentLength": "true"})
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content) == int(head.headers["content-length"])
    assert len(r.content) == 20 * 112_000 // 8
    _, seconds, _ = _decoded(r.content, cut=True)
    assert abs(seconds - 20.0) < 0.3


def test_download_never_transcodes(node, alice: Listener, library: dict[str, Any]) -> None:
    r = alice.rest.get("/rest/download", params=alice.params(id=f"tr-{library['ids']['song']}", format="mp3",
                                                              maxBitRate=64))
    assert r.status_code == 200 and r.content == library["files"]["song"].read_bytes()


def test_unknown_song_is_an_envelope_error(node, alice: Listener) -> None:
    r = alice.rest.get("/rest/stream", params=alice.params(id="tr-999999", format="mp3", maxBitRate=128))
    assert r.json()["subsonic-response"]["error"]["code"] == 70


def test_py_sonic_streams_a_transcode(node, alice: Listener, library: dict[str, Any]) -> None:
    parts = urlsplit(node.url)
    conn = libsonic.Connection(f"{parts.scheme}://{parts.hostname}", "stalice", alice.token, port=parts.port,
                               legacyAuth=True)
    response = conn.stream(f"tr-{library['ids']['song']}", maxBitRate=128, tformat="mp3")
    data = response.read()
    codec, seconds, _ = _decoded(data)
    assert codec.startswith("mp3") and abs(seconds - 20.0) < 0.2
    assert abs(len(data) * 8 / seconds / 1000 - 128) < 4


def test_transcodes_past_the_bound_wait_then_are_refused(node, alice: Listener, library: dict[str, Any]) -> None:
    track = library["ids"]["long"]
    with httpx.Client(base_url=node.url, timeout=30) as c:
        held = []
        for offset in (10, 20):  # an offset: never cached, always a live encode holding a slot
            r = c.send(c.build_request("GET", "/rest/stream", params=alice.params(
                id=f"tr-{track}", format="mp3", maxBitRate=128, timeOffset=offset)), stream=True)
            assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
            held.append(r)
        began = time.monotonic()
        refused = alice.stream(track, format="mp3", maxBitRate=128, timeOffset=30)
        waited = time.monotonic() - began
        error = refused.json()["subsonic-response"]["error"]
        assert error["code"] == 0 and "transcoding slots" in error["message"], error
        assert waited >= 2.5  # it waited for a slot before giving up
        # A stored file needs no slot.
        assert alice.stream(library["ids"]["mp3"]).content == library["files"]["mp3"].read_bytes()
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            r = c.send(c.build_request("GET", "/rest/stream", params=alice.params(
                id=f"tr-{track}", format="mp3", maxBitRate=128, timeOffset=30)), stream=True)
            if r.headers["content-type"] == "audio/mpeg":
                break
            r.close()
            assert time.monotonic() < deadline, "no slot came free after one was let go"
        held.append(r)
        assert r.status_code == 200
        for r in held:
            r.close()


async def _source_blob(store: BlobStore, db: Database, data: bytes) -> str:
    blob = await store.put_bytes(data, "audio/flac")
    async with db.write() as conn:
        await store.incref(conn, blob.sha256)  # as a track holds its original
    return blob.sha256


async def _keep(cache: TranscodeCache, t: Transcode, data: bytes) -> str | None:
    writer = await cache.open_writer()
    await writer.write(data)
    return await cache.keep(t, writer)


async def test_cache_evicts_the_least_recently_used(db: Database, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    cache = TranscodeCache(db, store, max_bytes=1_000_000)
    sources = [await _source_blob(store, db, f"source {i}".encode()) for i in range(3)]
    kept = []
    for i, source in enumerate(sources):
        kept.append(await _keep(cache, Transcode(source, "mp3", 128), bytes([i]) * 400_000))
        await db.execute("UPDATE transcodes SET last_used_at = ? WHERE blob_sha256 = ?", (1000.0 + i, kept[-1]))
    # 1.2 MB in a 1 MB cache: the first, least recently used, went, and its file with it.
    rows = await db.fetchall("SELECT blob_sha256 FROM transcodes ORDER BY last_used_at")
    assert [r[0] for r in rows] == kept[1:]
    assert not store.path_for(kept[0]).exists() and store.path_for(kept[1]).exists()
    # Played again, the second becomes the most recent: the next one evicts the third instead.
    await db.execute("UPDATE transcodes SET last_used_at = 0 WHERE blob_sha256 = ?", (kept[1],))
    assert await cache.lookup(Transcode(sources[1], "mp3", 128)) == kept[1]
    await _keep(cache, Transcode(sources[0], "opus", 64), b"\x07" * 400_000)
    assert await cache.lookup(Transcode(sources[2], "mp3", 128)) is None
    assert await cache.lookup(Transcode(sources[1], "mp3", 128)) == kept[1]
    # Bigger than the whole cache: streamed, never kept.
    writer = await cache.open_writer()
    with pytest.raises(Exception, match="larger than"):
        await writer.write(b"x" * 1_000_001)
    assert not list((tmp_path / "tmp").iterdir())


async def test_two_first_plays_of_one_key(db: Database, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", tmp_path / "tmp", db)
    cache = TranscodeCache(db, store, max_bytes=10_000_000)
    source = await _source_blob(store, db, b"a flac")
    t = Transcode(source, "mp3", 128)
    same = await asyncio.gather(_keep(cache, t, b"encoded" * 1000), _keep(cache, t, b"encoded" * 1000))
    assert sum(kept is not None for kept in same) == 1  # both encoded and committed; one row took the bytes
    different = await _keep(cache, t, b"other bytes")  # a later encode of a key already kept: dropped
    assert different is None
    rows = await db.fetchall("SELECT blob_sha256 FROM transcodes")
    assert len(rows) == 1 and store.path_for(rows[0][0]).read_bytes() == b"encoded" * 1000
    assert (await db.fetchone("SELECT refcount FROM blobs WHERE sha256 = ?", (rows[0][0],)))[0] == 1
    assert not await db.fetchall("SELECT 1 FROM blobs WHERE sha256 = ?",
                                 (hashlib.sha256(b"other bytes").hexdigest(),))
    assert not list((tmp_path / "tmp").iterdir())
    # The source freed (its track deleted): its transcodes go with it, rows and files.
    async with db.write() as conn:
        await store.decref(conn, source)
    await store.remove_unreferenced([source])
    assert not await db.fetchall("SELECT 1 FROM transcodes")
    assert not store.path_for(rows[0][0]).exists()


def _row(ext: str, codec: str, kbps: int, web: bool) -> dict[str, Any]:
    return {"original_sha": "o" * 64, "original_mime": f"audio/{ext}", "original_ext": ext, "codec": codec,
            "bitrate": kbps * 1000, "web_sha": "w" * 64 if web else None, "source": "upload"}


@pytest.mark.parametrize(("row", "params", "sent"), [
    # Nothing asked, or raw: the stream file as stored (the rendition when there is one).
    (_row("flac", "flac", 900, False), {}, "original"),
    (_row("aiff", "pcm_s16be", 1411, True), {}, "rendition"),
    (_row("aiff", "pcm_s16be", 1411, True), {"format": "raw", "maxBitRate": "64", "timeOffset": "9"}, "rendition"),
    (_row("flac", "flac", 900, False), {"maxBitRate": "0"}, "original"),
    # A stored file within the limit, in the asked format (or any, when none is asked), is sent unchanged.
    (_row("mp3", "mp3", 128, False), {"maxBitRate": "320"}, "original"),
    (_row("mp3", "mp3", 128, False), {"format": "mp3", "maxBitRate": "128"}, "original"),
    (_row("flac", "flac", 900, False), {"maxBitRate": "1000"}, "original"),
    (_row("aiff", "pcm_s16be", 1411, True), {"maxBitRate": "320"}, "rendition"),
    (_row("aiff", "pcm_s16be", 1411, True), {"format": "mp3"}, "rendition"),
    (_row("flac", "flac", 900, False), {"format": "flac"}, "original"),
    (_row("flac", "flac", 900, False), {"format": "aac"}, "original"),  # a format plyrd cannot make: as stored
    # Otherwise a transcode of the original, snapped to a bitrate the encoder takes.
    (_row("flac", "flac", 900, False), {"format": "mp3", "maxBitRate": "128"}, ("mp3", 128, 0.0)),
    (_row("flac", "flac", 900, False), {"format": "mp3"}, ("mp3", 192, 0.0)),
    (_row("flac", "flac", 900, False), {"maxBitRate": "150"}, ("mp3", 128, 0.0)),
    (_row("flac", "flac", 900, False), {"maxBitRate": "999", "format": "mp3"}, ("mp3", 320, 0.0)),
    (_row("mp3", "mp3", 320, False), {"maxBitRate": "20"}, ("mp3", 32, 0.0)),
    (_row("flac", "flac", 900, False), {"format": "opus"}, ("opus", 128, 0.0)),
    (_row("flac", "flac", 900, False), {"format": "ogg", "maxBitRate": "96"}, ("opus", 96, 0.0)),
    (_row("aiff", "pcm_s16be", 1411, True), {"maxBitRate": "128"}, ("mp3", 128, 0.0)),
    (_row("mp3", "mp3", 128, False), {"maxBitRate": "320", "timeOffset": "30"}, ("mp3", 320, 30.0)),
    (_row("flac", "flac", 900, False), {"timeOffset": "12.5"}, ("mp3", 192, 12.5)),
])
def test_what_stream_sends(row: dict[str, Any], params: dict[str, str], sent: Any) -> None:
    choice = choose(row, params.get("format"), params.get("maxBitRate"), params.get("timeOffset"))  # type: ignore[arg-type]
    if sent == "original":
        assert choice == Stored(row["original_sha"], row["original_mime"])
    elif sent == "rendition":
        assert choice == Stored(row["web_sha"], "audio/mpeg")
    else:
        assert choice == Transcode(row["original_sha"], *sent)


def test_malformed_limits_are_refused() -> None:
    row = _row("flac", "flac", 900, False)
    for params in ({"maxBitRate": "-1"}, {"maxBitRate": "12k"}, {"timeOffset": "nan"}, {"timeOffset": "1e9"}):
        with pytest.raises(SubsonicError):
            choose(row, params.get("format"), params.get("maxBitRate"), params.get("timeOffset"))  # type: ignore[arg-type]
    assert announced(row) is None  # type: ignore[arg-type]
    assert announced(_row("aiff", "pcm_s16be", 1411, True)) == ("mp3", "audio/mpeg")  # type: ignore[arg-type]
