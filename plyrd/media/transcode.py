"""The web rendition: any accepted audio file to MP3, 320 kbit/s CBR, 44.1 kHz, mono kept mono (plyr.fm's target).

Decoding and resampling go through PyAV. Encoding uses the system's libmp3lame through ctypes when there is one: the
LAME bundled in PyAV 18's wheel encodes about three times slower than Debian's build of the same library (measured
here on one core, 320k CBR: 34-38x realtime against 107-121x), which was the whole gap between PyAV and the ffmpeg
command line. Without a system LAME (`libmp3lame0` on Debian), PyAV's encoder is used. CD-format PCM (interleaved
16-bit at 44.1 kHz) goes to LAME as decoded; anything else is resampled to planar float first.

The output is written to a temporary name beside `dst` and renamed into place, so `dst` is never half-written.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import secrets
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import av
import numpy as np

from plyrd.errors import InvalidInput, Unprocessable
from plyrd.media.probe import Tags, open_audio, pick_audio_stream, read_tags

Encoder = Literal["auto", "lame", "pyav"]

_MAX_BAD_PACKETS = 16  # a few damaged packets mid-file are skipped (as ffmpeg does); more means a broken file
_PROGRESS_STEP = 0.01


class TranscodeCancelled(Exception):
    """The `cancel` event was set; nothing was left at `dst`."""


@dataclass(frozen=True)
class TranscodeResult:
    path: Path
    duration: float  # seconds of audio encoded
    size_bytes: int
    encoder: str  # "lame" (system libmp3lame) or "pyav"


def transcode_to_mp3(
    src: str | Path,
    dst: str | Path,
    *,
    bitrate: int = 320_000,
    sample_rate: int = 44100,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    encoder: Encoder = "auto",
) -> TranscodeResult:
    """Encode `src` as a CBR MP3 at `dst`, copying title/artist/album (and track, year, genre) into an ID3v2.3 tag.

    progress: called with the fraction done (0..1), at most about a hundred times, from the calling thread.
    cancel: checked between packets; when set, the partial output is removed and TranscodeCancelled raised.
    Raises Unprocessable if the audio cannot be decoded, UnsupportedMedia if `src` is not accepted audio.
    """
    if bitrate // 1000 not in _MP3_BITRATES:
        raise InvalidInput(f"{bitrate} bit/s is not an MP3 bitrate; use one of {sorted(_MP3_BITRATES)} kbit/s.")
    if encoder == "lame" and lame_library() is None:
        raise RuntimeError("No system libmp3lame found (install libmp3lame0).")
    use_lame = encoder == "lame" or (encoder == "auto" and lame_library() is not None)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.part")
    try:
        with open_audio(src) as c:
            stream = pick_audio_stream(c)
            channels = 1 if (stream.codec_context.channels or 2) == 1 else 2  # more than two: downmix to stereo
            tags = read_tags(c, stream)
            total = c.duration / av.time_base if c.duration and c.duration > 0 else None
            with open(tmp, "wb") as out:
                sink: _Sink
                if use_lame:
                    sink = _LameSink(out, channels=channels, rate=sample_rate, bitrate=bitrate, tags=tags)
                else:
                    sink = _PyAVSink(out, channels=channels, rate=sample_rate, bitrate=bitrate, tags=tags)
                seconds = _pump(c, stream, sink, sample_rate, channels, total, progress, cancel)
                sink.close()
                out.flush()
                os.fsync(out.fileno())  # the rename below must not expose an empty file after a crash
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if progress is not None:
        progress(1.0)
    return TranscodeResult(
        path=dst, duration=seconds, size_bytes=dst.stat().st_size, encoder="lame" if use_lame else "pyav"
    )


class _Sink(Protocol):
    planar_format: str

    def accepts(self, frame: av.AudioFrame, rate: int, channels: int) -> bool: ...

    def write(self, frame: av.AudioFrame) -> None: ...

    def close(self) -> None: ...


def _pump(
    c: av.container.InputContainer,
    stream: av.AudioStream,
    sink: _Sink,
    rate: int,
    channels: int,
    total: float | None,
    progress: Callable[[float], None] | None,
    cancel: threading.Event | None,
) -> float:
    """Decode, resample to the target rate/layout/format and hand frames to the sink. Returns seconds written."""
    resampler = av.AudioResampler(format=sink.planar_format, layout="mono" if channels == 1 else "stereo", rate=rate)
    written = 0
    bad = 0
    reported = 0.0
    for packet in c.demux(stream):
        if cancel is not None and cancel.is_set():
            raise TranscodeCancelled("The transcode was cancelled.")
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            bad += 1
            if bad > _MAX_BAD_PACKETS:
                raise Unprocessable(f"The audio could not be decoded: the file is corrupt ({e}).") from e
            continue
        for frame in frames:
            if sink.accepts(frame, rate, channels):  # CD-format PCM goes straight to LAME: no conversion pass
                sink.write(frame)
                written += frame.samples
                continue
            for out in resampler.resample(frame):
                sink.write(out)
                written += out.samples
        if progress is not None and total:
            done = min(written / rate / total, 0.999)
            if done - reported >= _PROGRESS_STEP:
                reported = done
                progress(done)
    for out in resampler.resample(None):
        sink.write(out)
        written += out.samples
    if written == 0:
        raise Unprocessable("The file contains no decodable audio.")
    return written / rate


# ---------------------------------------------------------------------------------------------------------------------
# Encoding with the system's libmp3lame

_MP3_BITRATES = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}
_JOINT_STEREO, _MONO = 1, 3  # LAME's MPEG_mode values
_init_lock = threading.Lock()  # LAME fills shared lookup tables on first init; keep inits one at a time


@functools.cache
def lame_library() -> ctypes.CDLL | None:
    """The OS's libmp3lame (3.99 or later, for float input), or None."""
    candidates = ["libmp3lame.so.0", "libmp3lame.so", "libmp3lame.0.dylib"]
    found = ctypes.util.find_library("mp3lame")
    if found:
        candidates.append(found)
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if not hasattr(lib, "lame_encode_buffer_ieee_float") or not hasattr(lib, "lame_get_lametag_frame"):
            continue
        gfp, i, p, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
        lib.lame_init.restype = gfp
        lib.lame_init.argtypes = []
        for setter in ("in_samplerate", "out_samplerate", "num_channels", "brate", "VBR", "mode", "bWriteVbrTag"):
            getattr(lib, f"lame_set_{setter}").argtypes = [gfp, i]
        lib.lame_set_write_id3tag_automatic.argtypes = [gfp, i]
        lib.lame_init_params.argtypes = [gfp]
        lib.lame_encode_buffer_ieee_float.argtypes = [gfp, p, p, i, p, i]
        lib.lame_encode_buffer.argtypes = [gfp, p, p, i, p, i]
        lib.lame_encode_buffer_interleaved.argtypes = [gfp, p, i, p, i]
        lib.lame_encode_flush.argtypes = [gfp, p, i]
        lib.lame_get_lametag_frame.argtypes = [gfp, p, n]
        lib.lame_get_lametag_frame.restype = n
        lib.lame_close.argtypes = [gfp]
        return lib
    return None


