"""Lyrics as text: how they are stored (plyrd.media.probe reads them from tags, plyrd.catalog.editing takes them from
the artist) and LRC's timed lines (Subsonic's getLyricsBySongId). Plain text work, kept apart from probe so that
reading lyrics never loads the media stack (PyAV, numpy) into an idle node."""

from __future__ import annotations

import re

_LRC_LINE = re.compile(r"^\s*\[(\d{1,3}):(\d{1,2})(?:[.:](\d{1,3}))?\]", re.MULTILINE)
MAX_LYRICS_CHARS = 20_000  # far beyond any song's words; plyrd.catalog.editing applies the same limit


def clean_lyrics(text: str) -> str | None:
    """Lyrics as stored: newlines normalised, NULs dropped, trailing blank space trimmed, bounded; None if empty."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    return text[:MAX_LYRICS_CHARS] if text.strip() else None


def is_lrc(text: str) -> bool:
    """Whether lyrics are LRC: at least half their non-empty lines start with a [mm:ss.xx] time."""
    lines = [line for line in text.split("\n") if line.strip()]
    timed = sum(1 for line in lines if _LRC_LINE.match(line))
    return bool(lines) and timed * 2 >= len(lines)


def lrc_lines(text: str) -> list[tuple[int, str]]:
    """LRC lyrics as (start in milliseconds, text) in time order. A line with several times ("[00:10][01:20]chorus")
    is each of them; metadata lines ("[ar:...]", "[offset:+250]") are dropped, an offset applied."""
    offset = 0
    if m := re.search(r"^\s*\[offset:\s*([+-]?\d+)\]", text, re.MULTILINE | re.IGNORECASE):
        offset = int(m.group(1))
    out: list[tuple[int, str]] = []
    for line in text.split("\n"):
        starts: list[int] = []
        rest = line.strip()
        while m := _LRC_LINE.match(rest):
            frac = m.group(3) or "0"
            ms = int(frac) * (10 ** (3 - len(frac)))
            starts.append((int(m.group(1)) * 60 + int(m.group(2))) * 1000 + ms)
            rest = rest[m.end():]
        rest = re.sub(r"<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>", "", rest).strip()  # enhanced LRC's word times
        out += [(max(0, start - offset), rest) for start in starts]
    return sorted(out, key=lambda x: x[0])
