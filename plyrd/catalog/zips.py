"""Zips streamed as they are written: an account export, an album download.

A worker thread writes the zip into a bounded queue that the response drains, so memory stays constant however large
the files are. Audio is stored, not recompressed (it is compressed already); small documents are deflated.
"""

from __future__ import annotations

import asyncio
import io
import queue
import re
import threading
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024
_QUEUE_CHUNKS = 8  # at most about 2 MB of zip in flight


def safe_name(name: str) -> str:
    """A file name any unzip tool accepts on any system: no path separators, control or reserved characters."""
    return re.sub(r'[\x00-\x1f/\\:*?"<>|]+', " ", name).strip()[:120] or "untitled"


class ZipNames:
    """Unique names inside one zip: a second "x.mp3" becomes "x (2).mp3"."""

    def __init__(self, folder: str = "") -> None:
        self._prefix = f"{folder}/" if folder else ""
        self._used: set[str] = set()

    def add(self, base: str, ext: str) -> str:
        """A unique name for `base` (made safe: a title may hold a slash) with the extension `ext`."""
        prefix, base = self._prefix, safe_name(base)
        name, n = f"{prefix}{base}.{ext}", 2
        while name in self._used:
            name, n = f"{prefix}{base} ({n}).{ext}", n + 1
        self._used.add(name)
        return name


class _QueueWriter(io.RawIOBase):
    """A write-only, non-seekable stream into a bounded queue (zipfile then writes data descriptors)."""

    def __init__(self, q: queue.Queue[bytes | None], cancelled: threading.Event) -> None:
        self._q = q
        self._cancelled = cancelled
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if self._cancelled.is_set():
            raise BrokenPipeError("zip cancelled")
        self._buf += b
        while len(self._buf) >= CHUNK:
            self._put(bytes(self._buf[:CHUNK]))
            del self._buf[:CHUNK]
        return len(b)

    def _put(self, data: bytes) -> None:
        while True:
            try:
                self._q.put(data, timeout=0.5)
                return
            except queue.Full:
                if self._cancelled.is_set():
                    raise BrokenPipeError("zip cancelled") from None

    def close(self) -> None:
        if self._buf and not self._cancelled.is_set():
            self._put(bytes(self._buf))
            self._buf.clear()
        super().close()


def _write_zip(out: _QueueWriter, documents: list[tuple[str, bytes]], files: list[tuple[str, Path]]) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for arcname, data in documents:
            z.writestr(arcname, data, compress_type=zipfile.ZIP_DEFLATED)
        for arcname, path in files:
            with path.open("rb") as src, z.open(arcname, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
    out.close()


async def stream_zip(files: list[tuple[str, Path]], *, documents: list[tuple[str, bytes]] = ()) -> AsyncIterator[bytes]:
    """The bytes of a zip holding `documents` (name, bytes; deflated) then `files` (name, path; stored)."""
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    cancelled = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            _write_zip(_QueueWriter(q, cancelled), list(documents), files)
        except BaseException as e:  # reported to the consumer, which ends the stream
            failure.append(e)
        finally:
            while True:
                try:
                    q.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if cancelled.is_set():
                        break

    worker = threading.Thread(target=produce, name="plyrd-zip", daemon=True)
    worker.start()
    try:
        while True:
            chunk = await asyncio.to_thread(q.get)
            if chunk is None:
                break
            yield chunk
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0]
    finally:
        cancelled.set()  # a client that went away stops the thread at its next write