class _LameSink:
    """Planar float frames -> LAME -> file: [ID3v2.3][LAME Info frame][audio frames].

    LAME reserves its first frame for the Info tag (frame count, encoder delay and padding, so players and FFmpeg
    know the exact length and trim the gaps); it is written over that placeholder once the encode is done.
    """

    planar_format = "fltp"

    def __init__(self, out: BinaryIO, *, channels: int, rate: int, bitrate: int, tags: Tags) -> None:
        lib = lame_library()
        assert lib is not None
        self._lib, self._out, self._channels = lib, out, channels
        with _init_lock:
            gfp = lib.lame_init()
            if not gfp:
                raise MemoryError("lame_init failed")
            self._gfp = gfp
            lib.lame_set_in_samplerate(gfp, rate)
            lib.lame_set_out_samplerate(gfp, rate)
            lib.lame_set_num_channels(gfp, channels)
            lib.lame_set_mode(gfp, _MONO if channels == 1 else _JOINT_STEREO)
            lib.lame_set_VBR(gfp, 0)  # vbr_off: constant bitrate
            lib.lame_set_brate(gfp, bitrate // 1000)
            lib.lame_set_bWriteVbrTag(gfp, 1)
            lib.lame_set_write_id3tag_automatic(gfp, 0)  # we write the ID3 tag ourselves (UTF-16, v2.3)
            if lib.lame_init_params(gfp) < 0:
                lib.lame_close(gfp)
                raise RuntimeError("LAME refused the encoding parameters")
        self._tag_offset = out.write(id3v2_tag(tags))
        self._buf = np.empty(1 << 16, dtype=np.uint8)

    def _room(self, samples: int) -> int:
        need = samples * 5 // 4 + 7200  # LAME's documented worst case
        if need > self._buf.size:
            self._buf = np.empty(need, dtype=np.uint8)
        return self._buf.size

    def accepts(self, frame: av.AudioFrame, rate: int, channels: int) -> bool:
        # Interleaved 16-bit at the target rate (FLAC and WAV from CDs): LAME takes it as it is.
        return frame.format.name == "s16" and frame.sample_rate == rate and len(frame.layout.channels) == channels

    def write(self, frame: av.AudioFrame) -> None:
        n = frame.samples
        size = self._room(n)
        out = self._buf.ctypes.data
        if frame.format.name == "s16":
            pcm = np.frombuffer(frame.planes[0], dtype=np.int16, count=n * self._channels)
            if self._channels == 2:
                got = self._lib.lame_encode_buffer_interleaved(self._gfp, pcm.ctypes.data, n, out, size)
            else:
                got = self._lib.lame_encode_buffer(self._gfp, pcm.ctypes.data, pcm.ctypes.data, n, out, size)
        else:
            # Views on the frame's own float planes (to_ndarray would copy them).
            left = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)
            right = np.frombuffer(frame.planes[1], dtype=np.float32, count=n) if self._channels == 2 else left
            got = self._lib.lame_encode_buffer_ieee_float(self._gfp, left.ctypes.data, right.ctypes.data, n, out, size)
        if got < 0:
            raise RuntimeError(f"LAME encode error {got}")
        self._out.write(memoryview(self._buf)[:got])

    def close(self) -> None:
        try:
            size = self._room(0)
            got = self._lib.lame_encode_flush(self._gfp, self._buf.ctypes.data, size)
            if got < 0:
                raise RuntimeError(f"LAME flush error {got}")
            self._out.write(memoryview(self._buf)[:got])
            tag = self._lib.lame_get_lametag_frame(self._gfp, self._buf.ctypes.data, size)
            if 0 < tag <= size:
                end = self._out.tell()
                self._out.seek(self._tag_offset)
                self._out.write(memoryview(self._buf)[:tag])
                self._out.seek(end)
        finally:
            self._lib.lame_close(self._gfp)


