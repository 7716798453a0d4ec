"""Acoustic fingerprints (Chromaprint, AcoustID's algorithm) and how close two of them are.

Chromaprint is Debian's libchromaprint1, reached through pyacoustid's `chromaprint` module (its ctypes binding: no
FFI code of ours), loaded on the first fingerprint. A node without the library has no fingerprints
(plyrd.moderation.duplicates.available says so without loading it).

A fingerprint is Chromaprint's raw form: one 32-bit item per ~0.124 s of audio (a 4096-sample window every 1365
samples at 11025 Hz), each bit a quantised spectral feature of that moment. Two encodings of the same recording
differ in a few bits per item (a FLAC and a 128k MP3: a few per cent of bits); different recordings differ in about
half. `compare` finds the best alignment of two fingerprints and returns the share of differing bits there.
"""

from __future__ import annotations

import functools
import io
import logging
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import av
import numpy as np

from plyrd.errors import Unprocessable
from plyrd.media.probe import open_audio, pick_audio_stream

log = logging.getLogger("plyrd.media.chromaprint")

RATE = 11025  # Chromaprint's own working rate: resampling here (once, with FFmpeg) spares it its own resampler
MAX_SECONDS = 120  # AcoustID's length too: enough to recognise a recording, and a 2-hour mix costs no more
ITEMS_PER_SECOND = RATE / 1365  # one item per hop of Chromaprint's analysis window
_MAX_BAD_PACKETS = 16


@functools.cache
def library() -> ModuleType | None:
    """pyacoustid's binding with libchromaprint loaded, or None when either is missing (checked once)."""
    try:
        import chromaprint  # pyacoustid's; raises ImportError when libchromaprint.so.1 cannot be loaded
    except ImportError:
        return None
    return chromaprint


@dataclass(frozen=True)
class Fingerprint:
    items: np.ndarray  # uint32, Chromaprint's raw fingerprint
    seconds: float  # how much audio it covers (at most MAX_SECONDS)
    encoded: str  # Chromaprint's compressed base64 form, as AcoustID's lookup takes it

    def to_bytes(self) -> bytes:
        return self.items.astype("<u4").tobytes()

    @staticmethod
    def items_of(blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype="<u4").astype(np.uint32)


def pcm(path: str | Path, *, start: float = 0.0, max_seconds: float = MAX_SECONDS) -> Iterator[bytes]:
    """The audio at `path` as 11025 Hz mono signed 16-bit samples (native order), in blocks, from `start` seconds
    for at most `max_seconds`. Raises Unprocessable for audio that cannot be decoded."""
    skip, limit = int(start * RATE), int(max_seconds * RATE)
    seen = sent = bad = 0
    with open_audio(path) as c:
        stream = pick_audio_stream(c)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

        def take(frame: av.AudioFrame) -> bytes:
            nonlocal seen, sent
            first = min(frame.samples, max(0, skip - seen))
            last = min(frame.samples, first + limit - sent)
            seen += frame.samples
            sent += max(0, last - first)
            # A plane may be padded past its samples: only the samples go out.
            return bytes(memoryview(frame.planes[0])[first * 2:last * 2]) if last > first else b""

        for packet in c.demux(stream):
            if sent >= limit:
                return
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                bad += 1
                if bad > _MAX_BAD_PACKETS:
                    raise Unprocessable(f"The audio could not be decoded: the file is corrupt ({e}).") from e
                continue
            for frame in frames:
                for out in resampler.resample(frame):
                    if block := take(out):
                        yield block
        for out in resampler.resample(None):
            if sent < limit and (block := take(out)):
                yield block


def fingerprint(path: str | Path, *, max_seconds: float = MAX_SECONDS) -> Fingerprint:
    """The fingerprint of the first `max_seconds` of the audio at `path` (decoded with PyAV, fed to Chromaprint).
    Raises RuntimeError without libchromaprint, Unprocessable for audio that cannot be decoded or is too short."""
    cp = library()
    if cp is None:
        raise RuntimeError("libchromaprint is not installed (Debian: libchromaprint1)")
    fper = cp.Fingerprinter()
    fper.start(RATE, 1)
    fed = 0
    for block in pcm(path, max_seconds=max_seconds):
        fper.feed(block)
        fed += len(block) // 2
    try:
        encoded = fper.finish()
        items, _algorithm = cp.decode_fingerprint(encoded)
    except cp.FingerprintError as e:
        raise Unprocessable("The audio could not be fingerprinted.") from e
    if not items:
        raise Unprocessable("The audio is too short to fingerprint.")
    return Fingerprint(np.asarray(items, dtype=np.uint32), fed / RATE, encoded.decode("ascii"))


