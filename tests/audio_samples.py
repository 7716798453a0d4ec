"""Real audio files generated with PyAV, for tests and benchmarks.

`make_audio(path, fmt, seconds=...)` writes a genuine file of every format plyrd accepts, optionally with tags and an
embedded cover, so tests exercise the same demuxers and decoders as real uploads (no checked-in binaries, no mocks).

    make_audio(tmp_path / "a.flac", "flac", seconds=2, tags={"title": "T", "artist": "A"}, cover=jpeg_bytes())
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Spec:
    container: str
    codec: str
    ext: str
    sample_fmt: str | None = None  # None: the encoder's default
    rate: int = 44100
    options: dict[str, str] = field(default_factory=dict)  # muxer options
    codec_options: dict[str, str] = field(default_factory=dict)
    cover: bool = False  # whether the muxer can carry an attached picture


# Every accepted kind of upload. Keys are what tests pass as `fmt`.
SPECS: dict[str, Spec] = {
    "mp3": Spec("mp3", "libmp3lame", "mp3", options={"id3v2_version": "3"}, cover=True),
    "wav": Spec("wav", "pcm_s16le", "wav"),
    "wav24": Spec("wav", "pcm_s24le", "wav"),
    "flac": Spec("flac", "flac", "flac", sample_fmt="s16", cover=True),
    "flac24": Spec("flac", "flac", "flac", sample_fmt="s32", codec_options={"bits_per_raw_sample": "24"}, cover=True),
    # write_id3v2: otherwise the AIFF muxer keeps only the title.
    "aiff": Spec("aiff", "pcm_s16be", "aiff", options={"write_id3v2": "1"}),
    "m4a-aac": Spec("ipod", "aac", "m4a", cover=True),
    # ALAC defaults to 32-bit samples; s16p keeps a 16-bit source 16-bit.
    "m4a-alac": Spec("ipod", "alac", "m4a", sample_fmt="s16p", cover=True),
    # FFmpeg's native Vorbis encoder is flagged experimental (libvorbis is not in the wheel).
    "ogg-vorbis": Spec("ogg", "vorbis", "ogg", codec_options={"strict": "experimental"}),
    "ogg-opus": Spec("ogg", "libopus", "ogg", rate=48000),
    "webm-opus": Spec("webm", "libopus", "webm", rate=48000),
}
FORMATS = tuple(SPECS)

CHUNK = 4096  # samples per generated frame


def signal(kind: str, n: int, rate: int, *, amplitude: float, frequency: float, seed: int = 0) -> np.ndarray:
    """One channel of float32 audio in -1..1: "sine", "noise", "silence", "click" (silence with one full-amplitude
    sample in the middle: a transient a waveform must not lose) or "music" (a pulsing chord and a little noise)."""
    t = np.arange(n, dtype=np.float64) / rate
    if kind == "sine":
        x = np.sin(2 * np.pi * frequency * t)
    elif kind == "noise":
        x = np.random.default_rng(seed).uniform(-1, 1, n)
    elif kind == "silence":
        x = np.zeros(n)
    elif kind == "click":
        x = np.zeros(n)
        x[n // 2] = 1.0
    elif kind == "music":
        # Something an encoder has to work at: a chord, a 2 Hz amplitude pulse and a little noise.
        chord = sum(np.sin(2 * np.pi * f * t) for f in (frequency, frequency * 1.26, frequency * 1.5, frequency * 2.01))
        pulse = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 1.0 * t))
        x = chord / 4 * pulse + np.random.default_rng(seed).normal(0, 0.05, n)
        x = np.clip(x, -1, 1)
    else:
        raise ValueError(f"unknown signal {kind!r}")
    return (amplitude * x).astype(np.float32)


def make_audio(
    path: str | Path,
    fmt: str,
    *,
    seconds: float = 2.0,
    tags: dict[str, str] | None = None,
    cover: bytes | None = None,
    channels: int = 2,
    sample_rate: int | None = None,
    kind: str = "sine",
    amplitude: float = 0.5,
    frequency: float = 440.0,
    seekable: bool = True,
) -> Path:
    """Write `seconds` of audio as `fmt` (one of FORMATS) to `path` and return the path.

    tags: container metadata with FFmpeg's generic keys (title, artist, album, album_artist, track, date, genre); each
    muxer writes them its own way (ID3 frames, Vorbis comments, MP4 atoms, Matroska tags, RIFF INFO).
    cover: JPEG bytes, embedded as an attached picture (mp3, flac, m4a only).
    seekable=False writes through a pipe-like file, as a browser's MediaRecorder does: the muxer cannot go back to
    fill in the duration or an index (webm and ogg; MP4 cannot be written that way unfragmented).
    """
    spec = SPECS[fmt]
    path = Path(path)
    rate = sample_rate or spec.rate
    layout = "mono" if channels == 1 else "stereo"
    container_format = spec.container
    if cover is not None:
        if not spec.cover:
            raise ValueError(f"{fmt} cannot carry a cover here")
        if container_format == "ipod":
            container_format = "mp4"  # the ipod muxer refuses an mjpeg stream; mp4 writes it as `covr`
    total = round(seconds * rate)
    mono = signal(kind, total, rate, amplitude=amplitude, frequency=frequency)
    if not seekable and spec.container in ("ipod", "mp4"):
        raise ValueError("an unfragmented MP4 needs a seekable output")
    with (
        open(path, "wb") as raw,
        av.open(raw if seekable else _Pipe(raw), "w", format=container_format, options=dict(spec.options)) as out,
    ):
        stream = out.add_stream(spec.codec, rate=rate, options=dict(spec.codec_options))
        stream.layout = layout
        if spec.sample_fmt:
            stream.format = spec.sample_fmt
        for key, value in (tags or {}).items():
            out.metadata[key] = value
        if cover is not None:
            _add_cover(out, cover)
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for start in range(0, total, CHUNK):
            chunk = mono[start : start + CHUNK]
            planes = np.ascontiguousarray(np.tile(chunk, (channels, 1)))
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable view of a file."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        self._raw = raw

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:  # type: ignore[override]
        return self._raw.write(data)


def _add_cover(out: av.container.OutputContainer, jpeg: bytes) -> None:
    from PIL import Image

    width, height = Image.open(io.BytesIO(jpeg)).size
    pic = out.add_stream("mjpeg")
    pic.width, pic.height = width, height
    pic.pix_fmt = "yuvj420p"
    pic.disposition = av.stream.Disposition.attached_pic
    packet = av.Packet(jpeg)
    packet.stream = pic
    packet.pts = packet.dts = 0
    out.mux(packet)


def make_video(path: str | Path, *, seconds: float = 1.0, with_audio: bool = False) -> Path:
    """A small MP4 with an MPEG-4 video stream (and optionally AAC audio): a video is not a track."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=44100, layout="stereo") if with_audio else None
        for i in range(round(seconds * 10)):
            img = np.full((48, 64, 3), (i * 20) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            n = round(seconds * 44100)
            for start in range(0, n, 1024):
                planes = np.zeros((2, min(1024, n - start)), dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, start
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def jpeg_bytes(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small JPEG, e.g. for a cover."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


def png_bytes(width: int = 32, height: int = 24, color: tuple[int, int, int] = (30, 200, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()
