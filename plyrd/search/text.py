"""Folding text for the search index: what a person types and what the catalog holds meet in one form.

Both sides go through `fold()` before FTS5 sees them, so the index needs only SQLite's built-in tokenizers
(a Python-defined tokenizer would make search.db unusable from any connection that has not registered it).

The rules: case folded (ß = ss), diacritics removed from Latin, Greek and Cyrillic letters (é = e, ø = o, ł = l),
fullwidth and compatibility forms unified (NFKC/NFKD), curly and straight quotes and apostrophes removed inside
words (don’t = don't = dont), every other punctuation mark or symbol a word break (AC/DC = ac dc, @alice.bsky.social =
alice bsky social). Japanese voicing marks and Indic vowel signs are kept: they are letters there, not accents.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Letters NFKD does not decompose but people type without their stroke or ligature.
_LETTERS = str.maketrans({
    "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ł": "l", "Ł": "l", "ħ": "h", "Ħ": "h", "ı": "i", "ŧ": "t",
    "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "þ": "th", "Þ": "th", "ð": "d", "Ð": "d", "ĸ": "k",
    "ŀ": "l", "ŉ": "n", "ſ": "s",
})

# Apostrophes and quote marks, straight or curly: dropped, so contractions stay one word.
_QUOTES = frozenset("'\"`´‘’‚‛“”„‟′″ʼʹʻ＇＂")

MAX_FOLD_CHARS = 4096  # longer text is cut before folding: no title or name is that long


def _strip_mark(prev: str) -> bool:
    """A combining mark after `prev` is an accent to drop only on Latin, Greek and Cyrillic letters."""
    cp = ord(prev)
    return cp < 0x0530 or 0x1D00 <= cp < 0x2000 or 0x2C60 <= cp < 0x2C80 or 0xA720 <= cp < 0xA800


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """The searchable form of `text`: lower case, unaccented words separated by single spaces."""
    text = unicodedata.normalize("NFKD", text[:MAX_FOLD_CHARS].translate(_LETTERS))
    out: list[str] = []
    prev = " "
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] == "M":
            if _strip_mark(prev):
                continue
            out.append(ch)
        elif ch in _QUOTES:
            continue  # inside a word: joins it (don't -> dont); at its edges: nothing to join
        elif cat[0] in "LN":
            out.append(ch)
            prev = ch
        else:
            out.append(" ")  # punctuation, symbols, spaces and controls separate words
            prev = " "
    folded = unicodedata.normalize("NFC", "".join(out)).casefold().translate(_LETTERS)
    return " ".join(folded.split())


def tokens(text: str) -> list[str]:
    """The words of already-folded text."""
    return text.split()


def fold_many(values: list[str | None]) -> str:
    """Several values of one field (a name and a handle, a track's tags), folded, one per line.

    Lines keep the values apart for the exact and prefix tiers; to FTS5 a newline is just another separator."""
    seen: list[str] = []
    for v in values:
        if v and (f := fold(v)) and f not in seen:
            seen.append(f)
    return "\n".join(seen)


def handle_forms(handle: str | None) -> list[str]:
    """A handle as people type it: `alice.bsky.social` and its first label `alice` (the `@` folds away)."""
    if not handle:
        return []
    return [handle, handle.split(".", 1)[0]]


def deletes(term: str) -> set[str]:
    """Every string one deletion away from `term` (for typo candidates: two words within one edit of each other
    share a deletion, or one is a deletion of the other)."""
    return {term[:i] + term[i + 1:] for i in range(len(term))}


def grams(term: str) -> set[str]:
    """The trigrams of a word padded with a space at each end (so its first and last letters count too)."""
    padded = f" {term} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap neighbours); `limit + 1` once over it."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        best = cur[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            best = min(best, v)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)
