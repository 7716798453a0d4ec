"""Encoding decoded audio, the one place for it: the upload rendition (plyrd.media.transcode, MP3 written to a file)
and live transcodes (plyrd.media.live_transcode, MP3 or Opus streamed) are two uses of what is here.

- `LameEncoder`: MP3 through the system's libmp3lame, called with ctypes. The LAME bundled in PyAV 18's wheel
  encodes about three times slower than Debian's build of the same library (measured on one core, 320k CBR: 34-38x
  realtime against 107-121x), which was the whole gap between PyAV and the ffmpeg command line. CD-format PCM
  (interleaved 16-bit at the output rate) goes to LAME as decoded; anything else is resampled to planar float first.
- `PyAVEncoder`: PyAV's encoder and muxer: MP3 (its bundled LAME) when there is no system LAME (`libmp3lame0` on
  Debian), and Opus in Ogg.
- `pump`: demux, decode, drop what lies before an offset, resample, hand frames to an encoder.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO, Literal, Protocol, cast

import av
import numpy as np

from plyrd.errors import Unprocessable
from plyrd.media.probe import Tags

Codec = Literal["mp3", "opus"]
MP3_BITRATES = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}  # kbit/s
_MAX_BAD_PACKETS = 16  # a few damaged packets mid-file are skipped (as ffmpeg does); more means a broken file


class Output(Protocol):
    """Where encoded bytes go: a file, or a pipe-like object without seek and tell (muxers then treat it as a pipe)."""

    def write(self, data: bytes | memoryview, /) -> int: ...


class Encoder(Protocol):
    planar_format: str  # the sample format frames are resampled to when `accepts` says no

    def accepts(self, frame: av.AudioFrame) -> bool:
        """Whether `frame` can be written as decoded, without a pass through the resampler."""
        ...

    def write(self, frame: av.AudioFrame) -> None: ...

    def close(self) -> None:
        """Flush what the encoder holds and release it (called once, after the last frame)."""
        ...

    def abort(self) -> None:
        """Release the encoder without finishing the output (after a failure; safe after close)."""
        ...


# ---------------------------------------------------------------------------------------------------------------------
# The system's libmp3lame

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


class LameEncoder:
    """Frames -> the system's libmp3lame, CBR -> `out`: [ID3v2.3][LAME Info frame][audio frames] with `info_frame`,
    else [ID3v2.3][audio frames].

    The Info frame (frame count, encoder delay and padding, so players and FFmpeg know the exact length and trim the
    gaps) can only be known at the end: LAME reserves the first frame for it, and `close()` writes it over that
    placeholder, seeking back in `out`, which must then have tell() and seek(). A stream cannot seek: it goes without.
    """

    planar_format = "fltp"

    def __init__(self, out: Output, *, channels: int, rate: int, bitrate: int, tags: Tags, info_frame: bool) -> None:
        lib = lame_library()
        assert lib is not None
        self._lib, self._out, self._channels, self._rate = lib, out, channels, rate
        with _init_lock:
            gfp = lib.lame_init()
            if not gfp:
                raise MemoryError("lame_init failed")
            lib.lame_set_in_samplerate(gfp, rate)
            lib.lame_set_out_samplerate(gfp, rate)
            lib.lame_set_num_channels(gfp, channels)
            lib.lame_set_mode(gfp, _MONO if channels == 1 else _JOINT_STEREO)
            lib.lame_set_VBR(gfp, 0)  # vbr_off: constant bitrate
            lib.lame_set_brate(gfp, bitrate // 1000)
            lib.lame_set_bWriteVbrTag(gfp, 1 if info_frame else 0)
            lib.lame_set_write_id3tag_automatic(gfp, 0)  # we write the ID3 tag ourselves (UTF-16, v2.3)
            if lib.lame_init_params(gfp) < 0:
                lib.lame_close(gfp)
                raise RuntimeError("LAME refused the encoding parameters")
        self._gfp: int | None = gfp
        tag_size = out.write(id3v2_tag(tags))
        self._info_at = tag_size if info_frame else None  # where LAME's placeholder frame starts (`out` was empty)
        self._buf = np.empty(1 << 16, dtype=np.uint8)

    def _room(self, samples: int) -> int:
        need = samples * 5 // 4 + 7200  # LAME's documented worst case
        if need > self._buf.size:
            self._buf = np.empty(need, dtype=np.uint8)
        return self._buf.size

    def accepts(self, frame: av.AudioFrame) -> bool:
        # Interleaved 16-bit at the output rate (FLAC and WAV from CDs): LAME takes it as it is.
        return (
            frame.format.name == "s16"
            and frame.sample_rate == self._rate
            and len(frame.layout.channels) == self._channels
        )

    def write(self, frame: av.AudioFrame) -> None:
        n = frame.samples
        size = self._room(n)
        dst = self._buf.ctypes.data
        lib = self._lib
        if frame.format.name == "s16":
            pcm = np.frombuffer(frame.planes[0], dtype=np.int16, count=n * self._channels)
            if self._channels == 2:
                got = lib.lame_encode_buffer_interleaved(self._gfp, pcm.ctypes.data, n, dst, size)
            else:
                got = lib.lame_encode_buffer(self._gfp, pcm.ctypes.data, pcm.ctypes.data, n, dst, size)
        else:
            # Views on the frame's own float planes (to_ndarray would copy them).
            left = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)
            right = np.frombuffer(frame.planes[1], dtype=np.float32, count=n) if self._channels == 2 else left
            got = lib.lame_encode_buffer_ieee_float(self._gfp, left.ctypes.data, right.ctypes.data, n, dst, size)
        if got < 0:
            raise RuntimeError(f"LAME encode error {got}")
        if got:
            self._out.write(memoryview(self._buf)[:got])

    def close(self) -> None:
        try:
            size = self._room(0)
            got = self._lib.lame_encode_flush(self._gfp, self._buf.ctypes.data, size)
            if got < 0:
                raise RuntimeError(f"LAME flush error {got}")
            self._out.write(memoryview(self._buf)[:got])
            if self._info_at is not None:
                self._write_info_frame(self._info_at, size)
        finally:
            self.abort()

    def _write_info_frame(self, at: int, size: int) -> None:
        tag = self._lib.lame_get_lametag_frame(self._gfp, self._buf.ctypes.data, size)
        if 0 < tag <= size:
            out = cast("BinaryIO", self._out)  # info_frame: a file, which seeks
            end = out.tell()
            out.seek(at)
            out.write(memoryview(self._buf)[:tag])
            out.seek(end)

    def abort(self) -> None:
        gfp, self._gfp = self._gfp, None
        if gfp:
            self._lib.lame_close(ctypes.c_void_p(gfp))


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
# PyAV's encoders: MP3 without a system LAME, and Opus


class PyAVEncoder:
    """Frames -> a PyAV encoder and muxer -> `out`: MP3 (ID3v2.3, then a Xing/Info frame with the length, which the
    mp3 muxer can fill in only when `out` seeks) or Opus in Ogg (at 48 kHz, the only rate Opus really runs at)."""

    def __init__(self, out: Output, *, codec: Codec, channels: int, rate: int, bitrate: int, tags: Tags) -> None:
        layout = "mono" if channels == 1 else "stereo"
        if codec == "opus":
            self._container = av.open(out, "w", format="ogg")
            self._stream = self._container.add_stream("libopus", rate=rate, layout=layout)
            self.planar_format = "flt"
            self._frame_size = 960  # 20 ms, libopus's default frame
        else:
            self._container = av.open(out, "w", format="mp3", options={"id3v2_version": "3"})
            self._stream = self._container.add_stream("libmp3lame", rate=rate, layout=layout)
            self.planar_format = "fltp"
            self._frame_size = 1152  # LAME takes whole MPEG frames
        self._stream.format = self.planar_format
        for key, value in ffmpeg_tags(tags).items():  # Ogg keeps them per stream, MP3 in the file's ID3 tag
            (self._stream if codec == "opus" else self._container).metadata[key] = value
        self._stream.bit_rate = bitrate
        self._fifo = av.AudioFifo()
        self._pts = 0

    def accepts(self, frame: av.AudioFrame) -> bool:
        return False

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

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # already failing; the output is thrown away
            self._container.close()


def ffmpeg_tags(tags: Tags) -> dict[str, str]:
    """`tags` under FFmpeg's generic metadata keys (each muxer writes them its own way), those with values."""
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


