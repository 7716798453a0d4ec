"""The search index: search.db, opened only through apsw (never the stdlib sqlite3: two SQLite copies in one process
do not see each other's locks), fed by the indexer and queried in threads.

What it holds, per searchable thing (a "doc": a track, an artist, an album, a tag or a playlist):
- `docs`: the folded text of its four fields (title, artist, album, tags), who owns it, whether it is private;
- `words_<kind>`: an FTS5 table (unicode61) over those fields, ranked by bm25 with column weights 10/5/3/1;
- `tri_<kind>`: an FTS5 trigram table over the same fields, for substrings inside words;
- `names`: every field value as a B-tree key, so "equals" and "starts with" are index seeks, however broad;
- `vocab` (+ `vocab_del`, `vocab_gram`): every word with the number of docs using it, its one-letter deletions and
  its trigrams, to correct typos against words that exist;
- `meta`: the last change-log sequence applied, written in the same transaction as the changes it covers.

A query walks the tiers in order and stops as soon as `limit` results are in: exact (a field equals the query),
prefix (a field starts with it), words (every word present in any field, the last one maybe still being typed),
substring (inside words too), fuzzy (misspelt words replaced by known words one or two edits away). Inside a tier
the heavier column wins (title over artist over album over tags): by bm25 with column weights 10/5/3/1 for words
and fuzzy matches; for exact and prefix matches found through `names`, by the column matched and then how much
of the value the query covers; substrings likewise (bm25's weighing pass over the doclists of common trigrams
costs more than a whole search may). Every query is bounded: no stage ranks more than BROAD rows, and very common
words are checked on candidates instead of being matched, so broad queries cost what narrow ones do.

Typo tolerance, measured in bench/search.py against what apsw offers: query_suggest (threshold 0) and
closest_tokens scan every token with difflib (13-140 ms, 89-91% of typo queries answered in the top 3), and
trigram similarity over whole docs is fast on average but 77% and up to 70 ms; one-letter deletions and trigrams
of the vocabulary in B-trees, then an edit distance, answered 98.7% within a whole search's 5 ms.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .text import deletes, edit_distance, fold, grams

log = logging.getLogger("plyrd.search")

INDEX_VERSION = 1
KINDS = ("tracks", "artists", "albums", "tags", "playlists")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
COLUMNS = ("title", "artist", "album", "tags")
WEIGHTS = (10.0, 5.0, 3.0, 1.0)
MAX_TOKENS = 12            # words of a query used (100 characters leave room for no more anyway)
NAMES_SCAN = 400           # B-tree rows examined for the exact/prefix tiers before ranking them
FTS_CANDIDATES = 60        # FTS rows ranked per tier beyond the limit (visibility filtering eats some)
BROAD = 1000               # a query matching more docs than this is ranked among its newest BROAD matches only
SUBSTRING_SCAN = 200       # substring matches examined (newest first)
COMMON = 15000             # a word in more docs than this is checked on candidates rather than matched by FTS5
VOCAB_MIN, VOCAB_MAX = 3, 30  # words kept for typo correction (shorter ones have too many neighbours)
MAX_FIXES = 6              # corrections tried per misspelt word
SIMILAR_WORDS = 6          # a track's rarest words looked for in others ("more like this")
SIMILAR_WEIGHTS = (1.0, 4.0, 4.0, 3.0)  # ... where a shared artist or album counts most

# The score bands of the tiers: a result's score is its band's floor plus the band's width times a 0..1 strength.
TIERS = {
    "exact": (0.90, 1.00),
    "prefix": (0.75, 0.90),
    "words": (0.60, 0.75),
    "substring": (0.35, 0.60),
    "fuzzy": (0.05, 0.35),
}


@dataclass(frozen=True)
class Doc:
    """One searchable thing, its fields already folded (values of one field on separate lines)."""

    kind: str
    key: str
    title: str
    artist: str = ""
    album: str = ""
    tags: str = ""
    owner: str | None = None
    private: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # what the indexer must remember (a track's tags, albums)

    @property
    def fields(self) -> tuple[str, str, str, str]:
        return (self.title, self.artist, self.album, self.tags)


@dataclass(frozen=True)
class Hit:
    kind: str
    key: str
    score: float
    tier: str


@dataclass
class _Query:
    text: str                  # folded, single spaces
    toks: list[str]
    freqs: list[int]           # docs using each word (the last as a prefix)
    fixes: list[list[str]] | None = None  # each word and its typo corrections, computed when first needed


@dataclass
class _Cand:
    doc: int
    key: str
    tier: str
    strength: float


def _fts_phrase(token: str, prefix: bool) -> str:
    # Folded tokens hold letters, digits and marks only; quoting makes each one a plain string to FTS5 whatever
    # it spells (NEAR, OR, AND, NOT), and doubling quotes is belt and braces.
    quoted = '"' + token.replace('"', '""') + '"'
    return quoted + "*" if prefix else quoted


def _fts_group(words: Sequence[str], prefix: bool) -> str:
    """One query word and its alternatives (typo corrections): any of them."""
    if len(words) == 1:
        return _fts_phrase(words[0], prefix)
    return "(" + " OR ".join(_fts_phrase(w, prefix) for w in words) + ")"


def _strength_bm25(rank: float) -> float:
    """bm25 (negative, lower is better) as a 0..1 strength."""
    s = max(0.0, -rank)
    return s / (s + 8.0)


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;  -- no affinity: kept as written
CREATE TABLE IF NOT EXISTS docs(
    id      INTEGER PRIMARY KEY,
    kind    INTEGER NOT NULL,
    key     TEXT NOT NULL,
    owner   TEXT,
    private INTEGER NOT NULL DEFAULT 0,
    title   TEXT NOT NULL,
    artist  TEXT NOT NULL,
    album   TEXT NOT NULL,
    tags    TEXT NOT NULL,
    extra   TEXT NOT NULL DEFAULT '{}',
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS docs_owner ON docs(owner, kind) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS names(
    kind  INTEGER NOT NULL,
    value TEXT NOT NULL,
    col   INTEGER NOT NULL,
    doc   INTEGER NOT NULL,
    PRIMARY KEY (kind, value, col, doc)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vocab(id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE, docs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vocab_del(del TEXT NOT NULL, term INTEGER NOT NULL, PRIMARY KEY (del, term)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vocab_gram(gram TEXT NOT NULL, term INTEGER NOT NULL, PRIMARY KEY (gram, term))
    WITHOUT ROWID;
""" + "".join(f"""
CREATE VIRTUAL TABLE IF NOT EXISTS words_{k} USING fts5({", ".join(COLUMNS)}, content='docs', content_rowid='id',
    tokenize='unicode61 remove_diacritics 0', prefix='2 3');
CREATE VIRTUAL TABLE IF NOT EXISTS tri_{k} USING fts5({", ".join(COLUMNS)}, content='docs', content_rowid='id',
    tokenize='trigram');
""" for k in KINDS)


