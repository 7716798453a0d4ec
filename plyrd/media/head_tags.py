"""An audio file's tags read from a sample of it (its first bytes and, optionally, its last ones), without storing it.

The upload page prefills title, album and tags as soon as a file is picked, before the file is sent. Most formats keep
their tags at the start (ID3v2, FLAC and Vorbis comments, WebM, WAV and AIFF chunks ahead of the audio), some at the
end (an MP4 whose `moov` atom follows the audio, ID3v1, an AIFF's ID3 chunk, RIFF INFO after the data). So the browser
sends the head and the tail, and FFmpeg sees them at their real offsets in a file of the real size. A read that lands
in the gap between them is the end of the file, so no demuxer scans megabytes of nothing: the work is bounded by the
sample (at most HEAD_MAX + TAIL_MAX bytes). Same demuxer allowlist and format policy as `probe`, one implementation
for every accepted format.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import av
import av.container

from ..errors import InvalidInput, TooLarge, Unprocessable
from .probe import (
    ACCEPTED_LOOKALIKES,
    DEMUXERS,
    LOSSLESS_CODECS,
    check_codec,
    codec_name,
    container_kind,
    describe_bytes,
    open_error,
    pick_audio_stream,
    read_tags,
)

KIB = 1024
MIB = 1024 * KIB
# Enough for the tags ahead of a large embedded cover (a 3000 px JPEG is 2-5 MB) and for the `moov` atom at the end
# of an hour-long M4A; small enough that a Raspberry Pi reads it in milliseconds.
HEAD_MAX = 8 * MIB
TAIL_MAX = 1 * MIB


@dataclass(frozen=True)
class Sample:
    head: bytes  # the file's first bytes
    tail: bytes  # its last bytes (empty when the head is the whole file, or the caller sent no tail)
    size: int  # the whole file's size in bytes

    @property
    def whole(self) -> bool:
        return len(self.head) + len(self.tail) >= self.size


@dataclass(frozen=True)
class SampleTags:
    container: str
    codec: str
    lossless: bool
    duration: float | None  # seconds, when the sample tells
    has_cover: bool
    title: str | None
    artist: str | None
    album: str | None
    album_artist: str | None
    track_number: int | None
    year: int | None
    genre: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "artist": self.artist,
            "album": self.album,
            "album_artist": self.album_artist,
            "track_number": self.track_number,
            "year": self.year,
            "genre": self.genre,
            "duration": self.duration,
            "container": self.container,
            "codec": self.codec,
            "lossless": self.lossless,
            "has_cover": self.has_cover,
        }


def _whole_number(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidInput(f"{name} must be a whole number of bytes")
    return int(raw)


def sample_from_body(body: bytes, *, size: str | None, tail: str | None, max_file_bytes: int) -> Sample:
    """Split a request body into head and tail. `tail` says how many of the body's last bytes are the file's last
    bytes (default 0); `size` is the whole file's size (default: the body is the whole file).

    Raises InvalidInput for an empty body or numbers that do not fit together, TooLarge past HEAD_MAX / TAIL_MAX or
    when the file itself is larger than this node accepts (the upload would be refused anyway, so say it now).
    """
    if not body:
        raise InvalidInput("send the start of the audio file as the request body")
    tail_len = _whole_number(tail, "tail") or 0
    if tail_len > len(body):
        raise InvalidInput(f"tail is {tail_len} bytes but the body has only {len(body)}")
    head_len = len(body) - tail_len
    if head_len == 0:
        raise InvalidInput("send the start of the file, not only its end")
    if head_len > HEAD_MAX:
        raise TooLarge(f"send at most the first {HEAD_MAX // MIB} MiB of the file")
    if tail_len > TAIL_MAX:
        raise TooLarge(f"send at most the last {TAIL_MAX // MIB} MiB of the file")
    total = _whole_number(size, "size")
    if total is None:
        if tail_len:
            raise InvalidInput("with a tail, say the file's whole size in size=")
        total = head_len
    if total < len(body):
        raise InvalidInput(f"size is {total} bytes, smaller than the {len(body)} bytes sent")
    if total > max_file_bytes:
        raise TooLarge(f"the file is {_megabytes(total)}; this node takes audio files of up to "
                       f"{_megabytes(max_file_bytes)}")
    return Sample(head=body[:head_len], tail=body[head_len:], size=total)


def _megabytes(n: int) -> str:
    return f"{n / MIB:.0f} MB" if n >= 10 * MIB else f"{n / MIB:.1f} MB"


class _Spliced(io.RawIOBase):
    """The sample as a seekable file of the real size: head at 0, tail at the end, end-of-file in between.

    No `name` attribute, so FFmpeg's probe judges the bytes alone (see probe._Unnamed)."""

    def __init__(self, sample: Sample) -> None:
        self._head = sample.head
        self._tail = sample.tail
        self._size = sample.size
        self._tail_at = sample.size - len(sample.tail)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        pos = self._pos
        if pos < len(self._head):
            chunk = self._head[pos : pos + len(view)]
        elif pos >= self._tail_at:
            chunk = self._tail[pos - self._tail_at : pos - self._tail_at + len(view)]
        else:
            return 0  # the gap reads as the end of the file; a seek past it carries on
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def read_sample_tags(sample: Sample) -> SampleTags:
    """The tags and format of the file the sample comes from (blocking: run it in a thread).

    Raises UnsupportedMedia when the bytes are not an accepted format (a text file, an image, a video, Matroska),
    Unprocessable when they look like an accepted format but FFmpeg cannot open them: for a partial sample, a hint
    that more of the file is needed (a huge cover ahead of the tags, say); for a whole file, that it is corrupt.
    """
    try:
        container = av.open(_Spliced(sample), options={"format_whitelist": DEMUXERS})
    except av.FFmpegError as e:
        raise _sample_error(sample) from e
    with container as c:
        stream = pick_audio_stream(c)
        codec = codec_name(stream)
        kind = container_kind(c, sample.head)
        check_codec(kind, codec)
        tags = read_tags(c, stream)
        duration = c.duration / av.time_base if c.duration and c.duration > 0 else None
        has_cover = any(s.type == "video" and s.disposition & av.stream.Disposition.attached_pic for s in c.streams)
    return SampleTags(
        container=kind,
        codec=codec,
        lossless=codec in LOSSLESS_CODECS or codec.startswith("pcm_"),
        duration=round(duration, 3) if duration is not None else None,
        has_cover=has_cover,
        title=tags.title,
        artist=tags.artist,
        album=tags.album,
        album_artist=tags.album_artist,
        track_number=tags.track_number,
        year=tags.year,
        genre=tags.genre,
    )


def _sample_error(sample: Sample) -> Exception:
    kind = describe_bytes(sample.head[:64])
    if kind in ACCEPTED_LOOKALIKES and not sample.whole:
        return Unprocessable(
            f"The tags of this {kind} file are not within the part sent "
            f"({len(sample.head) // KIB} KiB from its start, {len(sample.tail) // KIB} KiB from its end); "
            f"send more of it, up to {HEAD_MAX // MIB} MiB and {TAIL_MAX // MIB} MiB."
        )
    return open_error(sample.head[:64])