# ---------------------------------------------------------------------------------------------------------------------
# Decoding into an encoder


def pump(
    c: av.container.InputContainer,
    stream: av.AudioStream,
    encoder: Encoder,
    rate: int,
    channels: int,
    *,
    offset: float = 0.0,
    before_packet: Callable[[int], None] | None = None,
) -> int:
    """Decode from where the container stands, drop what lies before `offset` seconds, resample to the encoder's
    rate/layout/format (unless it `accepts` a frame as decoded) and hand the frames to it. Returns samples written.

    before_packet: called with the samples written so far before each packet is decoded; it stops the pump by
    raising (a cancel) and may report progress.
    Raises Unprocessable when too many packets cannot be decoded.
    """
    resampler = av.AudioResampler(format=encoder.planar_format, layout="mono" if channels == 1 else "stereo", rate=rate)
    written = bad = 0
    for packet in c.demux(stream):
        if before_packet is not None:
            before_packet(written)
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            bad += 1
            if bad > _MAX_BAD_PACKETS:
                raise Unprocessable(f"The audio could not be decoded: the file is corrupt ({e}).") from e
            continue
        for frame in frames:
            if offset > 0 and frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base)
                skip = round((offset - start) * frame.sample_rate)
                if skip >= frame.samples:
                    continue  # wholly before the offset
                if skip > 0:
                    frame = _trim(frame, skip)
                offset = 0.0  # reached: the rest is sent as decoded
            if encoder.accepts(frame):  # CD-format PCM goes straight to LAME: no conversion pass
                encoder.write(frame)
                written += frame.samples
                continue
            for out in resampler.resample(frame):
                encoder.write(out)
                written += out.samples
    for out in resampler.resample(None):
        encoder.write(out)
        written += out.samples
    return written


def _trim(frame: av.AudioFrame, skip: int) -> av.AudioFrame:
    """The frame without its first `skip` samples."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    arr = arr[:, skip:] if frame.format.is_planar else arr[:, skip * channels:]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out
