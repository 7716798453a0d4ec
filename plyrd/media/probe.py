"""What an uploaded audio file is, decided from its bytes (never its name or the client's content type).

`probe(path)` opens the file with PyAV, checks it is one of the accepted (container, codec) pairs, reads its technical
facts, tags and embedded cover, and decodes a little at the start and near the end to catch truncated or corrupt files
cheaply. `needs_web_rendition(info, wav_max_bytes=...)` says whether an MP3 rendition must be made for browsers.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.container

from plyrd.errors import Unprocessable, UnsupportedMedia
from plyrd.media.lyrics import clean_lyrics, is_lrc

# The only demuxers FFmpeg may pick. Anything else (image pipes, playlists such as HLS that open further URLs, raw
# codec streams) fails to open, which is both the format policy and a guard against demuxers that read other files.
DEMUXERS = "mp3,wav,flac,aiff,mov,mp4,m4a,3gp,3g2,mj2,ogg,matroska,webm"

ACCEPTED_HELP = "Accepted: MP3, WAV, FLAC, AIFF, M4A (AAC or ALAC), Ogg (Vorbis or Opus) and WebM (Opus or Vorbis)."

DEFAULT_MAX_DURATION = 4 * 3600.0  # seconds; the caller usually passes its configured limit

# Normalised container name -> (accepted codecs, file extension for the original, MIME type).
_PCM = re.compile(r"pcm_(?:[su](?:8|16|24|32)|f(?:32|64))(?:le|be)?$")
CONTAINERS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "audio/mpeg"),
    "wav": ("wav", "audio/wav"),
    "flac": ("flac", "audio/flac"),
    "aiff": ("aiff", "audio/aiff"),
    "m4a": ("m4a", "audio/mp4"),
    "ogg": ("ogg", "audio/ogg"),
    "webm": ("webm", "audio/webm"),
}
_CODECS: dict[str, set[str] | re.Pattern[str]] = {
    "mp3": {"mp3"},
    "wav": _PCM,
    "flac": {"flac"},
    "aiff": _PCM,
    "m4a": {"aac", "alac"},
    "ogg": {"vorbis", "opus"},
    "webm": {"opus", "vorbis"},
}
# Decoder names that differ from the codec's own name.
_CODEC_ALIASES = {"mp3float": "mp3", "libopus": "opus", "libvorbis": "vorbis"}
LOSSLESS_CODECS = {"flac", "alac"}

# How much to decode when checking integrity: enough packets to cross a few codec frames, bounded for huge files.
_CHECK_SECONDS = 2.0
_TAIL_SECONDS = 3.0
_MAX_CHECK_PACKETS = 2000


@dataclass(frozen=True)
class Tags:
    """Embedded metadata under normalised names; None (or empty) where the file has none."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    track_number: int | None = None
    disc_number: int | None = None
    date: str | None = None  # as tagged, when it starts with a year: "2021", "2021-04", "2021-04-05"
    year: int | None = None  # the date's year
    genre: str | None = None  # the first of `genres`
    genres: tuple[str, ...] = ()
    compilation: bool | None = None
    title_sort: str | None = None
    artist_sort: str | None = None
    album_sort: str | None = None
    album_artist_sort: str | None = None
    # MusicBrainz ids (UUIDs): the recording (Picard's MUSICBRAINZ_TRACKID), release, and their artists
    mb_track_id: str | None = None
    mb_album_id: str | None = None
    mb_artist_id: str | None = None
    mb_album_artist_id: str | None = None
    # ReplayGain as tagged: gains in dB, peaks as a fraction of full scale
    rg_track_gain: float | None = None
    rg_track_peak: float | None = None
    rg_album_gain: float | None = None
    rg_album_peak: float | None = None
    lyrics: str | None = None  # ID3 USLT, MP4 ©lyr, Vorbis LYRICS/UNSYNCEDLYRICS; LRC text when timed
    lyrics_synced: bool = False  # the lyrics are LRC (lines carry [mm:ss.xx] times)

    def stored(self) -> dict[str, Any]:
        """What a track keeps of its file's tags (`tracks.file_tags`): every tag that has a value except the title
        (the track's own) and the lyrics (the track's `lyrics` column, which the artist may edit)."""
        kept: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if name in ("title", "lyrics", "lyrics_synced") or value is None or value == ():
                continue
            kept[name] = list(value) if isinstance(value, tuple) else value
        return kept


