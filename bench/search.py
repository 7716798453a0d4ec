"""Search on 100k tracks: index build time, query latency, and whether the intended answer is in the top 3.

Goals (issue 6): p99 under 10 ms, the intended answer in the top 3 for at least 95% of the queries (typos included).

1. Catalog. A synthetic catalog from a fixed seed: 6,000 artists (people, bands and one-word names, some stylised
   with accents, symbols or capitals; handles on bsky.social and custom domains), 12,000 albums, 100,000 tracks
   (titles of 1-5 words in twelve languages and scripts, a quarter of them with invented words, some with curly
   apostrophes, brackets and "feat."), about 120 tags in several languages, 3,000 playlists (10% private). Invented
   words come from syllables, so many are one letter apart from another: typo correction cannot just take the
   nearest word.
2. Build. The documents the indexer would make from those rows (plyrd.search.docs), written by
   plyrd.search.index.SearchIndex into a fresh search.db, timed.
3. Queries. 200 queries made from the catalog with the answer each one means, in categories: whole titles, title
   typeahead, artist plus title words, artists by name or handle (with and without @), albums, tags, folding (no
   accents, other quotes, capitals, punctuation), substrings inside words (and Japanese), typos (one edit in a title,
   artist or album word, some two edits in long words, some in the first letter, some in the word still being
   typed), and typos without their accents. A query is made only when its answer can be told apart: the title is
   unique, the typed prefix starts no other title, the substring occurs in no other track, the misspelt word is no
   word of the catalog.
4. Measure. Each query asks what GET /search/ asks (all five types, limit 20) after a warm-up: p50/p99 of the index
   call (GET /search/ adds reading the shown fields from plyrd.db and JSON), and per category the share with the
   intended answer in the top 3 of its type. The typo queries are also answered by the other typo strategies apsw
   offers, each on its own (query_suggest with threshold 0, closest_tokens per unknown word, trigram similarity over
   whole docs), for comparison. Finally "more like this" for 200 tracks.

Side by side (--against REV): the catalog and the queries are made once, here (with this tree's folding), and handed
to one worker process per tree, which imports plyrd from its own tree (bench/_common.py: a git worktree of REV,
PYTHONPATH, each worker reports the plyrd.__file__ it imported). Each tree builds its own index from the same rows:
the index is made by the code under test (plyrd.search.docs and .index), so there is no one built index to share.
Then the index build, the 200 queries (each round after its own warm-up) and "more like this" run --rounds times per
tree, alternating REV, this tree, REV, this tree; times are pooled over the rounds and printed side by side with
the ratio, with the top-3 share per category and the queries whose outcome differs. apsw's own typo strategies are
left out: they measure apsw, not plyrd.

    .venv/bin/python bench/search.py [--tracks 100000] [--data DIR (keep search.db there)] [--seed 6]
                                     [--against REV [--rounds 3]]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import SOURCE, Tree, alternating, describe, ratio, table
from _common import against as against_trees

sys.path.insert(0, str(SOURCE))

from plyrd.search.text import fold

WORDS: dict[str, list[str]] = {
    "en": """love night heart fire dream summer city light shadow river rain blue golden broken dancing midnight
        song home road wild silver morning ocean storm echo ghost paper garden winter electric velvet sunset
        honey stranger forever lonely highway thunder neon kingdom mirror falling rising hollow crystal burning
        sweet little forgotten northern southern secret silent endless satellite paradise tomorrow yesterday
        lover fever desert island window machine memory promise whisper runaway wonder cherry diamond""",
    "fr": """amour nuit cœur été rêve lumière château forêt étoile soleil chanson fenêtre mémoire désir perdu
        jolie toujours jamais demain hier éternité océan rivière orage hiver printemps automne frère sœur
        fille garçon liberté beauté silence douceur lointain noir blanc rouge bleu vert dernière première
        voyage souvenir espoir café naïve""",
    "de": """liebe nacht herz straße träume mädchen grün himmel feuer wasser stadt sonne mond stern schön
        dunkel licht zeit weg heimat sehnsucht frühling sommer winter herbst wald berg fluss meer vogel
        lied tanz müde glück schmerz freiheit morgen abend über größe fräulein""",
    "es": """corazón noche canción mañana niña amor sueño fuego cielo luna sol estrella mar río tierra vida
        muerte alma camino ciudad verano invierno primavera otoño bailar cantar libertad silencio tiempo
        dolor alegría besos lágrimas montaña pequeño último""",
    "pt": """coração saudade noite canção manhã amor sonho fogo céu lua sol estrela mar rio terra vida alma
        caminho cidade verão inverno liberdade silêncio tempo dor alegria beijo lágrima montanha pássaro""",
    "it": """amore notte cuore canzone domani sogno fuoco cielo luna sole stella mare fiume terra vita anima
        strada città estate inverno libertà silenzio tempo dolore gioia bacio lacrime montagna perché""",
    "is": """hoppípolla ágætis byrjun svefn glósóli sæglópur vaka fljótavík heysátan ísjaki kveikur rafstraumur
        brennisteinn óveður sólin tunglið stjarna hafið fjall þögn draumur""",
    "pl": """miłość źródło noc serce światło gwiazda rzeka deszcz zima lato wiosna jesień ogień woda księżyc
        słońce marzenie ciemność wolność pieśń""",
    "tr": """gönül ışık aşk gece kalp yıldız deniz nehir yağmur kış yaz bahar sonbahar ateş su ay güneş rüya
        karanlık özgürlük şarkı çiçek""",
    "ja": """東京 夜 桜 さくら ありがとう 雨 星空 夏祭り 海 月 花火 心 夢 光 風 君 僕 未来 青春 恋
        シティポップ 真夜中""",
    "ru": """ночь любовь звезда сердце река дождь зима лето весна осень огонь вода луна солнце мечта тьма
        свобода песня город небо""",
    "el": """αγάπη νύχτα καρδιά αστέρι θάλασσα ποτάμι βροχή χειμώνας καλοκαίρι φως φωτιά νερό φεγγάρι ήλιος
        όνειρο σκοτάδι ελευθερία τραγούδι""",
}
LANG_WEIGHTS = {"en": 40, "fr": 9, "de": 8, "es": 9, "pt": 6, "it": 5, "is": 3, "pl": 4, "tr": 4, "ja": 5,
                "ru": 4, "el": 3}
FIRST_NAMES = """anna björk céline dmitri élodie fatma giulia håkon ingrid jürgen kasia léa marta nikolai oscar
    paulo renée søren tomás ugo valérie wojciech yuki zoë aleksandr beatriz chloé diego emre françois greta
    hiroshi inés jakub kenji lucía malgorzata noémie olga piotr rafael sébastien thérèse""".split()
TAGS = """ambient electronic techno house drum-and-bass dubstep jazz blues soul funk hip-hop rap trap lo-fi
    indie rock punk metal folk country classical piano orchestral soundtrack chillout downtempo trip-hop
    synthwave vaporwave shoegaze dream-pop post-rock experimental noise field-recording acoustic singer-songwriter
    reggae dub ska latin salsa cumbia bossa-nova samba fado flamenco chanson schlager k-pop j-pop city-pop
    afrobeat highlife gospel choir opera baroque minimal idm glitch breakbeat garage grime drill disco
    nu-disco italo-disco eurodance trance hardstyle gabber psytrance dnb jungle footwork juke hyperpop
    emo screamo hardcore grunge britpop new-wave post-punk darkwave industrial ebm witch-house chiptune
    musique-concrète électro-acoustique música-popular canción-protesta musica-leggera cantautore
    volksmusik liedermacher krautrock hörspiel рок хип-хоп электроника поп джаз シティポップ アンビエント
    ボカロ 民謠 λαϊκό ρεμπέτικο türkü arabesk anadolu-rock disko-polo""".split()
ONSETS = "b br c ch d dr f fl g gr h j k kl l m n p pr qu r s sh st t tr v w z".split()
VOWELS = "a e i o u ai ou ie é ö".split()
CODAS = ["", "", "", "n", "r", "l", "s", "x", "m", "th", "nd"]


def syllable_word(rng: random.Random, lo: int = 2, hi: int = 3) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(lo, hi)))


def stylise(rng: random.Random, name: str) -> str:
    r = rng.random()
    if r < 0.08:
        return name.upper()
    if r < 0.14:
        return name.replace("s", "$", 1) if "s" in name else name + "!"
    if r < 0.18:
        return name.replace(" ", ".")
    if r < 0.22:
        return name + " & the " + rng.choice(WORDS["en"]).capitalize() + "s"
    return name


@dataclass
class Catalog:
    artists: list[dict[str, Any]] = field(default_factory=list)
    albums: list[dict[str, Any]] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)
    playlists: list[dict[str, Any]] = field(default_factory=list)
    tags: Counter[str] = field(default_factory=Counter)


def make_catalog(n_tracks: int, seed: int) -> Catalog:
    rng = random.Random(seed)
    cat = Catalog()
    langs = list(LANG_WEIGHTS)
    weights = list(LANG_WEIGHTS.values())
    n_artists = max(20, n_tracks * 6 // 100)
    handles: set[str] = set()
    pseudo = [syllable_word(rng) for _ in range(12000)]

    def title_words(lang: str, n: int) -> list[str]:
        out = []
        for _ in range(n):
            if rng.random() < 0.12:
                out.append(rng.choice(pseudo))
            else:
                out.append(rng.choice(WORDS[lang].split()))
        return out

    for i in range(n_artists):
        lang = rng.choices(langs, weights)[0]
        style = rng.random()
        if style < 0.4:
            name = f"{rng.choice(FIRST_NAMES).capitalize()} {syllable_word(rng).capitalize()}"
        elif style < 0.7:
            name = "The " + " ".join(w.capitalize() for w in title_words(lang if lang != "ja" else "en", 2))
        else:
            name = syllable_word(rng, 2, 4).capitalize()
        name = stylise(rng, name)
        base = "".join(c for c in unicodedata.normalize("NFKD", fold(name)) if c.isascii() and c.isalnum())[:18]
        base = base or f"artist{i}"
        handle = base
        while handle in handles:
            handle = f"{base}{rng.randint(2, 999)}"
        handles.add(handle)
        handle += rng.choice([".bsky.social"] * 4 + [".music", ".com"])
        cat.artists.append({"did": f"did:plc:artist{i:06d}", "handle": handle, "display_name": name, "lang": lang,
                            "albums": []})
    for artist in cat.artists:
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])):
            lang = artist["lang"]
            title = " ".join(w.capitalize() for w in title_words(lang, rng.randint(1, 3)))
            album = {"id": f"a{len(cat.albums):07d}", "title": title, "artist_did": artist["did"]}
            cat.albums.append(album)
            artist["albums"].append(album)
    popularity = [1.0 / (i + 10) for i in range(n_artists)]
    owners = rng.choices(cat.artists, popularity, k=n_tracks)
    for i, artist in enumerate(owners):
        lang = artist["lang"] if rng.random() < 0.85 else rng.choices(langs, weights)[0]
        words = title_words(lang, rng.choices([1, 2, 3, 4, 5], [15, 35, 28, 15, 7])[0])
        if lang not in ("ja",):
            words = [w.capitalize() if rng.random() < 0.7 else w for w in words]
        sep = "" if lang == "ja" and rng.random() < 0.5 else " "
        title = sep.join(words)
        r = rng.random()
        if r < 0.04:
            title = f"Don’t {title}" if rng.random() < 0.5 else f"{title} (Don't Stop)"
        elif r < 0.08:
            title += " (" + rng.choice(["Remix", "Live", "Acoustic", "Demo", "Radio Edit", "Extended Mix"]) + ")"
        elif r < 0.10:
            title += " feat. " + rng.choice(cat.artists)["display_name"]
        album = rng.choice(artist["albums"]) if artist["albums"] and rng.random() < 0.6 else None
        tags = rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3]))
        cat.tags.update(tags)
        cat.tracks.append({"id": i + 1, "title": title, "artist": artist, "album": album, "tags": tags})
    for i in range(max(10, n_tracks * 3 // 100)):
        owner = rng.choice(cat.artists)
        name = " ".join(title_words(rng.choices(langs, weights)[0], rng.randint(1, 3)))
        cat.playlists.append({"id": f"p{i:07d}", "name": name.capitalize(), "owner": owner,
                              "private": rng.random() < 0.1})
    return cat


# ---- rows as plyrd.db would give them, and the index built from them ---------------------------------------------


def catalog_rows(cat: Catalog) -> dict[str, list[dict[str, Any]]]:
    """Rows shaped like plyrd.search.docs.SQL's answers."""
    import json

    def who(a: dict[str, Any]) -> dict[str, Any]:
        return {"handle": a["handle"], "display_name": a["display_name"]}

    tracks = [{"key": t["id"], "artist_did": t["artist"]["did"], "title": t["title"], "album": None,
               "tags": json.dumps(t["tags"]), "features": "[]", **who(t["artist"]),
               "albums": json.dumps([[t["album"]["id"], t["album"]["title"]]] if t["album"] else [])}
              for t in cat.tracks]
    used_albums = {t["album"]["id"] for t in cat.tracks if t["album"]}
    by_did = {a["did"]: a for a in cat.artists}
    with_tracks = {t["artist"]["did"] for t in cat.tracks}
    return {
        "tracks": tracks,
        "artists": [{"key": a["did"], **who(a)} for a in cat.artists if a["did"] in with_tracks],
        "albums": [{"key": al["id"], "artist_did": al["artist_did"], "title": al["title"],
                    **who(by_did[al["artist_did"]])} for al in cat.albums if al["id"] in used_albums],
        "tags": [{"key": tag} for tag in sorted(cat.tags)],
        "playlists": [{"key": p["id"], "owner_did": p["owner"]["did"], "name": p["name"],
                       "is_private": int(p["private"]), **who(p["owner"])} for p in cat.playlists],
    }


