"""plyrd.media against real audio and images generated in the test (see audio_samples.py)."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from audio_samples import FORMATS, SPECS, jpeg_bytes, make_audio, make_video, png_bytes
from PIL import Image

from plyrd.errors import TooLarge, Unprocessable, UnsupportedMedia
from plyrd.media.analysis import analyse, loudness, peaks
from plyrd.media.artwork import process_image
from plyrd.media.encoding import id3v2_tag
from plyrd.media.probe import AudioInfo, needs_web_rendition, probe
from plyrd.media.transcode import TranscodeCancelled, lame_library, transcode_to_mp3

TAGS = {
    "title": "Nuit blanche — été",  # not Latin-1: exercises UTF-16 ID3 frames
    "artist": "Ärtist",
    "album": "The Album",
    "album_artist": "Various",
    "track": "3/12",
    "date": "2021-04-05",
    "genre": "Ambient",
}

# fmt -> container, codec, extension, bit depth, web playable
EXPECTED: dict[str, tuple[str, str, str, int | None, bool]] = {
    "mp3": ("mp3", "mp3", "mp3", None, True),
    "wav": ("wav", "pcm_s16le", "wav", 16, True),
    "wav24": ("wav", "pcm_s24le", "wav", 24, True),
    "flac": ("flac", "flac", "flac", 16, True),
    "flac24": ("flac", "flac", "flac", 24, True),
    "aiff": ("aiff", "pcm_s16be", "aiff", 16, False),
    "m4a-aac": ("m4a", "aac", "m4a", None, True),
    "m4a-alac": ("m4a", "alac", "m4a", 16, False),
    "ogg-vorbis": ("ogg", "vorbis", "ogg", None, False),
    "ogg-opus": ("ogg", "opus", "ogg", None, False),
    "webm-opus": ("webm", "opus", "webm", None, False),
}
assert set(EXPECTED) == set(FORMATS)


def sample(tmp_path: Path, fmt: str, **kw) -> Path:
    return make_audio(tmp_path / f"{fmt}.{SPECS[fmt].ext}", fmt, **kw)


# --- probe -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_probe_each_format(tmp_path: Path, fmt: str) -> None:
    path = sample(tmp_path, fmt, seconds=2.0, tags=TAGS)
    info = probe(path)
    container, codec, ext, depth, playable = EXPECTED[fmt]
    assert (info.container, info.codec, info.extension) == (container, codec, ext)
    assert info.duration == pytest.approx(2.0, abs=0.03)
    assert info.sample_rate == SPECS[fmt].rate
    assert info.channels == 2
    assert info.bit_depth == depth
    assert info.lossless is (depth is not None)
    assert info.web_playable is playable
    assert info.size_bytes == path.stat().st_size
    assert info.bitrate > 0
    assert info.mime.startswith("audio/")
    t = info.tags
    assert (t.title, t.artist, t.album) == (TAGS["title"], TAGS["artist"], TAGS["album"])
    assert (t.track_number, t.year, t.genre) == (3, 2021, "Ambient")
    assert info.cover is None


def test_probe_mono_and_no_tags(tmp_path: Path) -> None:
    info = probe(sample(tmp_path, "flac", channels=1, sample_rate=48000))
    assert (info.channels, info.sample_rate) == (1, 48000)
    assert info.tags.title is None and info.tags.year is None


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a-aac", "m4a-alac"])
def test_probe_extracts_cover(tmp_path: Path, fmt: str) -> None:
    cover = jpeg_bytes(40, 30)
    info = probe(sample(tmp_path, fmt, cover=cover, tags={"title": "With art"}))
    assert info.cover is not None
    assert info.cover.data == cover
    assert info.cover.mime == "image/jpeg"
    assert info.tags.title == "With art"
    assert info.duration == pytest.approx(2.0, abs=0.03)  # the picture stream does not count as audio or video


def test_probe_decides_by_bytes_not_name(tmp_path: Path) -> None:
    real_mp3 = sample(tmp_path, "mp3")
    disguised = tmp_path / "song.flac"
    disguised.write_bytes(real_mp3.read_bytes())
    assert probe(disguised).container == "mp3"


def test_probe_browser_recording_without_duration(tmp_path: Path) -> None:
    # MediaRecorder's WebM has no Duration element: the length is found by demuxing.
    path = sample(tmp_path, "webm-opus", seconds=3.0, seekable=False, channels=1)
    info = probe(path)
    assert info.container == "webm"
    assert info.duration == pytest.approx(3.0, abs=0.05)


def test_needs_web_rendition() -> None:
    def info(container: str, codec: str, playable: bool, size: int = 1000) -> AudioInfo:
        return AudioInfo(container, codec, 1.0, 44100, 2, None, 1, False, size, container, "audio/x", playable)

    limit = 50_000_000
    assert not needs_web_rendition(info("mp3", "mp3", True), wav_max_bytes=limit)
    assert not needs_web_rendition(info("m4a", "aac", True), wav_max_bytes=limit)
    assert not needs_web_rendition(info("flac", "flac", True), wav_max_bytes=limit)
    assert not needs_web_rendition(info("wav", "pcm_s16le", True, size=limit), wav_max_bytes=limit)
    assert needs_web_rendition(info("wav", "pcm_s16le", True, size=limit + 1), wav_max_bytes=limit)
    for container, codec in [("aiff", "pcm_s16be"), ("m4a", "alac"), ("ogg", "opus"), ("webm", "opus")]:
        assert needs_web_rendition(info(container, codec, False), wav_max_bytes=limit)


def test_web_playable_matches_rendition_rule_on_real_files(tmp_path: Path) -> None:
    for fmt in ("aiff", "m4a-alac", "ogg-vorbis", "webm-opus"):
        assert needs_web_rendition(probe(sample(tmp_path, fmt, seconds=0.5)), wav_max_bytes=10**9)
    wav = probe(sample(tmp_path, "wav", seconds=0.5))
    assert not needs_web_rendition(wav, wav_max_bytes=10**9)
    assert needs_web_rendition(wav, wav_max_bytes=1000)


# --- probe: refusals -------------------------------------------------------------------------------------------------


def refused(path: Path, error: type[Exception], *words: str, **kw) -> str:
    with pytest.raises(error) as caught:
        probe(path, **kw)
    message = str(caught.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_probe_refuses_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.mp3").write_bytes(b"")
    refused(tmp_path / "e.mp3", UnsupportedMedia, "empty")


def test_probe_refuses_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "r.wav").write_bytes(np.random.default_rng(7).bytes(64 * 1024))
    refused(tmp_path / "r.wav", UnsupportedMedia, "not audio", "accepted")


def test_probe_refuses_text_named_mp3(tmp_path: Path) -> None:
    (tmp_path / "notes.mp3").write_text("These are my lyrics, not a song.\n" * 50)
    refused(tmp_path / "notes.mp3", UnsupportedMedia, "text")


def test_probe_refuses_png(tmp_path: Path) -> None:
    (tmp_path / "cover.mp3").write_bytes(png_bytes())
    refused(tmp_path / "cover.mp3", UnsupportedMedia, "PNG image")


def test_probe_refuses_video(tmp_path: Path) -> None:
    refused(make_video(tmp_path / "v.m4a"), Unprocessable, "no audio stream")
    refused(make_video(tmp_path / "va.m4a", with_audio=True), UnsupportedMedia, "video")


@pytest.mark.parametrize("fmt", ["flac", "mp3", "wav", "aiff", "m4a-aac", "webm-opus"])
def test_probe_refuses_truncated(tmp_path: Path, fmt: str) -> None:
    path = sample(tmp_path, fmt, seconds=8.0, kind="music")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, Unprocessable, "truncated")


def test_probe_refuses_corrupt_start(tmp_path: Path) -> None:
    path = sample(tmp_path, "flac", seconds=4.0, kind="music")
    data = bytearray(path.read_bytes())
    data[200:60_000] = np.random.default_rng(1).bytes(59_800)  # header intact, audio garbage
    path.write_bytes(bytes(data))
    refused(path, Unprocessable)


def test_probe_refuses_over_duration(tmp_path: Path) -> None:
    path = sample(tmp_path, "ogg-opus", seconds=3.0)
    refused(path, Unprocessable, "0:03", "limit", max_duration=2.0)
    assert probe(path, max_duration=4.0).duration == pytest.approx(3.0, abs=0.03)


# --- transcode -------------------------------------------------------------------------------------------------------

NON_WEB = ["aiff", "wav24", "m4a-alac", "ogg-vorbis", "ogg-opus", "webm-opus", "flac"]


@pytest.mark.parametrize("fmt", NON_WEB)
def test_transcode_to_web_mp3(tmp_path: Path, fmt: str) -> None:
    src = sample(tmp_path, fmt, seconds=3.0, kind="music", tags=TAGS)
    source = probe(src)
    result = transcode_to_mp3(src, tmp_path / "out.mp3")
    out = probe(tmp_path / "out.mp3")
    assert (out.container, out.codec, out.sample_rate, out.channels) == ("mp3", "mp3", 44100, 2)
    assert out.bitrate == 320_000
    assert out.duration == pytest.approx(source.duration, abs=0.1)
    assert result.duration == pytest.approx(source.duration, abs=0.1)
    assert (out.tags.title, out.tags.artist, out.tags.album) == (TAGS["title"], TAGS["artist"], TAGS["album"])
    assert out.tags.track_number == 3 and out.tags.year == 2021
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_transcode_keeps_mono_and_reports_progress(tmp_path: Path) -> None:
    src = sample(tmp_path, "wav", seconds=4.0, channels=1, sample_rate=48000)
    seen: list[float] = []
    transcode_to_mp3(src, tmp_path / "mono.mp3", progress=seen.append)
    out = probe(tmp_path / "mono.mp3")
    assert (out.channels, out.sample_rate, out.bitrate) == (1, 44100, 320_000)
    assert out.duration == pytest.approx(4.0, abs=0.1)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 0.1 and len(seen) <= 101


def test_transcode_with_pyav_encoder(tmp_path: Path) -> None:
    src = sample(tmp_path, "aiff", seconds=2.0, tags={"title": "Fallback"})
    result = transcode_to_mp3(src, tmp_path / "out.mp3", encoder="pyav")
    out = probe(tmp_path / "out.mp3")
    assert result.encoder == "pyav"
    assert (out.bitrate, out.sample_rate, out.tags.title) == (320_000, 44100, "Fallback")
    assert out.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.skipif(lame_library() is None, reason="no system libmp3lame")
def test_transcode_uses_system_lame_when_present(tmp_path: Path) -> None:
    assert transcode_to_mp3(sample(tmp_path, "wav", seconds=0.5), tmp_path / "o.mp3").encoder == "lame"


def test_transcodes_in_parallel_threads(tmp_path: Path) -> None:
    # How the node runs them: several at once in worker threads, each with its own encoder state.
    sources = [sample(tmp_path, fmt, seconds=3.0, kind="music") for fmt in ("flac", "ogg-opus", "wav24")]
    results: dict[int, float] = {}

    def run(i: int, src: Path) -> None:
        results[i] = transcode_to_mp3(src, tmp_path / f"out{i}.mp3").duration

    threads = [threading.Thread(target=run, args=(i, src)) for i, src in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(sources)):
        out = probe(tmp_path / f"out{i}.mp3")
        assert out.bitrate == 320_000 and out.duration == pytest.approx(3.0, abs=0.1) == results[i]


def test_transcode_cancel_leaves_nothing(tmp_path: Path) -> None:
    src = sample(tmp_path, "flac", seconds=20.0)
    cancel = threading.Event()

    def progress(fraction: float) -> None:
        if fraction > 0.2:
            cancel.set()

    with pytest.raises(TranscodeCancelled):
        transcode_to_mp3(src, tmp_path / "out.mp3", progress=progress, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flac.flac"]


def test_transcode_refuses_non_audio_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.flac").write_bytes(b"definitely not audio " * 100)
    with pytest.raises(UnsupportedMedia):
        transcode_to_mp3(tmp_path / "x.flac", tmp_path / "out.mp3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac"]


def test_id3v2_tag_layout() -> None:
    from plyrd.media.probe import Tags

    tag = id3v2_tag(Tags(title="Été", artist="Bob"))
    assert tag[:5] == b"ID3\x03\x00"
    size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
    assert size == len(tag) - 10
    assert b"TPE1" in tag and b"\x00Bob" in tag  # Latin-1 when it fits
    assert id3v2_tag(Tags()) == b""


# --- analysis --------------------------------------------------------------------------------------------------------


def test_peaks_shape_and_range(tmp_path: Path) -> None:
    values = peaks(sample(tmp_path, "flac", seconds=3.0, kind="music", amplitude=0.8), buckets=500)
    assert len(values) == 500
    assert all(0.0 <= v <= 1.0 for v in values)
    assert max(values) == pytest.approx(0.8, abs=0.02)
    assert min(values) > 0.05  # the music never stops


def test_peaks_keep_a_single_sample_transient(tmp_path: Path) -> None:
    values = peaks(sample(tmp_path, "wav", seconds=10.0, kind="click", amplitude=0.9), buckets=1000)
    loud = [i for i, v in enumerate(values) if v > 0]
    assert len(loud) == 1 and 495 <= loud[0] <= 505
    assert values[loud[0]] == pytest.approx(0.9, abs=0.001)


def test_peaks_of_very_short_audio_fill_the_bar(tmp_path: Path) -> None:
    values = peaks(sample(tmp_path, "wav", seconds=0.01), buckets=1000)
    assert len(values) == 1000 and max(values) > 0.4


def test_loudness_loud_and_quiet_differ(tmp_path: Path) -> None:
    quiet = loudness(make_audio(tmp_path / "q.flac", "flac", seconds=4.0, kind="music", amplitude=0.05))
    loud = loudness(make_audio(tmp_path / "l.flac", "flac", seconds=4.0, kind="music", amplitude=0.8))
    assert quiet.integrated_lufs is not None and loud.integrated_lufs is not None
    assert loud.integrated_lufs > quiet.integrated_lufs
    # 20*log10(0.8/0.05) = 24 dB apart, and the gains mirror it around the -18 LUFS reference.
    assert quiet.track_gain_db - loud.track_gain_db == pytest.approx(24.1, abs=0.5)
    assert loud.track_gain_db == pytest.approx(-18.0 - loud.integrated_lufs, abs=0.01)
    assert loud.peak == pytest.approx(0.8, abs=0.01)


def test_loudness_of_silence(tmp_path: Path) -> None:
    result = loudness(sample(tmp_path, "wav", seconds=2.0, kind="silence"), true_peak=True)
    assert result.integrated_lufs is None
    assert result.track_gain_db == 0.0
    assert result.peak == 0.0


def test_analyse_in_one_pass_matches(tmp_path: Path) -> None:
    path = sample(tmp_path, "ogg-opus", seconds=3.0, kind="music", amplitude=0.5)
    both = analyse(path, buckets=200, true_peak=True)
    assert both.peaks == peaks(path, buckets=200)
    alone = loudness(path)
    assert both.loudness.integrated_lufs == alone.integrated_lufs
    assert both.loudness.true_peak_db is not None and both.loudness.true_peak_db > -7.0
    assert both.duration == pytest.approx(3.0, abs=0.05)


def test_mono_measures_like_the_same_stereo(tmp_path: Path) -> None:
    mono = loudness(make_audio(tmp_path / "m.wav", "wav", seconds=3.0, kind="music", channels=1))
    stereo = loudness(make_audio(tmp_path / "s.wav", "wav", seconds=3.0, kind="music", channels=2))
    assert mono.integrated_lufs == pytest.approx(stereo.integrated_lufs, abs=0.1)


# --- artwork ---------------------------------------------------------------------------------------------------------


def exif_jpeg(orientation: int, *, gps: bool = False) -> bytes:
    """40x20 stored: top half red, bottom half blue, with an EXIF Orientation tag."""
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 10, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def test_artwork_exif_rotation_comes_out_upright(tmp_path: Path) -> None:
    art = process_image(exif_jpeg(6, gps=True))  # 6: rotate 90 degrees clockwise to display
    assert (art.width, art.height) == (20, 40)
    for blob in (art.original_bytes, art.display_webp):
        im = Image.open(io.BytesIO(blob)).convert("RGB")
        assert im.size == (20, 40)
        # The stored top (red) ends on the right, the bottom (blue) on the left.
        left, right = im.getpixel((2, 20)), im.getpixel((17, 20))
        assert left[2] > 200 and left[0] < 60, left
        assert right[0] > 200 and right[2] < 60, right
    original = Image.open(io.BytesIO(art.original_bytes))
    assert art.original_mime == "image/jpeg" and original.format == "JPEG"
    assert len(original.getexif()) == 0  # orientation and GPS stripped from what will be public


def test_artwork_sizes(tmp_path: Path) -> None:
    big = Image.new("RGB", (3000, 2000), (10, 120, 200))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    art = process_image(buf.getvalue())
    assert (art.width, art.height) == (3000, 2000)
    assert art.display_size == (1000, 667) and art.thumb_size == (96, 64)
    assert Image.open(io.BytesIO(art.display_webp)).size == (1000, 667)
    assert Image.open(io.BytesIO(art.thumb_webp)).format == "WEBP"
    assert art.original_bytes == buf.getvalue() and art.original_mime == "image/png" and art.extension == "png"
    small = process_image(jpeg_bytes(50, 40))  # not enlarged
    assert small.display_size == (50, 40) and small.thumb_size == (50, 40)


def test_artwork_animated_gif_uses_first_frame_and_keeps_alpha() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    art = process_image(buf.getvalue())
    assert art.original_mime == "image/gif" and art.original_bytes == buf.getvalue()
    r, g, b = Image.open(io.BytesIO(art.display_webp)).convert("RGB").getpixel((32, 32))
    assert r > 200 and g < 50 and b < 50

    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = io.BytesIO()
    clear.save(out, "PNG")
    assert Image.open(io.BytesIO(process_image(out.getvalue()).thumb_webp)).mode == "RGBA"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ["empty"]),
        (b"just some words, no picture\n" * 10, ["text"]),
        (b"BM" + bytes(100), ["BMP"]),
        (b"\x00\x00\x00\x18ftypheic" + bytes(100), ["HEIC"]),
        (b"ID3\x03\x00" + bytes(100), ["MP3"]),
    ],
)
def test_artwork_refuses_non_images(data: bytes, words: list[str]) -> None:
    with pytest.raises(UnsupportedMedia) as caught:
        process_image(data)
    for word in words:
        assert word in str(caught.value)


def test_artwork_refuses_too_large_and_bombs() -> None:
    with pytest.raises(TooLarge, match="limit"):
        process_image(jpeg_bytes(), max_bytes=100)
    with pytest.raises(TooLarge, match="MP"):
        process_image(png_bytes(2000, 1000), max_pixels=1_000_000)
    # A tiny PNG whose header claims 100000x100000 pixels: refused before any decoding.
    png = bytearray(png_bytes(8, 8))
    ihdr = struct.pack(">II", 100_000, 100_000) + bytes(png[24:29])
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(TooLarge):
        process_image(bytes(png))


def test_artwork_refuses_truncated() -> None:
    data = Image.new("RGB", (400, 300), (1, 2, 3))
    buf = io.BytesIO()
    data.save(buf, "JPEG")
    with pytest.raises(Unprocessable):
        process_image(buf.getvalue()[: len(buf.getvalue()) // 3])


def test_samples_module_writes_what_it_says(tmp_path: Path) -> None:
    # Upload tests will lean on make_audio: its files must be the kinds they claim, at the length asked.
    for fmt in FORMATS:
        info = probe(sample(tmp_path, fmt, seconds=0.7))
        assert info.container == EXPECTED[fmt][0]
        assert info.duration == pytest.approx(0.7, abs=0.03)
    assert os.path.getsize(tmp_path / "wav.wav") == pytest.approx(0.7 * 44100 * 4, rel=0.01)