@dataclass(frozen=True)
class Cover:
    data: bytes
    mime: str


@dataclass(frozen=True)
class AudioInfo:
    container: str  # mp3, wav, flac, aiff, m4a, ogg, webm
    codec: str  # mp3, pcm_s16le, pcm_s24be, flac, aac, alac, vorbis, opus
    duration: float  # seconds
    sample_rate: int
    channels: int
    bit_depth: int | None  # None for lossy codecs
    bitrate: int  # bits per second, whole file
    lossless: bool
    size_bytes: int
    extension: str  # for storing the original, without a dot
    mime: str  # for serving the original
    web_playable: bool  # every mainstream browser plays the original as-is
    tags: Tags = field(default_factory=Tags)
    cover: Cover | None = None


def needs_web_rendition(info: AudioInfo, *, wav_max_bytes: int) -> bool:
    """Whether browsers need an MP3 rendition of this original.

    AIFF and ALAC play only in Safari, Ogg and WebM not reliably in Safari; a big WAV plays but costs listeners far more
    bandwidth than its MP3 (a 10-minute WAV is about 100 MB), so past `wav_max_bytes` it gets a rendition too.
    """
    if not info.web_playable:
        return True
    return info.container == "wav" and info.size_bytes > wav_max_bytes


# ---------------------------------------------------------------------------------------------------------------------
# Opening a file without letting its name influence FFmpeg


class _Unnamed(io.RawIOBase):
    """A read-only view of a file with no `name`: PyAV passes a file object's name to FFmpeg, whose probe then gives
    a matching extension a bonus score, so a text file called x.mp3 would be tried as MP3."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._raw.readinto(buffer)  # type: ignore[attr-defined]

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


@contextmanager
def open_audio(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open `path` for decoding, with FFmpeg's probe seeing only the bytes and only the accepted demuxers.

    Raises UnsupportedMedia or Unprocessable, naming what the bytes look like, when FFmpeg cannot open them.
    """
    with open(path, "rb") as raw:
        head = raw.read(64)
        raw.seek(0)
        try:
            container = av.open(_Unnamed(raw), options={"format_whitelist": DEMUXERS})
        except av.FFmpegError as e:
            raise open_error(head) from e
        with container:
            yield container


def open_error(head: bytes) -> Exception:
    kind = describe_bytes(head)
    if kind in ACCEPTED_LOOKALIKES:
        return Unprocessable(f"The file looks like {kind} but could not be read: it is probably truncated or corrupt.")
    if kind:
        return UnsupportedMedia(f"The file is {kind}, not an audio format plyrd accepts. {ACCEPTED_HELP}")
    return UnsupportedMedia(f"The file is not audio in a format plyrd recognises. {ACCEPTED_HELP}")


