"""The web rendition: any accepted audio file to MP3, 320 kbit/s CBR, 44.1 kHz, mono kept mono (plyr.fm's target).

Decoding, resampling and encoding are plyrd.media.encoding's: the system's libmp3lame when there is one (about three
times the speed of the LAME in PyAV's wheel), else PyAV's encoder. The file gets LAME's Info frame (exact length,
encoder delay and padding), written over its placeholder at the end: a file can seek back, a stream cannot.

The output is written to a temporary name beside `dst` and renamed into place, so `dst` is never half-written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av

from plyrd.errors import InvalidInput, Unprocessable
from plyrd.media.encoding import MP3_BITRATES, LameEncoder, PyAVEncoder, lame_library, pump
from plyrd.media.probe import open_audio, pick_audio_stream, read_tags

Encoder = Literal["auto", "lame", "pyav"]

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
    if bitrate // 1000 not in MP3_BITRATES:
        raise InvalidInput(f"{bitrate} bit/s is not an MP3 bitrate; use one of {sorted(MP3_BITRATES)} kbit/s.")
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
            tick = _Ticker(sample_rate, total, progress, cancel)
            with open(tmp, "wb") as out:
                sink: LameEncoder | PyAVEncoder
                if use_lame:  # a file: LAME's Info frame goes in
                    sink = LameEncoder(
                        out, channels=channels, rate=sample_rate, bitrate=bitrate, tags=tags, info_frame=True
                    )
                else:
                    sink = PyAVEncoder(
                        out, codec="mp3", channels=channels, rate=sample_rate, bitrate=bitrate, tags=tags
                    )
                try:
                    written = pump(c, stream, sink, sample_rate, channels, before_packet=tick)
                    if written == 0:
                        raise Unprocessable("The file contains no decodable audio.")
                    sink.close()
                except BaseException:
                    sink.abort()  # LAME's encoder is freed and the muxer closed on failure too
                    raise
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
        path=dst, duration=written / sample_rate, size_bytes=dst.stat().st_size, encoder="lame" if use_lame else "pyav"
    )


class _Ticker:
    """Between packets: reports progress (at most every _PROGRESS_STEP) and stops the pump once `cancel` is set."""

    def __init__(
        self,
        rate: int,
        total: float | None,
        progress: Callable[[float], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self._rate, self._total, self._progress, self._cancel = rate, total, progress, cancel
        self._reported = 0.0

    def __call__(self, written: int) -> None:
        if self._progress is not None and self._total:
            done = min(written / self._rate / self._total, 0.999)
            if done - self._reported >= _PROGRESS_STEP:
                self._reported = done
                self._progress(done)
        if self._cancel is not None and self._cancel.is_set():
            raise TranscodeCancelled("The transcode was cancelled.")