def build_index(path: Path, rows: dict[str, list[dict[str, Any]]]) -> tuple[Any, float]:
    from plyrd.search.docs import make_doc
    from plyrd.search.index import SearchIndex

    t0 = time.perf_counter()
    index = SearchIndex(path)
    index.begin_rebuild()
    for kind, kind_rows in rows.items():
        for i in range(0, len(kind_rows), 2000):
            index.apply([make_doc(kind, r) for r in kind_rows[i:i + 2000]])
    index.finish_rebuild(0, "bench")
    return index, time.perf_counter() - t0


# ---- 200 queries with the answer each one means ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    q: str
    kind: str
    key: str
    category: str


def _typo(rng: random.Random, word: str, edits: int = 1, first: bool = False) -> str:
    """One slip of the fingers per edit: a wrong, extra, missing or swapped letter (the first only if `first`)."""
    for _ in range(edits):
        i = 0 if first else rng.randrange(1, len(word) - 1)
        letter = rng.choice(word)  # a letter of the word's own script
        op = rng.choice(["sub", "ins", "del", "swap"])
        if op == "sub" and letter != word[i]:
            word = word[:i] + letter + word[i + 1:]
        elif op == "ins":
            word = word[:i] + letter + word[i:]
        elif op == "swap" and word[i] != word[i + 1]:
            word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        else:
            word = word[:i] + word[i + 1:]
    return word


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")


