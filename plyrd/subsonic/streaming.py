"""What Subsonic's `stream` sends for a song: a stored file as it is, or a transcode, from the song's row and the
call's `format`, `maxBitRate` and `timeOffset`. One decision, made here only; plyrd.web.subsonic.files acts on it.

- `format=raw`, or nothing asked (no format, no bitrate limit, no offset): the stream file as stored (the MP3
  rendition when the original needs one, else the original), as before transcoding existed.
- A stored file that already is the asked format (any format, when only a limit is asked) and whose bitrate is
  within `maxBitRate`: that file, unchanged (the original first: it is the better of the two).
- Otherwise a transcode of the original: MP3 unless Opus is asked (`opus`, or `ogg`/`oga`, which clients use for
  Ogg audio), at `maxBitRate` when one is given, else the format's default bitrate; snapped down to a bitrate the
  encoder takes. `maxBitRate=0` means no limit, as in Subsonic.
- `timeOffset` > 0 (OpenSubsonic's transcodeOffset) always transcodes, even when nothing else is asked: a stored file
  cannot start mid-way. With `raw` it is ignored (raw means the stored bytes).
- A remote track (another repo's, plyrd.network.remote_tracks) with an audio blob is decided as any song: its
  original is fetched into the blob store (plyrd.network.remote_audio) before it is served or transcoded. One with
  only an audioUrl has nothing stored to serve or transcode: its URL's bytes are relayed as they come (`from_url`),
  whatever format, maxBitRate and timeOffset ask.

Bitrates here are in kbit/s, as Subsonic's parameters and `bitRate` fields are.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Literal

from .envelope import GENERIC, SubsonicError

TranscodeFormat = Literal["mp3", "opus"]

# LAME's CBR bitrates (MPEG-1 layer III at 44.1 kHz), and Opus's useful range for music.
MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
OPUS_MIN, OPUS_MAX = 16, 256
DEFAULT_BITRATE: dict[TranscodeFormat, int] = {"mp3": 192, "opus": 128}
MIME: dict[TranscodeFormat, str] = {"mp3": "audio/mpeg", "opus": "audio/ogg"}
SUFFIX: dict[TranscodeFormat, str] = {"mp3": "mp3", "opus": "opus"}
# What clients send in `format` for the two encodings plyrd makes.
_ALIASES: dict[str, TranscodeFormat] = {"mp3": "mp3", "opus": "opus", "ogg": "opus", "oga": "opus"}
RENDITION_KBPS = 320  # plyrd.media.transcode's web rendition: MP3 320k CBR
MAX_OFFSET = 24 * 3600  # seconds; longer than any accepted track


@dataclass(frozen=True)
class Stored:
    """Send a stored blob as it is (ranges work)."""

    sha256: str
    mime: str


@dataclass(frozen=True)
class Transcode:
    """Encode the original (`source_sha256`) from `offset` seconds on, at `bitrate` kbit/s."""

    source_sha256: str
    format: TranscodeFormat
    bitrate: int
    offset: float = 0.0

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def suffix(self) -> str:
        return SUFFIX[self.format]

    @property
    def cacheable(self) -> bool:
        """Only a whole track is worth keeping: a seek into it is a one-off."""
        return self.offset == 0

    def estimated_size(self, duration: float) -> int:
        """The body's size told to a client that asks for an estimate (estimateContentLength=true): the audio at the
        nominal bitrate, without tags and headers, so the encode is a little longer than promised and its last
        fraction of a frame is cut (players take a short last frame; zeros padding a long one stop some decoders)."""
        seconds = max(0.0, duration - self.offset)
        return math.floor(seconds * self.bitrate * 1000 / 8)


Choice = Stored | Transcode


def _int(raw: str | None, name: str, maximum: int) -> int:
    if raw is None or raw.strip() == "":
        return 0
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) > maximum:
        raise SubsonicError(GENERIC, f"{name} must be a whole number from 0 to {maximum}")
    return int(value)


def _offset(raw: str | None) -> float:
    if raw is None or raw.strip() == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > MAX_OFFSET:
        raise SubsonicError(GENERIC, f"timeOffset must be a number of seconds from 0 to {MAX_OFFSET}")
    return value


def snap(fmt: TranscodeFormat, kbps: int) -> int:
    """The highest bitrate the encoder takes at or under `kbps` (the lowest it takes, if `kbps` is below that)."""
    if fmt == "mp3":
        return max([b for b in MP3_BITRATES if b <= kbps] or [MP3_BITRATES[0]])
    return min(max(kbps, OPUS_MIN), OPUS_MAX)


def _kbps(row: sqlite3.Row) -> int:
    """The original's bitrate in kbit/s (the catalog keeps bit/s), 0 when unknown."""
    return int((row["bitrate"] or 0) // 1000)


def _is(row: sqlite3.Row, fmt: str) -> bool:
    """Whether the original already is `fmt` (by its file extension or codec: `ogg` may hold Opus or Vorbis)."""
    return fmt in (row["original_ext"], row["codec"])


def default_file(row: sqlite3.Row) -> Stored:
    """What a plain `stream` sends: the MP3 rendition when there is one (the original is not web-playable), else the
    original (the same rule as plyrd.subsonic.catalog.stream_file)."""
    if row["web_sha"]:
        return Stored(row["web_sha"], "audio/mpeg")
    return Stored(row["original_sha"], row["original_mime"])


# What every player takes as stored: the formats browsers play (plyrd.media.probe's web_playable), by container
# (the original's extension) and codec.
_EVERYWHERE = {("mp3", "mp3"), ("m4a", "aac"), ("flac", "flac")}


def needs_live(row: sqlite3.Row) -> bool:
    """A music folder's file that players may not take as it is (ALAC, AIFF, Ogg, WMA...): the library keeps no MP3
    rendition of it (files are read in place, never converted ahead), so a plain `stream` transcodes it live."""
    return (row["source"] == "library" and not row["web_sha"] and row["original_ext"] != "wav"
            and (row["original_ext"], row["codec"]) not in _EVERYWHERE)


def from_url(row: sqlite3.Row) -> bool:
    """A remote track whose record has only an audioUrl (no blob, so no original_sha): `stream` relays that URL."""
    return row["source"] == "remote" and not row["original_sha"]


def web_rendition(row: sqlite3.Row) -> Transcode:
    """What the web player gets for a file `needs_live` says browsers may not all play: the MP3 an upload's rendition
    would be (320k), the same transcode, and the same cache entry, as a plain `stream` of it."""
    return Transcode(row["original_sha"], "mp3", RENDITION_KBPS)


def choose(row: sqlite3.Row, format: str | None, max_bit_rate: str | None, time_offset: str | None) -> Choice:
    """What `stream` sends for this song and these parameters (see the module docstring). Raises SubsonicError for a
    malformed maxBitRate or timeOffset."""
    fmt = (format or "").strip().lower()
    limit = _int(max_bit_rate, "maxBitRate", 10**6)
    offset = _offset(time_offset)
    if fmt == "raw":
        return default_file(row)
    if needs_live(row) and not (fmt and _is(row, fmt)):
        # What an upload's MP3 rendition would be (320k), lower when a limit asks, Opus when asked.
        target: TranscodeFormat = _ALIASES.get(fmt) or "mp3"
        kbps = limit if limit else (RENDITION_KBPS if target == "mp3" else DEFAULT_BITRATE[target])
        return Transcode(row["original_sha"], target, snap(target, kbps), offset)
    wanted = _ALIASES.get(fmt)
    if not limit and offset == 0 and (not fmt or (wanted is None) or _is(row, fmt)):
        # Nothing asked, a format plyrd cannot make (served as stored, like raw), or the format the original is.
        return Stored(row["original_sha"], row["original_mime"]) if fmt and _is(row, fmt) else default_file(row)
    if offset == 0:
        original_kbps = _kbps(row)
        if fmt and _is(row, fmt) and (not limit or 0 < original_kbps <= limit):
            return Stored(row["original_sha"], row["original_mime"])
        if not fmt and limit:
            if 0 < original_kbps <= limit and not row["web_sha"]:
                return Stored(row["original_sha"], row["original_mime"])
            if row["web_sha"] and RENDITION_KBPS <= limit:
                return Stored(row["web_sha"], "audio/mpeg")
        if fmt == "mp3" and row["web_sha"] and (not limit or RENDITION_KBPS <= limit):
            return Stored(row["web_sha"], "audio/mpeg")
    target = wanted or "mp3"
    kbps = snap(target, limit if limit else DEFAULT_BITRATE[target])
    return Transcode(row["original_sha"], target, kbps, offset)


def announced(row: sqlite3.Row) -> tuple[str, str] | None:
    """(transcodedSuffix, transcodedContentType) a song entry announces: what a plain `stream` sends when that is
    not the original (the MP3 rendition), else None (the entry's own suffix and contentType already say it)."""
    if needs_live(row):
        return "mp3", MIME["mp3"]
    sent = default_file(row)
    if sent.sha256 == row["original_sha"]:
        return None
    return "mp3", sent.mime
