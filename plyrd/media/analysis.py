"""Waveform peaks for a seek bar and EBU R128 loudness for volume levelling, from one decode pass.

Peaks are the maximum absolute sample per bucket at the file's own sample rate (resampling first, to 8 kHz say,
smooths away the transients a waveform should show). Loudness goes through FFmpeg's `ebur128` filter; the track gain
is ReplayGain 2.0 style: the -18 LUFS reference minus the integrated loudness.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
import numpy as np

from plyrd.errors import Unprocessable
from plyrd.media.probe import open_audio, pick_audio_stream

REFERENCE_LUFS = -18.0  # ReplayGain 2.0's reference level
SILENCE_LUFS = -70.0  # EBU R128's absolute gate: at or below it nothing was measured
_BLOCKS_PER_BUCKET = 8  # envelope resolution kept while decoding, before the final bucketing
_MAX_BAD_PACKETS = 16


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float | None  # None for silence or audio too short to measure (under 0.4 s)
    track_gain_db: float  # gain to reach -18 LUFS; 0.0 when there is nothing to measure
    peak: float  # sample peak, linear (1.0 = full scale), for clipping prevention with the gain
    true_peak_db: float | None = None  # dBTP (4x oversampled), only when asked for: it doubles the metering cost


@dataclass(frozen=True)
class Analysis:
    peaks: list[float]  # `buckets` values in 0..1
    loudness: Loudness
    duration: float  # seconds actually decoded

    def columns(self) -> dict[str, Any]:
        """The tracks columns this analysis fills (uploads, replaced audio and the music folder store it alike)."""
        return {"peaks": json.dumps([round(x, 4) for x in self.peaks]),
                "loudness_lufs": self.loudness.integrated_lufs, "track_gain_db": self.loudness.track_gain_db,
                "sample_peak": self.loudness.peak}


def analyse(path: str | Path, *, buckets: int = 1000, true_peak: bool = False) -> Analysis:
    """Peaks and loudness of the audio at `path` in one decode. Raises Unprocessable if it cannot be decoded."""
    return _run(path, buckets=buckets, want_loudness=True, true_peak=true_peak)


def peaks(path: str | Path, buckets: int = 1000) -> list[float]:
    """The waveform envelope: `buckets` values in 0..1, each the largest absolute sample of its slice of time."""
    return _run(path, buckets=buckets, want_loudness=False, true_peak=False).peaks


def loudness(path: str | Path, *, true_peak: bool = False) -> Loudness:
    return _run(path, buckets=1, want_loudness=True, true_peak=true_peak).loudness


class _Envelope:
    """Max-abs per fixed-size block of samples, accumulated frame by frame (the total length is only known at the end,
    so blocks are bucketed afterwards)."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.blocks: list[np.ndarray] = []
        self.carry = np.zeros(0, dtype=np.float32)
        self.samples = 0

    def add(self, planes: np.ndarray) -> None:
        env = np.abs(planes).max(axis=0) if planes.shape[0] > 1 else np.abs(planes[0])
        self.samples += env.size
        if self.carry.size:
            env = np.concatenate((self.carry, env))
        whole = env.size - env.size % self.block
        if whole:
            self.blocks.append(env[:whole].reshape(-1, self.block).max(axis=1))
        self.carry = env[whole:].copy()

    def buckets(self, count: int) -> tuple[list[float], float]:
        parts = [*self.blocks, np.array([self.carry.max()], dtype=np.float32)] if self.carry.size else self.blocks
        if not parts:
            return [0.0] * count, 0.0
        blocks = np.concatenate(parts)
        # Bucket i covers blocks [start_i, start_i+1); when there are fewer blocks than buckets, starts repeat and
        # reduceat returns that single block, stretching short audio across the bar.
        starts = (np.arange(count) * blocks.size) // count
        values = np.minimum(np.maximum.reduceat(blocks, starts), 1.0)
        return np.round(values.astype(np.float64), 4).tolist(), float(blocks.max())


def _run(path: str | Path, *, buckets: int, want_loudness: bool, true_peak: bool) -> Analysis:
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    with open_audio(path) as c:
        stream = pick_audio_stream(c)
        cc = stream.codec_context
        rate, channels = int(cc.sample_rate), int(cc.channels)
        layout = {1: "mono", 2: "stereo"}.get(channels) or cc.layout.name  # files may leave the layout unset
        expected = c.duration / av.time_base * rate if c.duration and c.duration > 0 else 0
        envelope = _Envelope(max(1, int(expected // (buckets * _BLOCKS_PER_BUCKET))) if expected else 512)
        # Float planes for numpy; FLAC and PCM decode to integers. Passes frames through when already fltp.
        to_float = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        meter = _Meter(rate, layout, channels, true_peak) if want_loudness else None
        bad = 0
        for packet in c.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                bad += 1
                if bad > _MAX_BAD_PACKETS:
                    raise Unprocessable(f"The audio could not be decoded: the file is corrupt ({e}).") from e
                continue
            for frame in frames:
                for f in to_float.resample(frame):
                    planes = np.stack(
                        [
                            np.frombuffer(p, dtype=np.float32, count=f.samples)
                            for p in f.planes[: len(f.layout.channels)]
                        ]
                    )
                    envelope.add(planes)
                    if meter is not None:
                        meter.push(f)
        for f in to_float.resample(None):
            envelope.add(f.to_ndarray())
            if meter is not None:
                meter.push(f)
    values, peak = envelope.buckets(buckets)
    measured = meter.finish(peak) if meter is not None else Loudness(None, 0.0, peak)
    return Analysis(peaks=values, loudness=measured, duration=envelope.samples / rate if rate else 0.0)


class _Meter:
    """FFmpeg's ebur128 filter fed frame by frame; its running results ride on each output frame's metadata."""

    def __init__(self, rate: int, layout: str, channels: int, true_peak: bool) -> None:
        self.graph = av.filter.Graph()
        src = self.graph.add_abuffer(sample_rate=rate, format="fltp", layout=layout, time_base=Fraction(1, rate))
        options = "metadata=1"
        if true_peak:
            options += ":peak=true"
        if channels == 1:
            options += ":dualmono=true"  # a mono file plays on both speakers: measure it as it will be heard
        meter = self.graph.add("ebur128", options)
        sink = self.graph.add("abuffersink")
        src.link_to(meter)
        meter.link_to(sink)
        self.graph.configure()
        self.last: dict[str, str] = {}
        self.pts = 0

    def push(self, frame: av.AudioFrame) -> None:
        frame.pts = self.pts  # a continuous timeline whatever the source's timestamps
        self.pts += frame.samples
        self.graph.push(frame)
        self._drain()

    def _drain(self) -> None:
        # Pull as we go: the sink would otherwise hold every frame of the file.
        while True:
            try:
                out = self.graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            self.last = dict(out.metadata)

    def finish(self, peak: float) -> Loudness:
        self.graph.push(None)
        self._drain()
        integrated = _number(self.last.get("lavfi.r128.I"))
        if integrated is None or integrated <= SILENCE_LUFS:
            integrated = None
        tp = _number(self.last.get("lavfi.r128.true_peak"))
        return Loudness(
            integrated_lufs=None if integrated is None else round(integrated, 2),
            track_gain_db=0.0 if integrated is None else round(REFERENCE_LUFS - integrated, 2),
            peak=round(peak, 6),
            true_peak_db=round(20 * math.log10(tp), 2) if tp else None,
        )


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