def make_queries(cat: Catalog, seed: int, total: int = 200) -> list[Query]:
    rng = random.Random(seed + 1)
    ftitle = [fold(t["title"]) for t in cat.tracks]
    title_count = Counter(ftitle)
    sorted_titles = sorted(ftitle)
    vocab: set[str] = set()
    for t in cat.tracks:
        vocab.update(ftitle[t["id"] - 1].split())
    artist_names = Counter(fold(a["display_name"]) for a in cat.artists)
    used_albums = {t["album"]["id"] for t in cat.tracks if t["album"]}
    album_names = Counter(fold(a["title"]) for a in cat.albums if a["id"] in used_albums)
    for a in cat.artists:
        vocab.update(fold(a["display_name"]).split())
        vocab.update(fold(a["handle"]).split())
    for a in cat.albums:
        vocab.update(fold(a["title"]).split())
    for tag in cat.tags:
        vocab.update(fold(tag).split())
    with_tracks = {t["artist"]["did"] for t in cat.tracks}
    artists = [a for a in cat.artists if a["did"] in with_tracks and artist_names[fold(a["display_name"])] == 1]
    albums = [a for a in cat.albums if a["id"] in used_albums and album_names[fold(a["title"])] == 1]
    unique = [t for t in cat.tracks if title_count[ftitle[t["id"] - 1]] == 1]

    def starts(prefix: str) -> int:
        import bisect
        i = bisect.bisect_left(sorted_titles, prefix)
        j = bisect.bisect_left(sorted_titles, prefix + "\U0010ffff")
        return j - i

    # Everything a track's doc holds, to tell whether a substring picks out one track.
    ftrack = [" ".join([ftitle[t["id"] - 1], fold(t["artist"]["display_name"]), fold(t["artist"]["handle"]),
                        fold(t["album"]["title"]) if t["album"] else "", *map(fold, t["tags"])]) for t in cat.tracks]

    sorted_vocab = sorted(vocab)

    def begins_word(prefix: str) -> bool:
        import bisect
        i = bisect.bisect_left(sorted_vocab, prefix)
        return i < len(sorted_vocab) and sorted_vocab[i].startswith(prefix)

    everything = "\n".join(ftrack)

    def contains(sub: str) -> int:
        """How often `sub` occurs in all tracks' text (1: in one track only)."""
        return everything.count(sub)

    out: list[Query] = []

    def add(q: str, kind: str, key: Any, category: str) -> None:
        out.append(Query(q, kind, str(key), category))

    def pick(pool: list[Any], n: int, make: Any) -> None:
        made = 0
        for _ in range(n * 200):
            if made == n:
                return
            if make(rng.choice(pool)):
                made += 1
        raise RuntimeError("could not make enough queries")

    def whole_title(t: dict[str, Any]) -> bool:
        if len(ftitle[t["id"] - 1].split()) < 2:
            return False
        add(rng.choice([t["title"], t["title"].lower(), t["title"].upper()]), "tracks", t["id"], "title")
        return True

    def typeahead(t: dict[str, Any]) -> bool:
        words = ftitle[t["id"] - 1].split()
        if len(words) < 2 or len(words[1]) < 3:
            return False
        prefix = words[0] + " " + words[1][:rng.randint(2, len(words[1]) - 1)]
        if starts(prefix) != 1:
            return False
        add(prefix, "tracks", t["id"], "typeahead")
        return True

    by_artist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in cat.tracks:
        by_artist[t["artist"]["did"]].append(t)

    def artist_title(t: dict[str, Any]) -> bool:
        words = t["title"].split()
        name = t["artist"]["display_name"]
        if artist_names[fold(name)] != 1 or not words:
            return False
        others = sum(1 for u in by_artist[t["artist"]["did"]] if set(fold(t["title"]).split()) <=
                     set(ftitle[u["id"] - 1].split()))
        if others != 1:
            return False
        add(f"{name.split()[-1]} {' '.join(words[:2])}", "tracks", t["id"], "artist+title")
        return True

    def artist(a: dict[str, Any]) -> bool:
        r = rng.random()
        if r < 0.6:
            q = a["display_name"]
        elif r < 0.8:
            q = "@" + a["handle"]
        else:
            q = a["handle"].split(".")[0]
        add(q, "artists", a["did"], "artist")
        return True

    def album(al: dict[str, Any]) -> bool:
        if len(fold(al["title"])) < 6:
            return False
        add(al["title"], "albums", al["id"], "album")
        return True

    tags = sorted(t for t in cat.tags if len(fold(t)) >= 4)

    def tag(name: str) -> bool:
        if any(q.key == name for q in out):
            return False
        add(_strip_accents(name).replace("-", " ") if rng.random() < 0.5 else name, "tags", name, "tag")
        return True

    def folding(t: dict[str, Any]) -> bool:
        title = t["title"]
        variant = _strip_accents(title)
        if "’" in title:
            variant = variant.replace("’", "'")
        elif "'" in title:
            variant = variant.replace("'", "’")
        if variant == title and not any(c in title for c in "()"):
            return False
        if len(ftitle[t["id"] - 1].split()) < 2:
            return False
        variant = variant.replace("(", "").replace(")", "")
        add(variant.lower(), "tracks", t["id"], "folding")
        return True

    def substring(t: dict[str, Any]) -> bool:
        words = [w for w in ftitle[t["id"] - 1].split() if len(w) >= 7]
        cjk = [w for w in ftitle[t["id"] - 1].split() if len(w) >= 4 and not w.isascii() and ord(w[0]) > 0x3000]
        if cjk and rng.random() < 0.5:
            w = rng.choice(cjk)
            sub = w[1:4]
        elif words:
            w = rng.choice(words)
            start = rng.randint(1, len(w) - 5)
            sub = w[start:start + rng.randint(4, min(6, len(w) - start))]
        else:
            return False
        if len(sub) < 3 or begins_word(sub) or contains(sub) != 1:
            return False
        add(sub, "tracks", t["id"], "substring")
        return True

    def typo_title(t: dict[str, Any]) -> bool:
        words = ftitle[t["id"] - 1].split()
        long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if len(words) < 2 or not long:
            return False
        i = rng.choice(long)
        bad = _typo(rng, words[i], 2 if len(words[i]) >= 9 and rng.random() < 0.3 else 1)
        if bad in vocab or (i == len(words) - 1 and begins_word(bad)):
            return False
        words[i] = bad
        add(" ".join(words), "tracks", t["id"], "typo")
        return True

    def typo_artist(a: dict[str, Any], first: bool = False) -> bool:
        words = fold(a["display_name"]).split()
        long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if not long:
            return False
        i = rng.choice(long)
        bad = _typo(rng, words[i], first=first)
        if bad in vocab or (i == len(words) - 1 and begins_word(bad)):
            return False
        words[i] = bad
        add(" ".join(words), "artists", a["did"], "typo")
        return True

    def typo_album(al: dict[str, Any]) -> bool:
        words = fold(al["title"]).split()
        long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if len(words) < 2 or not long:
            return False
        i = rng.choice(long)
        bad = _typo(rng, words[i])
        if bad in vocab or (i == len(words) - 1 and begins_word(bad)):
            return False
        words[i] = bad
        add(" ".join(words), "albums", al["id"], "typo")
        return True

    def typo_unaccented(a: dict[str, Any]) -> bool:
        if _strip_accents(a["display_name"]) == a["display_name"] or not typo_artist(a):
            return False
        made = out.pop()
        add(_strip_accents(made.q), made.kind, made.key, "typo+accents")
        return True

    def typo_first_letter(a: dict[str, Any]) -> bool:
        if not typo_artist(a, first=True):
            return False
        made = out.pop()
        add(made.q, made.kind, made.key, "typo, 1st letter")
        return True

    def typo_typing(t: dict[str, Any]) -> bool:
        """Typeahead with a slip in the word being typed: 'midnight stam' for Midnight Stranger."""
        words = ftitle[t["id"] - 1].split()
        if len(words) < 2 or len(words[-1]) < 6 or not words[-1].isalpha():
            return False
        part = _typo(rng, words[-1][:rng.randint(4, len(words[-1]) - 1)])
        if begins_word(part):
            return False
        add(" ".join([*words[:-1], part]), "tracks", t["id"], "typo, typing")
        return True

    pick(unique, 15, whole_title)
    pick(unique, 20, typeahead)
    pick(unique, 20, artist_title)
    pick(artists, 15, artist)
    pick(albums, 15, album)
    pick(tags, 10, tag)
    pick(unique, 15, folding)
    pick(unique, 15, substring)
    pick(unique, 20, typo_title)
    pick(artists, 15, typo_artist)
    pick(albums, 5, typo_album)
    pick(artists, 15, typo_unaccented)
    pick(artists, 10, typo_first_letter)
    pick(unique, 10, typo_typing)
    assert len(out) == total, len(out)
    return out


