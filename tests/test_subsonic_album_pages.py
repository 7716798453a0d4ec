"""Subsonic's album pages pinned to what the albums are: every getAlbumList2 type, page by page, answers the albums
a brute-force computation over getAlbum's answers picks, in its order, each entry the same as getAlbum's; search3's
albums likewise. plyrd.subsonic.catalog picks a page on cheap per-album columns and builds only that page's albums
(and getAlbum only its album), so a page, an order or an entry that drifted from the album itself fails here.

The catalog, through a real node and the real PDS: node albums made in the portal, albums named by the files' tags
only (one per artist, alice's in two cases), each artist's Singles; plays, likes by two listeners, genres, years."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from audio_samples import make_audio
from conftest import node_fixture
from subsonic_support import Listener, rest_listener

node = node_fixture("subsonic_album_pages")


@pytest.fixture(scope="module")
def alice(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("papalice"))


@pytest.fixture(scope="module")
def bob(node, pds) -> Listener:
    return rest_listener(node.url, pds.create_account("papbob"))


def _album(who: Listener, title: str, tracks: list[int]) -> str:
    http, csrf = who.artist.http, {"X-CSRF-Token": who.artist.csrf}
    r = http.post("/albums/", json={"title": title}, headers=csrf)
    assert r.status_code == 200, r.text
    album_id = r.json()["id"]
    for track in tracks:
        r = http.post(f"/albums/{album_id}/tracks", json={"track_id": track}, headers=csrf)
        assert r.status_code == 200, r.text
    return f"al-{album_id}"


@pytest.fixture(scope="module")
def catalog(alice: Listener, bob: Listener, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("album-pages")
    n = iter(range(1000))

    def audio(**tags: str) -> Any:
        i = next(n)
        return make_audio(tmp / f"t{i}.mp3", "mp3", seconds=1.0, frequency=220.0 + 40 * i, tags=tags or None)

    t: dict[str, int] = {}
    t["zed1"] = alice.upload(audio(), title="Zed one", tags='["rock"]')
    t["zed2"] = alice.upload(audio(), title="Zed two", tags='["jazz"]')
    t["aard"] = alice.upload(audio(date="1971"), title="Aard", tags='["rock", "jazz"]')
    t["blue1"] = alice.upload(audio(title="B1", album="Blue", date="1998"), tags='["jazz"]')
    t["blue2"] = alice.upload(audio(title="B2", album="blue ", date="1998"))
    t["a_single"] = alice.upload(audio(date="2001"), title="Loose", tags='["ambient"]')
    t["b_single"] = bob.upload(audio(), title="Bob alone", tags='["rock"]')
    t["b_blue"] = bob.upload(audio(title="BB", album="Blue"), tags='["rock"]')
    t["b_mid"] = bob.upload(audio(), title="Mid", tags='["ambient"]')
    albums = {"zed": _album(alice, "Zed", [t["zed1"], t["zed2"]]), "aard": _album(alice, "aardvark", [t["aard"]]),
              "mid": _album(bob, "Middle", [t["b_mid"]])}
    # Plays: bob's, in this order (the last one decides `recent`); alice's own.
    for track in ("zed1", "b_single", "blue1", "zed2", "b_mid"):  # each once: a replay soon after is not counted
        bob.call("scrobble", id=f"tr-{t[track]}")
        time.sleep(0.02)
    alice.call("scrobble", id=f"tr-{t['aard']}")
    for who, track in ((bob, "blue2"), (bob, "aard"), (alice, "aard"), (alice, "b_blue"), (alice, "zed1")):
        who.call("star", id=f"tr-{t[track]}")
    return {"tracks": t, "albums": albums, "bob_plays": ["zed1", "b_single", "blue1", "zed2", "b_mid"],
            "likes": {"bob": ["blue2", "aard"], "alice": ["aard", "b_blue", "zed1"]}}


def _lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)  # SQLite's lower() folds ASCII only


def _when(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["created"].replace("Z", "+00:00"))


def test_every_album_list_type_pages_as_the_albums_say(node, alice: Listener, bob: Listener,
                                                       catalog: dict[str, Any]) -> None:
    t = catalog["tracks"]
    everything = bob.call("getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]
    ids = sorted(a["id"] for a in everything)
    assert len(ids) == 7  # 3 node albums, alice's and bob's "Blue" (named by tags), alice's and bob's Singles
    full = {i: bob.call("getAlbum", id=i)["album"] for i in ids}
    entries = {i: {k: v for k, v in a.items() if k != "song"} for i, a in full.items()}
    songs = {i: [s["id"] for s in a["song"]] for i, a in full.items()}
    album_of = {track: i for i, ss in songs.items() for track in ss}

    def genres(i: str) -> set[str]:
        return {g["name"] for s in full[i]["song"] for g in s.get("genres", [])}

    def likes_of(i: str, who: list[str]) -> int:
        return sum(1 for name in who if album_of[f"tr-{t[name]}"] == i)

    last_play = {album_of[f"tr-{t[name]}"]: n for n, name in enumerate(catalog["bob_plays"])}
    all_likes = catalog["likes"]["bob"] + catalog["likes"]["alice"]
    by_name = sorted(ids, key=lambda i: (_lower(entries[i]["name"]), i))
    expected: dict[str, tuple[dict[str, Any], list[str]]] = {
        "newest": ({}, sorted(sorted(ids), key=lambda i: _when(entries[i]), reverse=True)),
        "alphabeticalByName": ({}, by_name),
        "alphabeticalByArtist": ({}, sorted(ids, key=lambda i: (
            _lower(entries[i]["artist"]), _lower(entries[i]["name"]), i))),  # no album artist tags: the uploader
        "frequent": ({}, sorted((i for i in ids if entries[i]["playCount"] > 0),
                                key=lambda i: (-entries[i]["playCount"], i))),
        "recent": ({}, sorted(last_play, key=lambda i: -last_play[i])),
        "starred": ({}, [i for i in by_name if likes_of(i, catalog["likes"]["bob"])]),
        "highest": ({}, sorted((i for i in ids if likes_of(i, all_likes)), key=lambda i: (-likes_of(i, all_likes), i))),
        "byGenre": ({"genre": "Jazz"}, [i for i in by_name if "jazz" in genres(i)]),
        "byYear": ({"fromYear": "1970", "toYear": "2000"}, sorted(
            (i for i in ids if 1970 <= entries[i]["year"] <= 2000),
            key=lambda i: (entries[i]["year"], _when(entries[i]), i))),
    }
    expected["byYear (down)"] = ({"type": "byYear", "fromYear": "2100", "toYear": "1970"}, sorted(
        (i for i in ids if 1970 <= entries[i]["year"] <= 2100),
        key=lambda i: (-entries[i]["year"], _when(entries[i]), i)))
    assert expected["newest"][1] and len(expected["recent"][1]) == 4 and expected["byYear"][1]
    for kind, (params, order) in expected.items():
        asked = {"type": kind, **params}
        whole = [a["id"] for a in bob.call("getAlbumList2", **asked, size=500).get("albumList2", {}).get("album", [])]
        assert whole == order, (kind, whole, order)
        for offset in range(0, len(order) + 1):
            page = bob.call("getAlbumList2", **asked, size=2, offset=offset).get("albumList2", {}).get("album", [])
            assert [a["id"] for a in page] == order[offset:offset + 2], (kind, offset)
            assert page == [entries[a["id"]] for a in page], (kind, offset)  # the same entry as getAlbum's
    randomly = bob.call("getAlbumList2", type="random", size=500)["albumList2"]["album"]
    assert sorted(a["id"] for a in randomly) == ids and all(a == entries[a["id"]] for a in randomly)
    # Each album's own numbers agree with its songs.
    for album in full.values():
        assert album["songCount"] == len(album["song"])
        assert album["playCount"] == sum(s["playCount"] for s in album["song"])


def test_search3_albums_page_as_the_albums_say(node, alice: Listener, bob: Listener, catalog: dict[str, Any]) -> None:
    """search3's albums come from the search index, best first: an album by its name (a node album's title, the
    album text of named albums' songs, typos and case forgiven) or by its artist (every album of an artist found,
    Singles too); each entry is getAlbum's, and a page is the same slice of the whole list. The empty query lists
    every album by name."""
    everything = bob.call("getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]
    entries = {a["id"]: a for a in everything}
    blue = {a["id"] for a in everything if a["name"].strip().lower() == "blue"}
    of_bob = {a["id"] for a in everything if a["artistId"] == f"ar-{bob.artist.did}"}
    assert len(blue) == 2 and len(of_bob) == 3  # alice's and bob's "Blue"; bob's Middle, Blue and Singles
    expected = {"blue": blue, "BLUE": blue, "bleu": blue, "zed": {catalog["albums"]["zed"]},
                "aardvak": {catalog["albums"]["aard"]}, "papbob": of_bob, "sing": set(), "nothing like this": set(),
                "": set(entries)}
    for query, ids in expected.items():
        whole = bob.call("search3", query=query, albumCount=500, artistCount=0, songCount=0)["searchResult3"]
        found = [a["id"] for a in whole.get("album", [])]
        assert set(found) == ids and len(found) == len(ids), (query, found)
        if not query:
            assert found == [a["id"] for a in everything]  # by name, as getAlbumList2 alphabeticalByName
        for offset in range(0, len(found) + 1):
            page = bob.call("search3", query=query, albumCount=2, albumOffset=offset, artistCount=0, songCount=0)
            page = page["searchResult3"].get("album", [])
            assert [a["id"] for a in page] == found[offset:offset + 2], (query, offset)
            assert page == [entries[a["id"]] for a in page]


def test_search3_artists_as_the_artists_say(node, alice: Listener, bob: Listener, catalog: dict[str, Any]) -> None:
    """search3's artists: those the search index finds by name or handle (a typo forgiven), each as getArtists
    shows them, best first; the empty query lists them all by name."""
    artists = [a for group in bob.call("getArtists")["artists"]["index"] for a in group["artist"]]
    handles = {f"ar-{who.artist.did}": who.artist.http.get("/auth/me").json().get("handle", "") for who in (alice, bob)}
    assert set(handles) <= {a["id"] for a in artists} and all(handles.values())
    ar_alice, ar_bob = f"ar-{alice.artist.did}", f"ar-{bob.artist.did}"
    for query, ids in (("pap", [ar_alice, ar_bob]), ("PAPBOB", [ar_bob]), ("alice", [ar_alice]),
                       ("papbbo", [ar_bob]), ("", sorted(a["id"] for a in artists)), ("nothing like this", [])):
        found = bob.call("search3", query=query, albumCount=0, songCount=0)["searchResult3"].get("artist", [])
        assert sorted(a["id"] for a in found) == sorted(ids), query
        if not query:
            assert found == artists  # by name, as getArtists lists them
        assert all(a == next(b for b in artists if b["id"] == a["id"]) for a in found), query
        for offset in range(len(found) + 1):
            page = bob.call("search3", query=query, artistCount=1, artistOffset=offset, albumCount=0, songCount=0)
            assert page["searchResult3"].get("artist", []) == found[offset:offset + 1], (query, offset)