def id3v2_tag(tags: Tags) -> bytes:
    """An ID3v2.3 tag with the text frames that have values (v2.3 rather than 2.4: every player reads it).

    Text is Latin-1 when it fits, else UTF-16 with a BOM, the two encodings v2.3 has.
    """
    frames = [
        ("TIT2", tags.title),
        ("TPE1", tags.artist),
        ("TALB", tags.album),
        ("TPE2", tags.album_artist),
        ("TRCK", str(tags.track_number) if tags.track_number else None),
        ("TYER", str(tags.year) if tags.year else None),
        ("TCON", tags.genre),
    ]
    body = b""
    for frame_id, text in frames:
        if not text:
            continue
        try:
            payload = b"\x00" + text.encode("latin-1")
        except UnicodeEncodeError:
            payload = b"\x01" + text.encode("utf-16")  # Python writes the BOM
        body += frame_id.encode() + struct.pack(">IH", len(payload), 0) + payload
    if not body:
        return b""
    size = len(body)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + synchsafe + body


# ---------------------------------------------------------------------------------------------------------------------
# Encoding with PyAV's bundled LAME (the fallback)


class _PyAVSink:
    planar_format = "fltp"

    def accepts(self, frame: av.AudioFrame, rate: int, channels: int) -> bool:
        return False

    def __init__(self, out: BinaryIO, *, channels: int, rate: int, bitrate: int, tags: Tags) -> None:
        # The mp3 muxer writes the ID3v2.3 tag and a Xing/Info frame with the length, as LAME does.
        self._container = av.open(out, "w", format="mp3", options={"id3v2_version": "3"})
        for key, value in _ffmpeg_tags(tags).items():
            self._container.metadata[key] = value
        self._stream = self._container.add_stream("libmp3lame", rate=rate, layout="mono" if channels == 1 else "stereo")
        self._stream.bit_rate = bitrate
        self._stream.format = self.planar_format
        self._fifo = av.AudioFifo()
        self._frame_size = 1152  # LAME takes whole MPEG frames
        self._pts = 0

    def write(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        self._fifo.write(frame)
        while self._fifo.samples >= self._frame_size:
            self._encode(self._fifo.read(self._frame_size))

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if frame is not None:
            frame.pts = self._pts
            self._pts += frame.samples
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            if self._fifo.samples:
                self._encode(self._fifo.read())
            self._encode(None)
        finally:
            self._container.close()


def _ffmpeg_tags(tags: Tags) -> dict[str, str]:
    pairs = {
        "title": tags.title,
        "artist": tags.artist,
        "album": tags.album,
        "album_artist": tags.album_artist,
        "track": str(tags.track_number) if tags.track_number else None,
        "date": str(tags.year) if tags.year else None,
        "genre": tags.genre,
    }
    return {k: v for k, v in pairs.items() if v}