def excerpt_wav(path: str | Path, *, start: float, seconds: float) -> bytes:
    """A WAV file of `seconds` of the audio from `start` (11025 Hz mono 16-bit: small, and all a recogniser needs)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for block in pcm(path, start=start, max_seconds=seconds):
            w.writeframes(block)
    return out.getvalue()


def distinctive(items: np.ndarray) -> bool:
    """Whether a fingerprint says anything about a recording: a steady tone or silence gives the same item over
    and over, and would "match" every other steady tone. Music gives nearly all-different items."""
    return len(items) >= 16 and len(np.unique(items)) >= max(16, len(items) // 4)


# ---- comparing

MIN_OVERLAP_SECONDS = 10.0  # an alignment must share this much audio (or all of the shorter one) to count
SMALL_OFFSETS = 8  # alignments always tried around zero, in items (about a second either way)
VOTED_OFFSETS = 3  # and around the offsets where most items are exactly equal (any shift: an intro added)


@dataclass(frozen=True)
class Comparison:
    bit_error: float  # share of differing bits at the best alignment: ~0.0-0.15 same recording, ~0.5 unrelated
    offset: int  # items b is shifted by against a at that alignment (positive: b starts later in its file)
    overlap: int  # items compared there

    @property
    def offset_seconds(self) -> float:
        return self.offset / ITEMS_PER_SECOND

    @property
    def overlap_seconds(self) -> float:
        return self.overlap / ITEMS_PER_SECOND


def _bit_error(a: np.ndarray, b: np.ndarray, offset: int) -> tuple[float, int]:
    """Differing bits between a[i] and b[i + offset] over their overlap, and the overlap."""
    i0 = max(0, -offset)
    i1 = min(len(a), len(b) - offset)
    if i1 <= i0:
        return 1.0, 0
    x = np.bitwise_xor(a[i0:i1], b[i0 + offset:i1 + offset])
    return float(np.bitwise_count(x).sum()) / (32.0 * (i1 - i0)), i1 - i0


def _voted_offsets(a: np.ndarray, b: np.ndarray) -> list[int]:
    """The offsets at which the most items of a and b are exactly equal (each equal pair votes once)."""
    order = np.argsort(b, kind="stable")
    sorted_b = b[order]
    lo = np.searchsorted(sorted_b, a, side="left")
    hi = np.searchsorted(sorted_b, a, side="right")
    hits = hi - lo
    if not hits.any():
        return []
    # Items repeated many times (silence, a drone) would vote everywhere: only values seen at most 4 times in b.
    keep = (hits > 0) & (hits <= 4)
    ai = np.repeat(np.nonzero(keep)[0], hits[keep])
    starts = np.repeat(lo[keep], hits[keep])
    within = np.arange(len(ai)) - np.repeat(np.cumsum(hits[keep]) - hits[keep], hits[keep])
    offsets = order[starts + within] - ai
    if not len(offsets):
        return []
    values, counts = np.unique(offsets, return_counts=True)
    best = np.argsort(counts)[::-1][:VOTED_OFFSETS]
    return [int(values[i]) for i in best if counts[i] >= 2]


def compare(a: np.ndarray, b: np.ndarray) -> Comparison:
    """The best alignment of fingerprints `a` and `b`: small shifts around zero and around the shifts that most
    exactly equal items vote for (so a recording with a few seconds added in front still lines up)."""
    need = min(int(MIN_OVERLAP_SECONDS * ITEMS_PER_SECOND), len(a), len(b))
    tried: set[int] = set()
    best = Comparison(1.0, 0, 0)
    centres = [0, *_voted_offsets(a, b)]
    for centre in centres:
        for offset in range(centre - SMALL_OFFSETS if centre == 0 else centre - 1,
                            centre + (SMALL_OFFSETS if centre == 0 else 1) + 1):
            if offset in tried:
                continue
            tried.add(offset)
            error, overlap = _bit_error(a, b, offset)
            if overlap >= need and error < best.bit_error:
                best = Comparison(error, offset, overlap)
    return best


# ---- candidate keys

KEY_SHIFT = 29  # one distinct item in 2**(32-29) = 8 becomes a key, chosen by its value so both sides choose alike
_MIX = np.uint32(0x9E3779B1)  # Knuth's multiplicative hash: spreads the items' values before sampling


def keys(items: np.ndarray) -> list[int]:
    """A few of the fingerprint's items (about one distinct value in eight, chosen by value, not position), as
    signed 32-bit ints for SQLite: two encodings of one recording share many of them exactly, unrelated audio next
    to none, so an index of keys finds a new upload's candidates without reading every fingerprint."""
    distinct = np.unique(items)
    chosen = distinct[(distinct * _MIX) >> np.uint32(KEY_SHIFT) == 0]  # the product wraps modulo 2**32, as meant
    return chosen.view(np.int32).tolist()
