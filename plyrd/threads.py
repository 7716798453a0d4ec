"""Bounded thread work: CPU-heavy calls (PyAV, Pillow, hashing) run in threads, at most N at once.

PyAV and Pillow release the GIL in their codecs, so threads give real parallelism; capping them at the core count
keeps a burst of uploads from starving request handling on a small machine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ThreadSlots:
    def __init__(self, size: int = 0) -> None:
        self.size = size or os.cpu_count() or 1
        self._sem = asyncio.Semaphore(self.size)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._sem:
            return await asyncio.to_thread(fn, *args, **kwargs)