# Magic numbers, to name what a refused file is. Order matters: the first match wins.
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"WEBP", 8, "a WebP image"),
    (b"BM", 0, "a BMP image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"Rar!", 0, "a RAR archive"),
    (b"7z\xbc\xaf", 0, "a 7-Zip archive"),
    (b"MThd", 0, "a MIDI file"),
    (b"0&\xb2u\x8ef\xcf\x11", 0, "a Windows Media (WMA/ASF) file"),
    (b"MAC ", 0, "a Monkey's Audio (APE) file"),
    (b"wvpk", 0, "a WavPack file"),
    (b"DSD ", 0, "a DSD (DSF) file"),
    (b"FRM8", 0, "a DSD (DFF) file"),
    (b"#!AMR", 0, "an AMR voice recording"),
    (b"AVI ", 8, "an AVI video"),
    (b"\x7fELF", 0, "a program (ELF)"),
    (b"MZ", 0, "a Windows program"),
    # Accepted containers, named when FFmpeg cannot open them anyway.
    (b"fLaC", 0, "FLAC"),
    (b"OggS", 0, "Ogg"),
    (b"ID3", 0, "MP3"),
    (b"WAVE", 8, "WAV"),
    (b"AIFF", 8, "AIFF"),
    (b"AIFC", 8, "AIFF"),
    (b"ftyp", 4, "M4A/MP4"),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM"),
]
ACCEPTED_LOOKALIKES = {"FLAC", "Ogg", "MP3", "WAV", "AIFF", "M4A/MP4", "Matroska/WebM"}


def describe_bytes(head: bytes) -> str | None:
    """A human name for what the first bytes of a file look like ("a PNG image", "text"), or None if unknown."""
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "raw AAC (ADTS) audio"
    stripped = head.lstrip()
    if stripped[:1] in (b"<",) and (b"html" in head.lower() or b"<?xml" in head.lower() or b"<svg" in head.lower()):
        return "an HTML/XML document"
    if head and _looks_like_text(head):
        return "a text file"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut by the 64-byte window is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)


# ---------------------------------------------------------------------------------------------------------------------
# probe


def probe(path: str | Path, *, max_duration: float | None = DEFAULT_MAX_DURATION, check: bool = True) -> AudioInfo:
    """Identify the audio file at `path` from its bytes.

    max_duration: seconds; longer files raise Unprocessable. check: decode a bounded sample at the start and near the
    end to refuse truncated or corrupt files (a few milliseconds; turn off only for files already probed).
    Raises UnsupportedMedia (empty, not audio, a format or codec plyrd does not accept, a video) or Unprocessable
    (no audio stream, truncated, corrupt, too long).
    """
    size = os.path.getsize(path)
    if size == 0:
        raise UnsupportedMedia("The file is empty (0 bytes).")
    with open_audio(path) as c:
        stream = pick_audio_stream(c)
        codec = codec_name(stream)
        with open(path, "rb") as f:
            kind = container_kind(c, f.read(64))
        check_codec(kind, codec)
        cc = stream.codec_context
        sample_rate, channels = int(cc.sample_rate or 0), int(cc.channels or 0)
        if not sample_rate or not channels:
            raise Unprocessable("The audio stream declares no sample rate or channels: the file is probably corrupt.")
        declared = _declared_duration(c)
        if check and kind in ("wav", "aiff"):
            _check_pcm_size(path, kind, int(cc.bit_rate or 0))
        if max_duration is not None and declared is not None and declared > max_duration:
            raise Unprocessable(_too_long(declared, max_duration))
        duration = _measure(c, stream, kind, declared, path) if check else declared
        if duration is None:
            duration = _scan_end(c, stream)
        if duration <= 0:
            raise Unprocessable("The file contains no audio.")
        if max_duration is not None and duration > max_duration:
            raise Unprocessable(_too_long(duration, max_duration))
        bitrate = int(cc.bit_rate or 0) or int(c.bit_rate or 0) or round(size * 8 / duration)
        cover = _cover(c)
        tags = read_tags(c, stream)
    lossless = codec in LOSSLESS_CODECS or bool(_PCM.match(codec))
    extension, mime = CONTAINERS[kind]
    return AudioInfo(
        container=kind,
        codec=codec,
        duration=round(duration, 3),
        sample_rate=sample_rate,
        channels=channels,
        bit_depth=_bit_depth(stream, codec) if lossless else None,
        bitrate=bitrate,
        lossless=lossless,
        size_bytes=size,
        extension=extension,
        mime=mime,
        web_playable=_web_playable(kind, codec),
        tags=tags,
        cover=cover,
    )


