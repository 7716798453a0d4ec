"""Transcoding while streaming: decode an original with PyAV, resample, encode to MP3 or Opus in Ogg at a bitrate,
from an offset on, and hand the encoded bytes out in chunks as they are made, so a listener hears the start long
before the encode is done.

- Encoding is plyrd.media.encoding's, as for the upload rendition. MP3 goes through the system's libmp3lame when
  there is one: [ID3v2.3][CBR frames], without LAME's Info frame, which can only be written at the end by seeking
  back, and a stream cannot seek. Without a system LAME, PyAV's mp3 muxer (it writes its Xing frame at the start and
  cannot update it either).
- Opus: libopus at 48 kHz in an Ogg stream through PyAV, written to an output that cannot seek.
- `offset`: the demuxer seeks to the frame at or before it, and decoded samples before it are dropped, so the
  first sample sent is the one at `offset` (to a sample with FLAC/WAV; to a codec frame for lossy originals).

Each encode runs in a thread of its own (PyAV and ctypes release the GIL, so threads encode in parallel), bounded by
`LiveTranscoder`'s slots: a transcode paced by its listener lasts as long as the track, so a pool of core-count
threads would let two listeners hold the node; the bound is on how many run at once, and a request past it waits
a little, then is refused with `Busy`. Encoding threads take turns, one per core (see `LiveTranscoder`). The thread
runs at most `ahead` chunks ahead of the consumer (backpressure: a slow or paused client does not make the node
encode the whole track into memory) and within a pace (LEAD, SPEED: socket buffers would otherwise hide a paused
client), and stops at its next packet once the consumer goes away; it never touches the file system beyond reading
the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av

from ..errors import Unprocessable
from .encoding import LameEncoder, PyAVEncoder, lame_library, pump
from .probe import open_audio, pick_audio_stream, read_tags

Format = Literal["mp3", "opus"]
MP3_RATE = 44100
OPUS_RATE = 48000  # the only rate Opus really runs at
FIRST_CHUNK = 8 * 1024  # the first bytes go out as soon as there are this many: a quick start for the listener
CHUNK = 64 * 1024
AHEAD = 6  # chunks encoded ahead of the consumer: about 24 s at 128 kbit/s
# Pacing: the encode stays within LEAD seconds of audio plus SPEED times the time since it began. The consumer's
# backpressure alone does not bound it: the kernel's socket buffers (and a reverse proxy's) take megabytes, and a
# paused listener on loopback had 5.4 MB (339 s at 128 kbit/s) encoded for them within 3 s. Paced, a player still
# gets a quick start (its buffer fills at once) and an app saving a song for offline play gets it at 16x realtime.
LEAD = 30.0
SPEED = 16.0


class Busy(Exception):
    """Every transcode slot stayed taken for the whole wait."""


class Cancelled(Exception):
    """The consumer went away; the encode stopped."""


@dataclass(frozen=True)
class Request:
    source: Path
    format: Format
    kbps: int
    offset: float = 0.0


class _Out:
    """Where the encoder writes: bytes gathered, handed out in chunks. No seek or tell: muxers treat it as a pipe."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._buf = bytearray()
        self._limit = FIRST_CHUNK
        self.total = 0

    def write(self, data: bytes | memoryview) -> int:
        self._buf += data
        if len(self._buf) >= self._limit:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            chunk, self._buf = bytes(self._buf), bytearray()
            self.total += len(chunk)
            self._limit = CHUNK
            self._emit(chunk)


def encode(req: Request, emit: Callable[[bytes], None], cancelled: Callable[[], bool]) -> int:
    """Encode `req` in the calling thread, giving each chunk of bytes to `emit` as it is made. Returns the bytes
    made. `cancelled` is asked between packets; when it answers True the encode stops with Cancelled.
    Raises Unprocessable when the source cannot be decoded."""
    out = _Out(emit)
    with open_audio(req.source) as c:
        stream = pick_audio_stream(c)
        channels = 1 if (stream.codec_context.channels or 2) == 1 else 2  # more than two: downmix to stereo
        rate = OPUS_RATE if req.format == "opus" else MP3_RATE
        tags, bitrate = read_tags(c, stream), req.kbps * 1000
        sink: LameEncoder | PyAVEncoder
        if req.format == "mp3" and lame_library() is not None:  # a stream: no Info frame (it needs a seek back)
            sink = LameEncoder(out, channels=channels, rate=rate, bitrate=bitrate, tags=tags, info_frame=False)
        else:
            sink = PyAVEncoder(out, codec=req.format, channels=channels, rate=rate, bitrate=bitrate, tags=tags)

        def check(_written: int) -> None:
            if cancelled():
                raise Cancelled("the listener went away")

        try:
            if req.offset > 0:
                c.seek(int(req.offset * av.time_base), backward=True, any_frame=False)
            written = pump(c, stream, sink, rate, channels, offset=req.offset, before_packet=check)
            if written == 0 and req.offset == 0:
                raise Unprocessable("The file contains no decodable audio.")
            sink.close()
        except BaseException:
            sink.abort()
            raise
    out.flush()
    return out.total


