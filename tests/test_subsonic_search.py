"""Subsonic's search3 and search2 through a real node process and the real PDS: the search index decides what
matches (typos and accents forgiven) and in which order, for songs, artists and albums alike, and the read model
decides what the caller sees (hidden tags here; taken-down tracks and the library: test_visibility.py and
test_library_visibility.py ask search3 too). Every JSON answer is checked against its OpenSubsonic schema.

Two artists upload: cleo (a node album "Électrique", songs whose tags name the album "Señor Blue", a single, and
"Glacier" tones of which all but one carry the "ai" tag everyone hides by default) and dan (one single)."""

from __future__ import annotations

from typing import Any

import pytest
from audio_samples import make_audio
from conftest import node_fixture
from subsonic_support import CheckedListener, rest_listener

node = node_fixture("subsonic_search")

HIDDEN_GLACIERS = 7


@pytest.fixture(scope="module")
def cleo(node, pds) -> CheckedListener:
    return rest_listener(node.url, pds.create_account("srcleo"), CheckedListener)


@pytest.fixture(scope="module")
def dan(node, pds) -> CheckedListener:
    return rest_listener(node.url, pds.create_account("srdan"), CheckedListener)


@pytest.fixture(scope="module")
def catalog(cleo: CheckedListener, dan: CheckedListener, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("search-audio")
    n = iter(range(1000))

    def audio(**tags: str) -> Any:
        i = next(n)
        return make_audio(tmp / f"s{i}.mp3", "mp3", seconds=1.0, frequency=200.0 + 30 * i, tags=tags or None)

    t: dict[str, int] = {}
    t["cafe"] = cleo.upload(audio(), title="Café Müller", tags='["jazz"]')
    t["volt"] = cleo.upload(audio(), title="Voltage", tags='["rock"]')
    t["senor1"] = cleo.upload(audio(title="Uno", album="Señor Blue"), tags='["jazz"]')
    t["senor2"] = cleo.upload(audio(title="Dos", album="Señor Blue"), tags='["jazz"]')
    t["loose"] = cleo.upload(audio(), title="Loose Thread", tags='["ambient"]')
    t["dan"] = dan.upload(audio(), title="Harbour Lights", tags='["rock"]')
    # All "Glacier" but one carry "ai", which discovery hides by default; the one shown ranks below them (a longer
    # title: a prefix match, not an exact one), past the first answer's slack.
    for i in range(HIDDEN_GLACIERS):
        t[f"ai{i}"] = cleo.upload(audio(), title="Glacier", tags='["ai"]')
    t["glacier"] = cleo.upload(audio(), title="Glacier walk in the cold night", tags='["ambient"]')
    http, csrf = cleo.artist.http, {"X-CSRF-Token": cleo.artist.csrf}
    r = http.post("/albums/", json={"title": "Électrique"}, headers=csrf)
    assert r.status_code == 200, r.text
    album = r.json()["id"]
    for key in ("cafe", "volt"):
        r = http.post(f"/albums/{album}/tracks", json={"track_id": t[key]}, headers=csrf)
        assert r.status_code == 200, r.text
    return {"tracks": t, "album": f"al-{album}"}


def _search(who: CheckedListener, query: str, method: str = "search3", **params: Any) -> dict[str, list[Any]]:
    key = "searchResult3" if method == "search3" else "searchResult2"
    found = who.call(method, query=query, **params)[key]
    return {k: found.get(k, []) for k in ("artist", "album", "song")}


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in entries]


def test_kept_album_rows_answer_as_fresh_ones(node, dan: CheckedListener, catalog: dict[str, Any]) -> None:
    """Artists and albums come from the album rows the album lists keep for the catalog when they are there, else
    from SQL for the hits alone: the same answer either way."""
    dan.call("scrobble", id=f"tr-{catalog['tracks']['dan']}")  # a new catalog: nothing kept for it yet
    every = {"artistCount": 500, "albumCount": 500, "songCount": 500}
    queries = ("srcleo", "srdan", "senor blue", "electrique", "glacier", "a", "")
    fresh = {q: _search(dan, q, **every) for q in queries}
    assert all(fresh[q]["album"] for q in ("srcleo", "senor blue", "electrique", ""))
    dan.call("getAlbumList2", type="newest")  # the album lists keep every album for this catalog
    assert {q: _search(dan, q, **every) for q in queries} == fresh