def _too_long(duration: float, limit: float) -> str:
    return f"The audio is {_fmt_time(duration)} long; the limit is {_fmt_time(limit)}."


def _fmt_time(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def pick_audio_stream(c: av.container.InputContainer) -> av.AudioStream:
    """The first audio stream; refuses a video (a cover picture is fine) and a file without audio."""
    audio = [s for s in c.streams if s.type == "audio"]
    # A cover is a video stream flagged attached_pic; any other video stream means a video was uploaded.
    video = [s for s in c.streams if s.type == "video" and not (s.disposition & av.stream.Disposition.attached_pic)]
    if video:
        vcodec = video[0].codec_context.name
        if audio:
            raise UnsupportedMedia(f"The file is a video ({vcodec}); upload the audio alone. {ACCEPTED_HELP}")
        raise Unprocessable(f"The file contains no audio stream, only video ({vcodec}).")
    if not audio:
        if not c.streams:
            raise Unprocessable("The file contains no streams at all: it is corrupt.")
        raise Unprocessable("The file contains no audio stream.")
    return audio[0]


def codec_name(stream: av.AudioStream) -> str:
    name = stream.codec_context.name
    return _CODEC_ALIASES.get(name, name)


def container_kind(c: av.container.InputContainer, head: bytes) -> str:
    """The accepted container an open file is; `head` is the file's first bytes (64 are enough)."""
    names = set(c.format.name.split(","))
    if "mp4" in names or "mov" in names:
        return "m4a"
    if "webm" in names:
        # FFmpeg has one demuxer for both; only the EBML DocType tells WebM from Matroska.
        if b"webm" not in head[:64]:
            raise UnsupportedMedia(f"The file is Matroska (.mka), not WebM. {ACCEPTED_HELP}")
        return "webm"
    name = c.format.name
    if name in CONTAINERS:
        return name
    raise UnsupportedMedia(f"The {c.format.long_name} format is not accepted. {ACCEPTED_HELP}")


def check_codec(kind: str, codec: str) -> None:
    allowed = _CODECS[kind]
    ok = bool(allowed.match(codec)) if isinstance(allowed, re.Pattern) else codec in allowed
    if not ok:
        raise UnsupportedMedia(f"{kind.upper()} files with {codec} audio are not accepted. {ACCEPTED_HELP}")


def _web_playable(kind: str, codec: str) -> bool:
    # MP3, AAC-in-MP4, FLAC and PCM WAV play in every mainstream browser; AIFF and ALAC only in Safari; Ogg and WebM
    # not dependably in Safari (iOS included).
    return (kind, codec) in {("mp3", "mp3"), ("m4a", "aac"), ("flac", "flac")} or kind == "wav"


def _bit_depth(stream: av.AudioStream, codec: str) -> int | None:
    m = re.match(r"pcm_[suf](\d+)", codec)
    if m:
        return int(m.group(1))
    extradata = stream.codec_context.extradata or b""
    # The sample format says 16 or 32 only; the codec headers hold the true depth (24-bit sources decode to s32).
    if codec == "flac" and len(extradata) >= 34:  # STREAMINFO: 5 bits of (bits per sample - 1) at bit offset 103
        return (((extradata[12] & 1) << 4) | (extradata[13] >> 4)) + 1
    if codec == "alac" and len(extradata) >= 36:  # ALACSpecificConfig after the 12-byte atom header: bitDepth
        return extradata[17]
    return stream.format.bytes * 8 if stream.format else None


def _declared_duration(c: av.container.InputContainer) -> float | None:
    # container.duration: the stream's own is None for WebM, and both are in different time bases.
    return c.duration / av.time_base if c.duration and c.duration > 0 else None


def _measure(
    c: av.container.InputContainer, stream: av.AudioStream, kind: str, declared: float | None, path: str | Path
) -> float:
    """Decode a bounded sample at the start and near the end; return the duration to trust.

    A truncated file keeps its header's duration (FLAC STREAMINFO, the MP3 Info frame, MP4 sample tables, WebM's
    Duration) but its audio stops early, or its last packet fails to decode.
    """
    offset = _start_offset(stream)  # timestamps may not start at zero; durations do
    head = _decode_span(c, stream, seconds=_CHECK_SECONDS, where="start")
    if head is None:
        raise Unprocessable("No audio could be decoded from the start of the file: it is corrupt.")
    if declared is None:
        # Browser recordings (MediaRecorder WebM) carry no duration: find the end by demuxing, which decodes nothing.
        return _scan_end(c, stream)
    end, _ = head
    if not head[1]:  # not at the end of the file yet: jump to a few seconds before it
        try:
            c.seek(int((offset + max(0.0, declared - _TAIL_SECONDS)) / stream.time_base), stream=stream, backward=True)
            stream.codec_context.flush_buffers()
            tail = _decode_span(c, stream, seconds=_TAIL_SECONDS * 4, where="end")
            end = tail[0] if tail else offset
        except av.FFmpegError:
            end = offset
    return _agree(end - offset, declared, kind, path, c, stream)


def _start_offset(stream: av.AudioStream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _decode_span(
    c: av.container.InputContainer, stream: av.AudioStream, *, seconds: float, where: str
) -> tuple[float, bool] | None:
    """Decode from the current position for up to `seconds` of audio (bounded by packets too).

    Returns (end time of the last decoded audio, reached end of file), or None if nothing decoded.
    """
    end: float | None = None
    decoded = 0.0
    packets = 0
    try:
        for packet in c.demux(stream):
            if packet.size == 0 and packet.pts is None:  # the flush packet at end of file
                for frame in stream.codec_context.decode(None):
                    end = _frame_end(frame, end)
                return (end, True) if end is not None else None
            for frame in packet.decode():
                end = _frame_end(frame, end)
                decoded += frame.samples / (frame.sample_rate or 1)
            packets += 1
            if (where == "start" and decoded >= seconds) or packets >= _MAX_CHECK_PACKETS:
                return (end, False) if end is not None else None
    except av.FFmpegError as e:
        at = f" at about {_fmt_time(end)}" if end is not None else f" near its {where}"
        raise Unprocessable(f"The audio fails to decode{at}: the file is truncated or corrupt ({_reason(e)}).") from e
    return (end, True) if end is not None else None


def _frame_end(frame: av.AudioFrame, previous: float | None) -> float | None:
    if frame.time is None:
        return previous
    end = frame.time + frame.samples / (frame.sample_rate or 1)
    return end if previous is None else max(previous, end)


def _agree(
    end: float, declared: float, kind: str, path: str | Path, c: av.container.InputContainer, stream: av.AudioStream
) -> float:
    """Compare where the decoded audio ends with what the header declares."""
    tolerance = max(0.5, declared * 0.01)
    if end >= declared - tolerance:
        return declared
    # Before calling it truncated, confirm from every packet's timestamp: a seek can land early in some files.
    actual = _scan_end(c, stream)
    if actual >= declared - tolerance:
        return declared
    if kind == "mp3" and not _mp3_has_length_header(path):
        # Without a Xing/Info/VBRI frame FFmpeg only estimates an MP3's length from its first bitrate, so a short
        # end is the estimate's fault, not truncation: trust the packets instead.
        return actual
    stops = f"stops at about {_fmt_time(actual)}" if actual > 0 else "ends early"
    raise Unprocessable(f"The file is truncated: its header says {_fmt_time(declared)} but the audio {stops}.")


def _scan_end(c: av.container.InputContainer, stream: av.AudioStream) -> float:
    """Seconds from the stream's start to the end of its last packet, by demuxing the whole file (no decoding)."""
    c.seek(0, stream=stream, backward=True)
    end = None
    try:
        for packet in c.demux(stream):
            if packet.pts is not None:
                packet_end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                end = packet_end if end is None else max(end, packet_end)
    except av.FFmpegError as e:
        raise Unprocessable(f"The file could not be read to its end: it is truncated or corrupt ({_reason(e)}).") from e
    return max(0.0, end - _start_offset(stream)) if end is not None else 0.0


def _check_pcm_size(path: str | Path, kind: str, pcm_bitrate: int) -> None:
    """WAV and AIFF state their audio's size up front; FFmpeg quietly plays what is there, so a cut file would pass
    as a shorter track. Compare the declared data chunk with the bytes present."""
    little = kind == "wav"
    wanted = b"data" if little else b"SSND"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(12)  # past RIFF/FORM, its size and WAVE/AIFF
        for _ in range(64):
            header = f.read(8)
            if len(header) < 8:
                return
            chunk_id, chunk_size = header[:4], int.from_bytes(header[4:], "little" if little else "big")
            if chunk_id == wanted:
                if chunk_size in (0, 0xFFFFFFFF):  # streamed writers leave the size unknown
                    return
                present = size - f.tell()
                if chunk_size > present + 16:
                    total = _fmt_time(chunk_size * 8 / pcm_bitrate) if pcm_bitrate else f"{chunk_size} bytes"
                    raise Unprocessable(
                        f"The file is truncated: its header promises {total} of audio but only "
                        f"{present * 100 // chunk_size}% of it is present."
                    )
                return
            f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)  # chunks are padded to an even size


def _mp3_has_length_header(path: str | Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:  # ID3v2 size is synchsafe: 7 bits per byte
            skip = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9])
        f.seek(skip)
        first = f.read(4096)
    return any(tag in first[:200] for tag in (b"Xing", b"Info", b"VBRI"))