class LiveTranscoder:
    """At most `slots` live transcodes at once (each a thread), a request past that waiting up to `wait` seconds."""

    def __init__(self, slots: int, *, wait: float = 3.0, ahead: int = AHEAD) -> None:
        self.slots = slots
        self.wait = wait
        self.ahead = ahead
        self._free = asyncio.Semaphore(slots)
        self.running = 0  # slots taken
        # Threads encoding at any one moment: one per core. Dozens of threads all wanting the GIL starve the event
        # loop (measured: first-byte p50 0.5 s with 20 streams starting at once, the CPU 60% idle); a thread holds
        # a turn while it makes one chunk, and gives it back while it waits for its listener.
        self._turns = threading.Semaphore(os.cpu_count() or 1)

    def _release(self) -> None:
        self.running -= 1
        self._free.release()

    async def open(self, req: Request) -> LiveStream:
        """A transcode of `req` holding a slot, not started yet. Raises Busy when no slot frees up in time."""
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait)
        except TimeoutError:
            raise Busy(f"all {self.slots} transcoding slots are in use; try again shortly") from None
        self.running += 1
        return LiveStream(req, self._release, self.ahead, self._turns)


class LiveStream:
    """One transcode: `start()` runs it in a thread of its own, `next()` gives its chunks in order (None at the end,
    or raises what the encode raised), `close()` (synchronous, so a dropped response can call it) stops it. The slot
    is given back when the thread ends, or at `close()` if it never started."""

    def __init__(self, req: Request, release: Callable[[], None], ahead: int, turns: threading.Semaphore) -> None:
        self.req = req
        self._turns = turns
        self._turn = False  # the first chunk is made without waiting for a turn: a quick start for every listener
        self._release: Callable[[], None] | None = release
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._room = threading.Semaphore(ahead)  # chunks the thread may be ahead of the consumer
        self._stop = threading.Event()
        self.started = False
        self.finished = False
        self._began = 0.0
        self._made = 0  # bytes handed out

    def _give_back(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def _wait(self, lock: threading.Semaphore) -> None:
        while not lock.acquire(timeout=0.5):
            if self._stop.is_set():
                raise Cancelled("the listener went away")
        if self._stop.is_set():
            lock.release()
            raise Cancelled("the listener went away")

    def _give_turn(self) -> None:
        if self._turn:
            self._turn = False
            self._turns.release()

    def _pace(self) -> None:
        """Hold the encode while it is further ahead of the clock than LEAD + SPEED x elapsed seconds of audio."""
        audio = self._made * 8 / (self.req.kbps * 1000)
        while (early := (audio - LEAD) / SPEED - (time.monotonic() - self._began)) > 0:
            if self._stop.wait(min(early, 0.5)):
                raise Cancelled("the listener went away")

    def _emit(self, chunk: bytes) -> None:
        self._give_turn()
        self._made += len(chunk)
        self._pace()
        self._wait(self._room)
        self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
        self._wait(self._turns)
        self._turn = True

    def _run(self) -> None:
        outcome: BaseException | None = None
        try:
            encode(self.req, self._emit, self._stop.is_set)
        except BaseException as e:  # handed to the consumer, which raises it in its own task
            outcome = e
        finally:
            self._give_turn()
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone anyway
                self._loop.call_soon_threadsafe(self._give_back)
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, outcome)

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._began = time.monotonic()
        try:
            threading.Thread(target=self._run, name="plyrd-live-transcode", daemon=True).start()
        except BaseException:
            self.started = False
            raise

    async def next(self) -> bytes | None:
        self.start()
        if self.finished:
            return None
        item = await self._chunks.get()
        if item is None:
            self.finished = True
            return None
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        self._room.release()
        return item

    def close(self) -> None:
        """Stop the encode at its next packet (the thread gives the slot back when it ends)."""
        self._stop.set()
        self._room.release()  # wake a thread waiting for room, so it sees the stop at once
        if not self.started:
            self._give_back()