def test_typos_and_accents_find_songs_artists_and_albums(node, cleo: CheckedListener, dan: CheckedListener,
                                                         catalog: dict[str, Any]) -> None:
    t, album = catalog["tracks"], catalog["album"]
    named = next(a["id"] for a in cleo.call("getArtist", id=f"ar-{cleo.artist.did}")["artist"]["album"]
                 if a["name"] == "Señor Blue")
    # Songs: accents folded both ways, a typo corrected; best first.
    for query in ("cafe muller", "CAFÉ", "cafe mulelr"):
        assert _ids(_search(dan, query)["song"])[:1] == [f"tr-{t['cafe']}"], query
    assert _ids(_search(dan, "voltag")["song"]) == [f"tr-{t['volt']}"]
    # Albums: a node album by its title, a named album (its songs' album tags) by that text, typos and accents too.
    assert _ids(_search(dan, "electrique")["album"]) == [album]
    assert _ids(_search(dan, "elektrique")["album"]) == [album]
    found = _search(dan, "senor blue")
    assert _ids(found["album"]) == [named]
    assert set(_ids(found["song"])) == {f"tr-{t['senor1']}", f"tr-{t['senor2']}"}
    # Artists: by handle, a typo forgiven; with every album of theirs (Singles too), as getArtist lists them.
    handle = cleo.artist.http.get("/auth/me").json()["handle"]
    for query in (handle, "srcloe"):
        found = _search(dan, query, songCount=0)
        assert _ids(found["artist"]) == [f"ar-{cleo.artist.did}"], query
        assert found["artist"][0]["albumCount"] == 3
        assert set(_ids(found["album"])) == {album, named, f"al-singles-{cleo.artist.did}"}, query
    # Each entry is the one the browsing methods answer.
    entry = _search(dan, "electrique")["album"][0]
    assert entry == next(a for a in dan.call("getAlbumList2", type="newest", size=50)["albumList2"]["album"]
                         if a["id"] == album)
    song = _search(dan, "harbour")["song"][0]
    assert song == dan.call("getSong", id=f"tr-{t['dan']}")["song"]
    # search2 answers the same, folder style.
    two = _search(dan, "srcloe", "search2", songCount=0)
    assert _ids(two["artist"]) == [f"ar-{cleo.artist.did}"] and "albumCount" not in two["artist"][0]
    assert set(_ids(two["album"])) == {album, named, f"al-singles-{cleo.artist.did}"}
    assert all(a["isDir"] is True for a in two["album"])
    assert not any(_search(dan, "qqqzzzxxx").values())


def test_hidden_tags_never_show_unless_asked_for(node, cleo: CheckedListener, dan: CheckedListener,
                                                 catalog: dict[str, Any]) -> None:
    t = catalog["tracks"]
    shown, hidden = f"tr-{t['glacier']}", {f"tr-{t[f'ai{i}']}" for i in range(HIDDEN_GLACIERS)}
    for who in (cleo, dan):  # their own "ai" tracks too: discovery hides the tag for everyone who hides it
        assert _ids(_search(who, "glacier")["song"]) == [shown]
        # The index's first answers are all hidden ones: the page is asked for again, deeper.
        assert _ids(_search(who, "glacier", songCount=1)["song"]) == [shown]
        assert _search(who, "glacier", songCount=1, songOffset=1)["song"] == []
    # A query that is exactly a hidden tag asks for it, as GET /search/ and the tag page answer it.
    assert hidden <= set(_ids(_search(dan, "ai", songCount=50)["song"]))
    # The empty query hides them too.
    everything = _ids(_search(dan, "", songCount=500)["song"])
    assert shown in everything and not hidden & set(everything)
    # Once dan hides nothing, they are found.
    r = dan.artist.http.post("/preferences/", json={"hidden_tags": []}, headers={"X-CSRF-Token": dan.artist.csrf})
    assert r.status_code == 200, r.text
    try:
        assert set(_ids(_search(dan, "glacier", songCount=50)["song"])) == hidden | {shown}
    finally:
        r = dan.artist.http.post("/preferences/", json={"hidden_tags": ["ai"]},
                                headers={"X-CSRF-Token": dan.artist.csrf})
        assert r.status_code == 200, r.text


def test_pages_slice_the_ranked_lists(node, dan: CheckedListener, catalog: dict[str, Any]) -> None:
    for query in ("srcleo", "a", ""):
        whole = _search(dan, query, artistCount=500, albumCount=500, songCount=500)
        for kind in ("artist", "album", "song"):
            for offset in range(len(whole[kind]) + 1):
                page = _search(dan, query, **{f"{k}Count": 2 if k == kind else 0 for k in ("artist", "album", "song")},
                               **{f"{kind}Offset": offset})
                assert page[kind] == whole[kind][offset:offset + 2], (query, kind, offset)
                assert not any(page[k] for k in page if k != kind)
    # The empty query lists everything: songs newest first, albums and artists by name.
    everything = _search(dan, "", artistCount=500, albumCount=500, songCount=500)
    songs = dan.call("getAlbumList2", type="newest", size=500)  # (each album's songs, for the count)
    assert len(everything["song"]) == len(catalog["tracks"]) - HIDDEN_GLACIERS
    assert [s["created"] for s in everything["song"]] == sorted((s["created"] for s in everything["song"]),
                                                                reverse=True)
    assert _ids(everything["album"]) == _ids(dan.call("getAlbumList2", type="alphabeticalByName", size=500)
                                             ["albumList2"]["album"])
    assert len(everything["album"]) == len(songs["albumList2"]["album"])
    assert [a["name"].lower() for a in everything["artist"]] == sorted(a["name"].lower() for a in everything["artist"])
    # Bad numbers are Subsonic errors, as every list answers them.
    assert dan.error("search3", query="x", songCount="many") == 0


def test_a_music_folder_narrows_the_hits(node, dan: CheckedListener, catalog: dict[str, Any]) -> None:
    """The index knows no folders: its hits are narrowed to the folder asked for (1: the uploads; this node has no
    music folder)."""
    t = catalog["tracks"]
    assert _ids(_search(dan, "harbour", musicFolderId=1)["song"]) == [f"tr-{t['dan']}"]
    assert _ids(_search(dan, "srdan", musicFolderId=1)["artist"]) == [f"ar-{dan.artist.did}"]
    assert dan.error("search3", query="harbour", musicFolderId=2) == 70