# ---- measuring ---------------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_queries(index: Any, queries: list[Query]) -> tuple[list[float], list[bool], list[list[Any]]]:
    """Each query as GET /search/ asks it (all five types, limit 20); the index call timed."""
    from plyrd.search.index import KINDS

    for q in queries[:50]:  # warm the page cache and the statement caches
        index.search(q.q, KINDS, limit=20)
    times, ok, answers = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        result = index.search(q.q, KINDS, limit=20)
        times.append((time.perf_counter() - t0) * 1000)
        hits = result[q.kind]
        ok.append(q.key in [h.key for h in hits[:3]])
        answers.append(hits[:3])
    return times, ok, answers


# ---- the other typo strategies apsw offers, each on its own, for comparison --------------------------------------


def alternatives(path: Path, queries: list[Query]) -> dict[str, tuple[float, float, float]]:
    """Top-3 share and p50/p99 ms on the typo queries: query_suggest, closest_tokens, trigram similarity."""
    import apsw
    import apsw.fts5

    from plyrd.search.index import _fts_phrase

    conn = apsw.Connection(str(path))
    tables = {k: apsw.fts5.Table(conn, f"words_{k}") for k in ("tracks", "artists", "albums")}
    t0 = time.perf_counter()
    for t in tables.values():
        len(t.tokens)  # loaded once (and again after every change to the table)
    load_ms = (time.perf_counter() - t0) * 1000
    keys = {rowid: key for rowid, key in conn.execute("SELECT id, key FROM docs")}

    def top3(table: str, match: str | None) -> list[str]:
        if not match:
            return []
        try:
            rows = conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT 3",
                                (match,)).fetchall()
        except apsw.SQLError:
            return []
        return [keys[r[0]] for r in rows]

    def suggest(q: Query) -> list[str]:
        text = fold(q.q)
        better = tables[q.kind].query_suggest(" ".join(_fts_phrase(t, False) for t in text.split()), threshold=0)
        return top3(f"words_{q.kind}", better)

    def closest(q: Query) -> list[str]:
        table = tables[q.kind]
        words = []
        for t in fold(q.q).split():
            if not table.is_token(t):
                near = table.closest_tokens(t, n=1, cutoff=0.6)
                t = near[0][1] if near else t
            words.append(_fts_phrase(t, False))
        return top3(f"words_{q.kind}", " AND ".join(words))

    def trigrams(q: Query) -> list[str]:
        text = fold(q.q)
        grams = sorted({text[i:i + 3] for i in range(len(text) - 2) if " " not in text[i:i + 3]})
        return top3(f"tri_{q.kind}", " OR ".join(_fts_phrase(g, False) for g in grams))

    out = {}
    typos = [q for q in queries if q.category.startswith("typo")]
    for name, fn in (("query_suggest(threshold=0)", suggest), ("closest_tokens per unknown word", closest),
                     ("trigram similarity (bm25 over OR of trigrams)", trigrams)):
        times, ok = [], []
        for q in typos:
            t1 = time.perf_counter()
            found = fn(q)
            times.append((time.perf_counter() - t1) * 1000)
            ok.append(q.key in found)
        out[name] = (sum(ok) / len(ok), pct(times, 50), pct(times, 99))
    out["(loading every token of the three tables, once per change)"] = (float("nan"), load_ms, load_ms)
    conn.close()
    return out