def _reason(e: av.FFmpegError) -> str:
    return getattr(e, "strerror", None) or str(e)


def _cover(c: av.container.InputContainer) -> Cover | None:
    """The first attached picture (an ID3 APIC, a FLAC PICTURE block, an MP4 `covr`), as PyAV exposes them all."""
    for s in c.streams:
        if s.type == "video" and s.disposition & av.stream.Disposition.attached_pic:
            try:
                c.seek(0)  # FFmpeg queues attached pictures to be read first after opening or seeking
                for packet in c.demux(s):
                    data = bytes(packet)
                    if data:
                        return Cover(data=data, mime=_image_mime(data, s.codec_context.name))
                    break
            except av.FFmpegError:
                return None  # a damaged picture does not make the audio unusable
    return None


def _image_mime(data: bytes, codec: str) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"GIF8":
        return "image/gif"
    if data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM":
        return "image/bmp"
    return {"mjpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}.get(
        codec, "application/octet-stream"
    )


# Source keys for each normalised tag, compared lower-cased with spaces, "_" and "-" removed. FFmpeg already maps
# ID3 frames, MP4 atoms and Vorbis comments to its generic names; the raw names cover the ones it leaves alone (ID3
# TXXX and MP4 freeform atoms keep their description: "MusicBrainz Album Id"). WebM upper-cases keys, Ogg keeps them
# on the stream.
_TAG_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("title", "tit2"),
    "artist": ("artist", "tpe1", "author"),
    "album": ("album", "talb"),
    "album_artist": ("albumartist", "tpe2"),
    "track_number": ("track", "tracknumber", "trck", "trkn"),
    "disc_number": ("disc", "discnumber", "disk", "tpos"),
    "date": ("date", "year", "tdrc", "tyer", "originaldate", "tdor", "tory"),
    "genre": ("genre", "tcon"),
    "compilation": ("compilation", "tcmp", "cpil"),
    "title_sort": ("titlesort", "tsot", "sonm"),
    "artist_sort": ("artistsort", "tsop", "soar"),
    "album_sort": ("albumsort", "tsoa", "soal"),
    "album_artist_sort": ("albumartistsort", "tso2", "soaa"),
    "mb_track_id": ("musicbrainztrackid", "musicbrainzrecordingid"),
    "mb_album_id": ("musicbrainzalbumid", "musicbrainzreleaseid"),
    "mb_artist_id": ("musicbrainzartistid",),
    "mb_album_artist_id": ("musicbrainzalbumartistid", "musicbrainzreleaseartistid"),
    "rg_track_gain": ("replaygaintrackgain",),
    "rg_track_peak": ("replaygaintrackpeak",),
    "rg_album_gain": ("replaygainalbumgain",),
    "rg_album_peak": ("replaygainalbumpeak",),
}
_KEY_NOISE = re.compile(r"[\s_-]+")
_UUID_TAG = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE_TAG = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_NUMBER_TAG = re.compile(r"[+-]?\d+(?:\.\d+)?")
# Genres in one tag: Vorbis comments repeated (FFmpeg joins them with ";"), ID3v2.4's NUL-separated list, and the
# separators taggers write by hand (what Navidrome splits on by default).
_GENRE_SPLIT = re.compile(r"[;/,\x00]")
MAX_TAG_CHARS = 1000
MAX_GENRES = 10