def _create_private(path: Path) -> None:
    """A new search.db starts as an empty 0600 file: SQLite would make it 0644 under the usual umask, and its
    -wal, -shm and -journal files take the database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _connect(path: Path) -> apsw.Connection:
    _create_private(path)
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5000)
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: last_seq commits with the changes it covers, and the change log is pruned only after that commit.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class SearchIndex:
    """search.db: one writer connection (the indexer's, used by one thread at a time) and a pool of readers."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        try:
            self._writer = self._open(path)
        except (apsw.NotADBError, apsw.CorruptError) as e:
            # Derived data: a damaged file is replaced, and the indexer rebuilds it from the catalog.
            log.warning("search index damaged; starting a new one",
                        extra={"fields": {"path": str(path), "error": str(e)}})
            _remove(path)
            self._writer = self._open(path)
        self._readers: queue.Queue[apsw.Connection] = queue.Queue()
        self._all_readers = [_connect(path) for _ in range(max(1, readers))]
        for r in self._all_readers:
            r.execute("PRAGMA query_only = ON")
            self._readers.put(r)
        self._lock = threading.Lock()  # the writer is one connection: one thread at a time
        self._tables: dict[int, Any] = {}  # apsw.fts5.Table per reader connection, for "more like this"

    @classmethod
    def _open(cls, path: Path) -> apsw.Connection:
        conn = _connect(path)
        version = cls._meta(conn, "version")
        if version is not None and version != INDEX_VERSION:
            # Built by another plyrd: start again (the indexer rebuilds when last_seq is missing).
            conn.close()
            _remove(path)
            conn = _connect(path)
        with conn:
            conn.execute(SCHEMA)
            for k in KINDS:  # `ORDER BY rank` means the column weights too, for anyone querying the file
                conn.execute(f"INSERT INTO words_{k}(words_{k}, rank) VALUES('rank', 'bm25(10, 5, 3, 1)')")
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('version', ?)", (INDEX_VERSION,))
        return conn

    def close(self) -> None:
        for r in self._all_readers:
            r.close()
        self._all_readers.clear()
        with self._lock:  # after the write in progress, if any (a worker cancelled mid-batch leaves its thread)
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except apsw.Error:
                pass
            self._writer.close()

    # ---- state --------------------------------------------------------------------------------------------------

    @staticmethod
    def _meta(conn: apsw.Connection, key: str) -> Any:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except apsw.SQLError:  # a new file: no meta table yet
            return None
        return row[0] if row else None

    @property
    def last_seq(self) -> int | None:
        """The last change-log sequence applied; None when the index must be (re)built from the catalog."""
        with self._lock:
            value = self._meta(self._writer, "last_seq")
        return None if value is None else int(value)

    def meta(self, key: str) -> Any:
        with self._lock:
            return self._meta(self._writer, key)

    def docs(self, kind: str, keys: Iterable[str]) -> dict[str, Doc]:
        """The indexed docs of these keys (what the indexer remembers of them)."""
        with self._lock:
            rows = self._writer.execute(
                "SELECT key, title, artist, album, tags, owner, private, extra FROM docs"
                " WHERE kind = ? AND key IN (SELECT value FROM json_each(?))",
                (KIND_CODE[kind], json.dumps(list(keys)))).fetchall()
        return {row[0]: self._row_doc(kind, row) for row in rows}

    def docs_of_owner(self, owner: str) -> list[tuple[str, str]]:
        """(kind, key) of every doc an artist owns, for refreshing them when their name or handle changes."""
        with self._lock:
            rows = self._writer.execute("SELECT kind, key FROM docs WHERE owner = ?", (owner,)).fetchall()
        return [(KINDS[k], key) for k, key in rows]

    @staticmethod
    def _row_doc(kind: str, row: Sequence[Any]) -> Doc:
        key, title, artist, album, tags, owner, private, extra = row
        return Doc(kind, key, title, artist, album, tags, owner, bool(private), json.loads(extra))

    # ---- writing ------------------------------------------------------------------------------------------------

    def begin_rebuild(self) -> None:
        """Empty the index and forget last_seq: until finish_rebuild() commits, a crash means "rebuild again"."""
        with self._lock, self._writer:
            self._writer.execute("DELETE FROM meta WHERE key = 'last_seq'")
            for k in KINDS:
                self._writer.execute(f"INSERT INTO words_{k}(words_{k}) VALUES('delete-all')")
                self._writer.execute(f"INSERT INTO tri_{k}(tri_{k}) VALUES('delete-all')")
            for table in ("docs", "names", "vocab", "vocab_del", "vocab_gram"):
                self._writer.execute(f"DELETE FROM {table}")

    def finish_rebuild(self, last_seq: int, catalog_id: str) -> None:
        with self._lock, self._writer:
            self._writer.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?), ('catalog_id', ?)",
                                 (last_seq, catalog_id))
            for k in KINDS:  # a rebuild writes many small segments: merge them for quick queries
                self._writer.execute(f"INSERT INTO words_{k}(words_{k}) VALUES('optimize')")
                self._writer.execute(f"INSERT INTO tri_{k}(tri_{k}) VALUES('optimize')")
        with self._lock:  # a rebuild leaves a WAL as large as the index: give the space back
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def apply(self, upserts: Iterable[Doc] = (), removals: Iterable[tuple[str, str]] = (),
              last_seq: int | None = None) -> int:
        """Write docs and remove others in one transaction, with `last_seq` if given. Returns the docs changed."""
        changed = 0
        terms: Counter[str] = Counter()  # word -> change in the number of docs using it, for the whole batch
        with self._lock, self._writer:
            c = self._writer
            for kind, key in removals:
                changed += self._remove(c, kind, key, terms)
            for d in upserts:
                self._remove(c, d.kind, d.key, terms)
                self._insert(c, d, terms)
                changed += 1
            self._vocab(c, terms)
            if last_seq is not None:
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('last_seq', ?)", (last_seq,))
        return changed

    def _insert(self, c: apsw.Connection, d: Doc, terms: Counter[str]) -> None:
        code = KIND_CODE[d.kind]
        c.execute("INSERT INTO docs(kind, key, owner, private, title, artist, album, tags, extra)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (code, d.key, d.owner, int(d.private), *d.fields, json.dumps(d.extra, separators=(",", ":"))))
        rowid = c.last_insert_rowid()
        c.execute(f"INSERT INTO words_{d.kind}(rowid, title, artist, album, tags) VALUES (?, ?, ?, ?, ?)",
                  (rowid, *d.fields))
        c.execute(f"INSERT INTO tri_{d.kind}(rowid, title, artist, album, tags) VALUES (?, ?, ?, ?, ?)",
                  (rowid, *d.fields))
        c.executemany("INSERT OR IGNORE INTO names(kind, value, col, doc) VALUES (?, ?, ?, ?)",
                      [(code, v, col, rowid) for col, f in enumerate(d.fields) for v in f.split("\n") if v])
        terms.update(_doc_terms(d.fields))

    def _remove(self, c: apsw.Connection, kind: str, key: str, terms: Counter[str]) -> int:
        code = KIND_CODE[kind]
        row = c.execute("SELECT id, title, artist, album, tags FROM docs WHERE kind = ? AND key = ?",
                        (code, key)).fetchone()
        if row is None:
            return 0
        rowid, *fields = row
        # External-content FTS5 tables forget a row only when told its old values.
        c.execute(f"INSERT INTO words_{kind}(words_{kind}, rowid, title, artist, album, tags)"
                  " VALUES('delete', ?, ?, ?, ?, ?)", (rowid, *fields))
        c.execute(f"INSERT INTO tri_{kind}(tri_{kind}, rowid, title, artist, album, tags)"
                  " VALUES('delete', ?, ?, ?, ?, ?)", (rowid, *fields))
        c.executemany("DELETE FROM names WHERE kind = ? AND value = ? AND col = ? AND doc = ?",
                      [(code, v, col, rowid) for col, f in enumerate(fields) for v in f.split("\n") if v])
        terms.subtract(_doc_terms(fields))
        c.execute("DELETE FROM docs WHERE id = ?", (rowid,))
        return 1

    @staticmethod
    def _vocab(c: apsw.Connection, terms: Counter[str]) -> None:
        """Apply a batch's word counts: new words get their deletions and trigrams, words no doc uses go."""
        for term, delta in terms.items():
            if delta > 0:
                tid, docs = c.execute("INSERT INTO vocab(term, docs) VALUES (?, ?) ON CONFLICT(term) DO UPDATE"
                                      " SET docs = docs + excluded.docs RETURNING id, docs", (term, delta)).fetchone()
                if docs == delta:  # new
                    c.executemany("INSERT OR IGNORE INTO vocab_del(del, term) VALUES (?, ?)",
                                  [(d, tid) for d in {term} | deletes(term)])
                    c.executemany("INSERT OR IGNORE INTO vocab_gram(gram, term) VALUES (?, ?)",
                                  [(g, tid) for g in grams(term)])
            elif delta < 0:
                row = c.execute("UPDATE vocab SET docs = docs + ? WHERE term = ? RETURNING id, docs",
                                (delta, term)).fetchone()
                if row is not None and row[1] <= 0:
                    c.executemany("DELETE FROM vocab_del WHERE del = ? AND term = ?",
                                  [(d, row[0]) for d in {term} | deletes(term)])
                    c.executemany("DELETE FROM vocab_gram WHERE gram = ? AND term = ?",
                                  [(g, row[0]) for g in grams(term)])
                    c.execute("DELETE FROM vocab WHERE id = ?", (row[0],))

    # ---- reading ------------------------------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[apsw.Connection]:
        conn = self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put(conn)

    def search(self, query: str, kinds: Sequence[str] = KINDS, *, limit: int = 20,
               viewer: str | None = None) -> dict[str, list[Hit]]:
        """The best `limit` hits of each kind for `query` (raw text: folded here), visible to `viewer`."""
        toks = fold(query).split()[:MAX_TOKENS]
        if not toks:
            return {k: [] for k in kinds}
        with self.reader() as conn:
            q = _Query(" ".join(toks), toks, self._frequencies(conn, toks))
            out: dict[str, list[Hit]] = {}
            for kind in kinds:
                found = self._kind(conn, kind, q, limit, viewer)
                if len(found) < limit:
                    if q.fixes is None:
                        q.fixes = self._corrections(conn, toks)
                    if any(len(f) > 1 for f in q.fixes):
                        self._fuzzy(conn, kind, q, limit, viewer, found)
                out[kind] = [Hit(kind, c.key, _score(c), c.tier) for c in _top(found, limit)]
        return out

    @staticmethod
    def _frequencies(conn: apsw.Connection, toks: list[str]) -> list[int]:
        """How many docs use each word (the last one as a prefix, counted over at most 50 words it begins)."""
        freqs = []
        for i, tok in enumerate(toks):
            if len(tok) < VOCAB_MIN:
                freqs.append(COMMON + 1)  # one and two letters narrow nothing
            elif i == len(toks) - 1:
                freqs.append(conn.execute(
                    "SELECT coalesce(sum(docs), 0) FROM (SELECT docs FROM vocab WHERE term >= ? AND term < ? LIMIT 50)",
                    (tok, tok + "\U0010ffff")).fetchone()[0])
            else:
                row = conn.execute("SELECT docs FROM vocab WHERE term = ?", (tok,)).fetchone()
                freqs.append(row[0] if row else 0)
        return freqs

    def _kind(self, conn: apsw.Connection, kind: str, q: _Query, limit: int, viewer: str | None) -> dict[int, _Cand]:
        code = KIND_CODE[kind]
        found: dict[int, _Cand] = {}

        # 1. exact and prefix: B-tree seeks on every field value; best column and closest length first.
        rows = conn.execute(
            "SELECT n.doc, n.col, length(n.value), d.key, d.owner, d.private FROM"
            " (SELECT doc, col, value FROM names WHERE kind = ? AND value >= ? AND value < ? LIMIT ?) n"
            " JOIN docs d ON d.id = n.doc"
            " ORDER BY length(n.value) > ?, n.col, length(n.value)",
            (code, q.text, q.text + "\U0010ffff", NAMES_SCAN, len(q.text))).fetchall()
        for doc, col, length, key, owner, private in rows:
            if doc in found or (private and owner != viewer):
                continue
            tier = "exact" if length == len(q.text) else "prefix"
            # A heavier column and a value closer in length to the query are stronger, as bm25 would judge them.
            found[doc] = _Cand(doc, key, tier, WEIGHTS[col] / 10.0 * (len(q.text) / length))
        if len(found) >= limit:
            return found

        # 2. every word, anywhere, the last maybe half-typed: bm25 with column weights.
        for doc, rank, key, fields in self._words(conn, kind, [[t] for t in q.toks], q.freqs, limit, viewer):
            if doc not in found:
                tier = _classify(q.text, fields)
                # Found here rather than by the names scan only when a prefix is very broad: below those found there.
                strength = _strength_bm25(rank) * (0.5 if tier != "words" else 1.0)
                found[doc] = _Cand(doc, key, tier, strength)
        if len(found) >= limit or len(q.text) < 3 or 0 in q.freqs[1:-1]:
            return found  # (a word no doc has, between two others, cannot be part of a substring match either)

        # 3. a substring anywhere, inside words too (trigrams: three characters at least). Not bm25 here: its weighing
        # pass over the doclists of common trigrams ("the", "ing") costs more than the whole search may take. For
        # several words the trigram index is asked for the two longest (every trigram of a long phrase is as costly
        # as the rarest) and the whole text is checked on what it returns.
        longest = sorted({t for t in q.toks if len(t) >= 3}, key=len, reverse=True)[:2] or [q.text]
        try:
            rows = conn.execute(f"SELECT rowid FROM tri_{kind} WHERE tri_{kind} MATCH ? ORDER BY rowid DESC LIMIT ?",
                                (" AND ".join(_fts_phrase(t, False) for t in longest), SUBSTRING_SCAN)).fetchall()
        except apsw.SQLError:
            log.exception("search query failed", extra={"fields": {"q": q.text[:200]}})
            rows = []
        for doc, (key, owner, private, fields) in self._docs(conn, [r[0] for r in rows if r[0] not in found]):
            if private and owner != viewer:
                continue
            # The heaviest column holding it, and how much of that value the query covers.
            strength = max((WEIGHTS[col] / 10.0 * len(q.text) / len(v) for col, f in enumerate(fields)
                            for v in f.split("\n") if q.text in v), default=None)
            if strength is not None:
                found[doc] = _Cand(doc, key, "substring", strength)
        return found

    def _words(self, conn: apsw.Connection, kind: str, groups: list[list[str]], freqs: list[int], limit: int,
               viewer: str | None) -> Iterator[tuple[int, float, str, tuple[str, ...]]]:
        """Docs holding a word of every group (the last group's words as prefixes), best bm25 first.

        bm25 reads every row of every word in the MATCH to weigh it, so words used by very many docs ("bsky",
        "social" of every handle, one-letter words) stay out of the MATCH and are checked here instead; with only
        such words the stage is skipped (the names scan has answered what can be answered)."""
        last = len(groups) - 1
        selective = [i for i, f in enumerate(freqs) if f <= COMMON]
        if not selective:
            return
        match = " AND ".join(_fts_group(groups[i], i == last) for i in selective)
        checked = [i for i in range(len(groups)) if i not in selective]
        want = limit + FTS_CANDIDATES + (3 * limit if checked else 0)
        for doc, rank, key, owner, private, fields in self._fts(conn, f"words_{kind}", match, want):
            if private and owner != viewer:
                continue
            if checked:
                words = " ".join(fields).split()
                if not all(any(w == g or (i == last and w.startswith(g)) for g in groups[i] for w in words)
                           for i in checked):
                    continue
            yield doc, rank, key, fields

    def _fts(self, conn: apsw.Connection, table: str, match: str, want: int,
             weights: Sequence[float] = WEIGHTS) -> list[tuple[int, float, str, str | None, int, tuple[str, ...]]]:
        """Up to `want` matches, best bm25 first, with their docs.

        Ranking reads every match, so a broad one is ranked among its newest BROAD matches only: the inner LIMIT
        bounds the work whatever the query."""
        try:
            ranked = conn.execute(
                f"SELECT rowid, r FROM (SELECT rowid, bm25({table}, {', '.join(map(str, weights))}) AS r FROM {table}"
                f" WHERE {table} MATCH ? ORDER BY rowid DESC LIMIT {BROAD}) ORDER BY r LIMIT ?",
                (match, want)).fetchall()
        except apsw.SQLError:  # never expected (the query is built from quoted words), never worth a 500
            log.exception("search query failed", extra={"fields": {"match": match[:200]}})
            return []
        docs = dict(self._docs(conn, [r[0] for r in ranked]))
        return [(doc, rank, *d) for doc, rank in ranked if (d := docs.get(doc))]

    @staticmethod
    def _docs(conn: apsw.Connection,
              ids: list[int]) -> list[tuple[int, tuple[str, str | None, int, tuple[str, str, str, str]]]]:
        """(id, (key, owner, private, fields)) of these docs."""
        if not ids:
            return []
        return [(r[0], (r[1], r[2], r[3], (r[4], r[5], r[6], r[7]))) for r in conn.execute(
            "SELECT id, key, owner, private, title, artist, album, tags FROM docs"
            " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))]

    # ---- typos --------------------------------------------------------------------------------------------------

    def _corrections(self, conn: apsw.Connection, toks: list[str]) -> list[list[str]]:
        """For each query word: itself, then (when it is no word of the index) the known words it may misspell."""
        out = []
        for i, tok in enumerate(toks):
            options = [tok]
            last = i == len(toks) - 1
            if VOCAB_MIN <= len(tok) <= VOCAB_MAX and not self._known(conn, tok, last):
                options += self._closest(conn, tok)
                if last and len(tok) >= 4:  # maybe a word still being typed, with a slip in it
                    options += [p for p in self._closest_prefixes(conn, tok) if p not in options]
            out.append(options[:1 + MAX_FIXES])
        return out

    @staticmethod
    def _closest_prefixes(conn: apsw.Connection, tok: str, n: int = 3) -> list[str]:
        """Beginnings of known words one edit away from `tok`, most used first: 'strn' -> 'stra' (stranger).

        One GLOB per edit (a wrong, missing or extra letter; first letters are trusted): each has a literal
        beginning, so SQLite answers it with a range scan of the vocab index."""
        patterns: dict[str, int] = {}  # GLOB pattern -> length of the beginning it stands for
        for i in range(1, len(tok)):
            patterns[tok[:i] + "?" + tok[i + 1:] + "*"] = len(tok)      # wrong letter
            patterns[tok[:i] + "?" + tok[i:] + "*"] = len(tok) + 1       # a letter left out
            patterns[tok[:i] + tok[i + 1:] + "*"] = len(tok) - 1         # a letter too many
            if i + 1 < len(tok):
                patterns[tok[:i] + tok[i + 1] + tok[i] + tok[i + 2:] + "*"] = len(tok)  # two letters swapped
        weight: dict[str, int] = {}
        for pattern, size in patterns.items():
            for term, docs in conn.execute("SELECT term, docs FROM vocab WHERE term GLOB ? LIMIT 50", (pattern,)):
                if term[:size] != tok:
                    weight[term[:size]] = weight.get(term[:size], 0) + docs
        return [p for _, p in sorted(((-w, p) for p, w in weight.items()))[:n]]

    @staticmethod
    def _known(conn: apsw.Connection, tok: str, last: bool) -> bool:
        if last:  # still being typed: any word it begins counts as known
            row = conn.execute("SELECT 1 FROM vocab WHERE term >= ? AND term < ? LIMIT 1",
                               (tok, tok + "\U0010ffff")).fetchone()
        else:
            row = conn.execute("SELECT 1 FROM vocab WHERE term = ?", (tok,)).fetchone()
        return row is not None

    @staticmethod
    def _closest(conn: apsw.Connection, tok: str, n: int = 6) -> list[str]:
        """Known words within one edit of `tok` (two for words of six letters or more), nearest then most used first.

        Candidates come from two B-tree indexes: words sharing a one-letter deletion with `tok` (every word one edit
        away), and words sharing enough trigrams with it (two edits in longer words); the edit distance decides."""
        dels = sorted({tok} | deletes(tok))
        marks = ",".join("?" * len(dels))
        cands: dict[str, int] = dict(conn.execute(
            f"SELECT v.term, v.docs FROM vocab_del x JOIN vocab v ON v.id = x.term WHERE x.del IN ({marks})"
            f" UNION SELECT term, docs FROM vocab WHERE term IN ({marks})", (*dels, *dels)).fetchall())
        if len(tok) >= 6:
            # A word two edits away keeps all but at most six of its trigrams (an edit breaks three at most).
            g = grams(tok)
            cands.update(conn.execute(
                f"SELECT v.term, v.docs FROM (SELECT term, count(*) AS shared FROM vocab_gram"
                f" WHERE gram IN ({','.join('?' * len(g))}) GROUP BY term HAVING shared >= ?"
                f" ORDER BY shared DESC LIMIT 30) x JOIN vocab v ON v.id = x.term",
                (*g, max(1, len(g) - 6))).fetchall())
        limit = 1 if len(tok) < 6 else 2
        scored = []
        for term, docs in cands.items():
            d = edit_distance(tok, term, limit)
            if 0 < d <= limit:
                scored.append((d, term[0] != tok[0], -docs, term))  # first letters are rarely mistyped
        scored.sort()
        return [s[-1] for s in scored[:n]]

    def _fuzzy(self, conn: apsw.Connection, kind: str, q: _Query, limit: int, viewer: str | None,
               found: dict[int, _Cand]) -> None:
        """Docs matching the query with misspelt words replaced by known words near them."""
        assert q.fixes is not None
        # A corrected word always narrows the MATCH: it is what this stage is about.
        freqs = [0 if len(opts) > 1 else f for f, opts in zip(q.freqs, q.fixes, strict=True)]
        best = " ".join(opts[1] if len(opts) > 1 else opts[0] for opts in q.fixes)
        for doc, rank, key, fields in self._words(conn, kind, q.fixes, freqs, limit, viewer):
            if doc in found:
                continue
            # Among corrected matches, those the best correction matches exactly or as a prefix come first.
            bonus = {"exact": 0.5, "prefix": 0.35}.get(_classify(best, fields), 0.0)
            found[doc] = _Cand(doc, key, "fuzzy", min(1.0, bonus + 0.5 * _strength_bm25(rank)))

    # ---- more like this -----------------------------------------------------------------------------------------

    def similar(self, key: str, *, limit: int = 10) -> list[Hit]:
        """Tracks like track `key`, the way apsw's more_like finds them: the words this track uses that few others
        do (apsw.fts5.Table.key_tokens), any of which a similar track has, ranked by bm25 weighing a shared artist
        or album over shared tags over title words. Unlike more_like, the ranking is bounded like every query here
        (more_like ranks every match, 100 ms for a tag on thousands of tracks), and word counts come from `vocab`
        rather than from loading every token of the index again after each change."""
        with self.reader() as conn:
            row = conn.execute("SELECT id FROM docs WHERE kind = ? AND key = ?", (KIND_CODE["tracks"], key)).fetchone()
            if row is None:
                return []
            table = self._tables.get(id(conn))
            if table is None:
                table = self._tables[id(conn)] = _vocab_table(conn, "words_tracks")
            words = [t for _, t in table.key_tokens(row[0], limit=SIMILAR_WORDS)]
            if not words:
                return []
            match = " OR ".join(_fts_phrase(w, False) for w in words)
            found = [(doc, rank, k) for doc, rank, k, *_ in
                     self._fts(conn, "words_tracks", match, limit + 1, weights=SIMILAR_WEIGHTS) if doc != row[0]]
        return [Hit("tracks", k, round(_strength_bm25(rank), 3), "similar") for _, rank, k in found[:limit]]


def _vocab_table(conn: apsw.Connection, name: str) -> Any:
    """apsw.fts5.Table for `name`, its token document counts read from `vocab` one word at a time."""
    import apsw.fts5

    class Counts:
        def get(self, token: str, default: int = 0) -> int:
            row = conn.execute("SELECT docs FROM vocab WHERE term = ?", (token,)).fetchone()
            return row[0] if row else default

    class Table(apsw.fts5.Table):  # type: ignore[misc]
        tokens = property(lambda self: Counts())

    return Table(conn, name)


def _doc_terms(fields: Sequence[str]) -> set[str]:
    return {t for f in fields for t in f.split() if VOCAB_MIN <= len(t) <= VOCAB_MAX}


def _classify(folded: str, fields: Sequence[str]) -> str:
    """Which tier a doc found by words belongs to, judged on its folded fields."""
    values = [v for f in fields for v in f.split("\n")]
    if folded in values:
        return "exact"
    if any(v.startswith(folded) for v in values):
        return "prefix"
    return "words"


def _score(c: _Cand) -> float:
    lo, hi = TIERS[c.tier]
    return round(lo + (hi - lo) * min(1.0, max(0.0, c.strength)) * 0.999, 3)


_ORDER = {t: i for i, t in enumerate(TIERS)}


def _top(found: dict[int, _Cand], limit: int) -> list[_Cand]:
    return sorted(found.values(), key=lambda c: (_ORDER[c.tier], -c.strength))[:limit]