# ---- side by side with another revision (--against) ------------------------------------------------------------


def worker(inputs: Path, workdir: Path) -> None:
    """One tree's side of --against, in a process that imports that tree's plyrd: builds the index and runs the
    queries when asked on stdin (one JSON command a line), answering on stdout (one JSON line each)."""
    import plyrd

    given = json.loads(inputs.read_text())
    rows, queries = given["rows"], [Query(**q) for q in given["queries"]]
    index = None

    def reply(answer: dict[str, Any]) -> None:
        print(json.dumps(answer), flush=True)

    workdir.mkdir(parents=True, exist_ok=True)
    reply({"plyrd": plyrd.__file__})
    for line in sys.stdin:
        op = json.loads(line)["op"]
        if op == "build":
            if index is not None:
                index.close()
            for f in workdir.glob("search.db*"):
                f.unlink()
            index, build_s = build_index(workdir / "search.db", rows)
            reply({"build_s": build_s, "mb": sum(f.stat().st_size for f in workdir.glob("search.db*")) / 1e6})
        elif op == "queries":
            times, ok, _ = run_queries(index, queries)
            reply({"times": times, "ok": ok})
        elif op == "similar":
            ms, found = [], 0
            for key in given["similar"]:
                t1 = time.perf_counter()
                found += bool(index.similar(key, limit=10))  # type: ignore[union-attr]
                ms.append((time.perf_counter() - t1) * 1000)
            reply({"times": ms, "found": found})
    if index is not None:
        index.close()