def read_tags(c: av.container.InputContainer, stream: av.AudioStream) -> Tags:
    """The file's tags under normalised names: the container's first, the audio stream's filling gaps (Ogg keeps
    everything on the stream)."""
    merged: dict[str, str] = {}
    for source in (c.metadata, stream.metadata):
        for key, value in source.items():
            merged.setdefault(_KEY_NOISE.sub("", key.lower()), value)
    values: dict[str, Any] = {}
    for name, keys in _TAG_KEYS.items():
        raw = next((merged[k].strip() for k in keys if merged.get(k, "").strip()), None)
        if raw is None:
            continue
        raw = raw.replace("\x00", ";" if name == "genre" else " ").strip()
        if name in ("track_number", "disc_number"):
            m = re.match(r"\s*(\d{1,6})", raw)  # "3/12" -> 3
            values[name] = int(m.group(1)) if m and int(m.group(1)) > 0 else None
        elif name == "date":
            m = _DATE_TAG.match(raw)  # "2021-04-05", "2021", "2021-04-05T10:00:00"
            if m and 1000 <= int(m.group(1)) <= 9999:
                values["date"], values["year"] = m.group(0), int(m.group(1))
            elif m := re.search(r"\b(\d{4})\b", raw):  # "05/04/2021": a year, no date to trust
                values["year"] = int(m.group(1))
        elif name == "genre":
            genres = [g.strip()[:MAX_TAG_CHARS] for g in _GENRE_SPLIT.split(raw) if g.strip()]
            values["genres"] = tuple(dict.fromkeys(genres))[:MAX_GENRES]
            values["genre"] = genres[0] if genres else None
        elif name == "compilation":
            values[name] = raw.lower() in ("1", "true", "yes")
        elif name.startswith("mb_"):
            m = _UUID_TAG.search(raw.lower())
            values[name] = m.group(0) if m else None
        elif name.startswith("rg_"):
            m = _NUMBER_TAG.search(raw)  # "-6.52 dB", "0.988525"
            values[name] = float(m.group(0)) if m and abs(float(m.group(0))) < 100 else None
        else:
            values[name] = raw[:MAX_TAG_CHARS]
    lyrics = _lyrics(merged)
    if lyrics:
        values["lyrics"], values["lyrics_synced"] = lyrics, is_lrc(lyrics)
    return Tags(**values)


def _lyrics(merged: dict[str, str]) -> str | None:
    """The first lyrics tag with text: FFmpeg names ID3 USLT frames "lyrics-<description>-<language>"."""
    for key in sorted(merged, key=lambda k: (not k.startswith("lyrics"), k)):
        if key.startswith(("lyrics", "unsyncedlyrics", "unsynced lyrics")) and merged[key].strip():
            return clean_lyrics(merged[key])
    return None