class Worker:
    """A worker process for one tree (PYTHONPATH=<tree>, working directory outside both trees)."""

    def __init__(self, tree: Tree, inputs: Path, workdir: Path, cwd: Path) -> None:
        self.tree = tree
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(inputs), "--data", str(workdir)],
                                     cwd=cwd, env=tree.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.plyrd = self.ask(None)["plyrd"]
        if not Path(self.plyrd).resolve().is_relative_to(tree.path.resolve()):
            raise SystemExit(f"{tree.label}: the worker imported plyrd from {self.plyrd}, not from {tree.path}")

    def ask(self, op: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if op:
            self.proc.stdin.write(json.dumps({"op": op}) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker for {self.tree.label} stopped ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def side_by_side(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    with against_trees(args.against) as (old, this, scratch):
        trees = [old, this]
        print(f"side by side with {old.label}: {args.rounds} rounds of each phase, alternating")
        describe(trees, scratch)
        t0 = time.perf_counter()
        cat = make_catalog(args.tracks, args.seed)
        rows = catalog_rows(cat)
        queries = make_queries(cat, args.seed)
        similar = [str(t["id"]) for t in random.Random(args.seed).sample(cat.tracks, 200)]
        print(f"catalog: {len(rows['tracks'])} tracks, {len(rows['artists'])} artists, {len(rows['albums'])} albums,"
              f" {len(rows['tags'])} tags, {len(rows['playlists'])} playlists; {len(queries)} queries"
              f" ({time.perf_counter() - t0:.1f} s to make, here, with this tree's plyrd.search.text)", flush=True)
        inputs = scratch / "inputs.json"
        inputs.write_text(json.dumps({"rows": rows, "queries": [q.__dict__ for q in queries], "similar": similar}))
        workers: dict[str, Worker] = {}
        got: dict[str, dict[str, list[dict[str, Any]]]] = {t.label: {} for t in trees}
        try:
            for i, tree in enumerate(trees):
                workdir = (args.data / tree.commit) if args.data else scratch / f"index-{i}"
                workers[tree.label] = Worker(tree, inputs, workdir.resolve(), scratch)
                print(f"  worker for {tree.label} imports {workers[tree.label].plyrd}")
            for op in ("build", "queries", "similar"):
                print(f"  {op}: {args.rounds} x each tree ...", flush=True)
                for _, tree in alternating(args.rounds, trees):
                    got[tree.label].setdefault(op, []).append(workers[tree.label].ask(op))
        finally:
            for w in workers.values():
                w.close()
        print_side_by_side(old, this, args.rounds, queries, got[old.label], got[this.label])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def print_side_by_side(old: Tree, this: Tree, rounds: int, queries: list[Query], a: dict[str, list[dict[str, Any]]],
                       b: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\nsearch side by side: A = {old.label} ({old.commit}), B = this tree ({this.commit}); {rounds} rounds"
          " per tree, alternating; times pooled over the rounds; B/A below 1 means B is faster")

    def pooled(runs: list[dict[str, Any]], which: list[int] | None = None) -> list[float]:
        return [t for r in runs for i, t in enumerate(r["times"]) if which is None or i in which]

    def hits(runs: list[dict[str, Any]]) -> list[bool]:
        return [all(r["ok"][i] for r in runs) for i in range(len(queries))]  # a hit in every round

    def each(runs: list[dict[str, Any]], p: float) -> str:
        return " ".join(f"{pct(r['times'], p):.2f}" for r in runs)

    ha, hb = hits(a["queries"]), hits(b["queries"])
    ba, bb = [r["build_s"] for r in a["build"]], [r["build_s"] for r in b["build"]]
    out = [["index build, s (mean)", f"{sum(ba) / len(ba):.1f}", f"{sum(bb) / len(bb):.1f}", ratio(sum(bb), sum(ba)),
            " ".join(f"{x:.1f}" for x in ba), " ".join(f"{x:.1f}" for x in bb)],
           ["search.db, MB", f"{a['build'][-1]['mb']:.0f}", f"{b['build'][-1]['mb']:.0f}",
            ratio(b["build"][-1]["mb"], a["build"][-1]["mb"]), "", ""]]
    for label, op in (("queries", "queries"), ("more like this", "similar")):
        xa, xb = pooled(a[op]), pooled(b[op])
        for p in (50, 99):
            out.append([f"{label}, p{p} ms", f"{pct(xa, p):.2f}", f"{pct(xb, p):.2f}", ratio(pct(xb, p), pct(xa, p)),
                        each(a[op], p), each(b[op], p)])
        out.append([f"{label}, max ms", f"{max(xa):.2f}", f"{max(xb):.2f}", ratio(max(xb), max(xa)), "", ""])
    out.append(["intended answer in the top 3", f"{sum(ha)}/{len(ha)}", f"{sum(hb)}/{len(hb)}",
                ratio(sum(hb), sum(ha)), " ".join(str(sum(r["ok"])) for r in a["queries"]),
                " ".join(str(sum(r["ok"])) for r in b["queries"])])
    out.append(["more like this: tracks with results", str(a["similar"][-1]["found"]), str(b["similar"][-1]["found"]),
                "", "", ""])
    table(["", "A", "B", "B/A", "A by round", "B by round"], out)

    print("\n  per category: top 3 (a hit in every round), p50 and p99 ms (pooled over the rounds)")
    by: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        by[q.category].append(i)
    rows = []
    for category, idx in by.items():
        which = set(idx)
        ta, tb = pooled(a["queries"], which), pooled(b["queries"], which)
        rows.append([category, f"{sum(ha[i] for i in idx)}/{len(idx)}", f"{sum(hb[i] for i in idx)}/{len(idx)}",
                     f"{pct(ta, 50):.2f}", f"{pct(tb, 50):.2f}", ratio(pct(tb, 50), pct(ta, 50)), f"{pct(ta, 99):.2f}",
                     f"{pct(tb, 99):.2f}", ratio(pct(tb, 99), pct(ta, 99))])
    table(["category", "A top 3", "B top 3", "A p50", "B p50", "B/A p50", "A p99", "B p99", "B/A p99"], rows)
    for i, q in enumerate(queries):
        if ha[i] != hb[i]:
            print(f"  only {'A' if ha[i] else 'B'} has the answer to {q.q!r} ({q.category}) in its top 3")
        elif not ha[i]:
            print(f"  both miss {q.q!r} ({q.category})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--data", type=Path, help="directory for search.db (kept); default: a temporary one")
    parser.add_argument("--against", metavar="REV", help="run side by side with the plyrd of git revision REV")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: runs of each phase per tree")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data)
        return
    if args.against:
        side_by_side(args)
        return
    started = time.perf_counter()
    workdir = args.data or Path(tempfile.mkdtemp(prefix="plyrd-search-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("search.db*"):
        f.unlink()
    try:
        t0 = time.perf_counter()
        cat = make_catalog(args.tracks, args.seed)
        rows = catalog_rows(cat)
        queries = make_queries(cat, args.seed)
        print(f"catalog: {len(rows['tracks'])} tracks, {len(rows['artists'])} artists, {len(rows['albums'])} albums, "
              f"{len(rows['tags'])} tags, {len(rows['playlists'])} playlists; {len(queries)} queries "
              f"({time.perf_counter() - t0:.1f} s to make)")

        index, build_s = build_index(workdir / "search.db", rows)
        size = sum(f.stat().st_size for f in workdir.glob("search.db*")) / 1e6
        print(f"index build: {build_s:.1f} s, search.db {size:.0f} MB")

        times, ok, _ = run_queries(index, queries)
        print(f"\nqueries (all five types, limit 20): p50 {pct(times, 50):.2f} ms, p99 {pct(times, 99):.2f} ms, "
              f"max {max(times):.2f} ms")
        print(f"intended answer in the top 3: {sum(ok)}/{len(ok)} = {100 * sum(ok) / len(ok):.1f}%")
        by: dict[str, list[tuple[bool, float]]] = defaultdict(list)
        for q, good, ms in zip(queries, ok, times, strict=True):
            by[q.category].append((good, ms))
        print(f"  {'category':<20} {'top 3':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for category, results in by.items():
            ms = [m for _, m in results]
            print(f"  {category:<20} {sum(g for g, _ in results):>3}/{len(results):<3} {pct(ms, 50):>8.2f} "
                  f"{pct(ms, 99):>8.2f}")
        misses = [q for q, good in zip(queries, ok, strict=True) if not good]
        for q in misses:
            print(f"  missed: {q.q!r} ({q.category})")

        typo = [good for q, good in zip(queries, ok, strict=True) if q.category.startswith("typo")]
        typo_ms = [ms for q, ms in zip(queries, times, strict=True) if q.category.startswith("typo")]
        print(f"\ntypo queries ({len(typo)}), each strategy alone: top-3 share, p50, p99")
        print(f"  {'plyrd: deletions + trigram B-trees over the vocabulary, then bm25':<68} "
              f"{100 * sum(typo) / len(typo):5.1f}% {pct(typo_ms, 50):7.2f} ms {pct(typo_ms, 99):7.2f} ms"
              "  (whole search, five types)")
        for name, (share, p50, p99) in alternatives(workdir / "search.db", queries).items():
            shown = "     -" if share != share else f"{100 * share:5.1f}%"
            print(f"  {name:<68} {shown} {p50:7.2f} ms {p99:7.2f} ms")

        rng = random.Random(args.seed)
        keys = [str(t["id"]) for t in rng.sample(cat.tracks, 200)]
        ms, found = [], 0
        for key in keys:
            t1 = time.perf_counter()
            similar = index.similar(key, limit=10)
            ms.append((time.perf_counter() - t1) * 1000)
            found += bool(similar)
        print(f"\nmore like this (200 tracks, 10 each): p50 {pct(ms, 50):.2f} ms, p99 {pct(ms, 99):.2f} ms, "
              f"{found} with results")
        index.close()
    finally:
        if not args.data:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
