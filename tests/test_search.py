"""Unified search through a real node: each ranking tier, folding, visibility, the index following edits and
deletes, catching up after a crash, rebuilding (`plyrd reindex`, a lost or stale search.db), "more like this", and
every kind of bad input answered as text or as a clear 400."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_env, node_fixture, start_node
from helpers import Artist, db_rows, sign_in

from plyrd.search.text import edit_distance, fold

# ---- folding, without a node ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "folded"), [
    ("Beyoncé", "beyonce"),
    ("CAFÉ Déjà Vu", "cafe deja vu"),
    ("Don’t Stop", "dont stop"),
    ("Don't Stop", "dont stop"),
    ("“Quoted”", "quoted"),
    ("AC/DC", "ac dc"),
    ("@alice.bsky.social", "alice bsky social"),
    ("Straße", "strasse"),
    ("Øresund Łódź", "oresund lodz"),
    ("Mötley   Crüe!!", "motley crue"),
    ("ＦＵＬＬ", "full"),
    ("Ночь Ёлка", "ночь елка"),
    ('"NEAR" OR * -x ^y', "near or x y"),
    ("東京の夜", "東京の夜"),
    ("がっこう", "がっこう"),  # Japanese voicing marks are letters, not accents
])
def test_folding(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_edit_distance() -> None:
    assert edit_distance("midnight", "midnight") == 0
    assert edit_distance("midnigth", "midnight") == 1  # a swap is one edit
    assert edit_distance("mdnight", "midnight") == 1
    assert edit_distance("kitten", "sitting", limit=2) == 3  # past the limit: limit + 1


# ---- a node with a small catalog --------------------------------------------------------------------------------

TITLES = {
    "exact": "Midnight",
    "album": "Quiet Hours",          # album "Midnight": exact, but in a lighter column than a title
    "prefix": "Midnight Train",
    "words": "Dancing at Midnight",
    "substring": "Aftermidnight Walk",
    "cafe": "Café Déjà Vu",
    "dont": "Don’t Stop Believin’",
    "unlisted": "Secret Midnight Song",
    "other": "Harbour Lights",
}


node = node_fixture("search")


@pytest.fixture(scope="module")
def artist(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("searcher"))


@pytest.fixture(scope="module")
def other(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("bystander"))


def call(who: Artist, method: str, path: str, **kw: Any) -> httpx.Response:
    return who.http.request(method, path, headers={"X-CSRF-Token": who.csrf}, **kw)


@pytest.fixture(scope="module")
def catalog(node, artist, other, tmp_path_factory) -> dict[str, int]:
    """The tracks above (uploaded at once, processed in parallel), a profile name with accents, playlists."""
    d = tmp_path_factory.mktemp("audio")
    pending = {}
    for i, (name, title) in enumerate(TITLES.items()):
        who = other if name == "other" else artist
        song = make_audio(d / f"{name}.mp3", "mp3", seconds=1, frequency=200 + 60 * i)
        fields = {"title": title, "tags": json.dumps(["ambient", "night" if i % 2 else "day"])}
        if name == "album":
            fields["album"] = "Midnight"
        r = who.upload(song, **fields)
        assert r.status_code == 200, r.text
        pending[name] = (who, r.json()["upload_id"])
    ids = {name: who.wait(upload_id)[-1]["track_id"] for name, (who, upload_id) in pending.items()}
    r = call(artist, "PATCH", f"/tracks/{ids['unlisted']}", files={"unlisted": (None, "true")})
    assert r.status_code == 200, r.text
    r = call(artist, "PUT", "/artists/me", json={"display_name": "Zoë Nocturne"})
    assert r.status_code == 200, r.text
    for name, private in (("Midnight Secrets", True), ("Midnight Drive", False)):
        r = call(artist, "POST", "/lists/playlists", json={"name": name, "is_private": private})
        assert r.status_code in (200, 201), r.text
    return ids


def search(who: Artist | None, node: ServedNode, q: str, **params: Any) -> httpx.Response:
    http = who.http if who else httpx.Client(base_url=node.url, timeout=30)
    return http.get("/search/", params={"q": q, **params})


def hits(who: Artist | None, node: ServedNode, q: str, kind: str = "tracks", **params: Any) -> list[dict[str, Any]]:
    r = search(who, node, q, type=kind, **params)
    assert r.status_code == 200, r.text
    return r.json()["groups"][kind]


def titles(found: list[dict[str, Any]]) -> list[str]:
    return [h.get("title") or h.get("name") for h in found]


# ---- tiers and ranking ------------------------------------------------------------------------------------------


def test_each_tier_in_order(node, artist, catalog) -> None:
    found = hits(None, node, "midnight")
    assert [(h["title"], h["match"]) for h in found] == [
        ("Midnight", "exact"),
        ("Quiet Hours", "exact"),           # the album equals the query: the same tier, a lighter column
        ("Midnight Train", "prefix"),
        ("Dancing at Midnight", "words"),
        ("Aftermidnight Walk", "substring"),
    ]
    scores = [h["relevance"] for h in found]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert all(0 < s <= 1 for s in scores)
    first = found[0]
    assert first["type"] == "track" and first["id"] == catalog["exact"]
    assert first["artist_handle"] and first["artist_did"] == artist.did and first["artist"] == "Zoë Nocturne"
    assert "image_url" in first and "thumbnail_url" in first


def test_typeahead_and_typos(node, catalog) -> None:
    assert titles(hits(None, node, "midnight tr")) == ["Midnight Train"]                 # still typing
    assert titles(hits(None, node, "dancing midnight")) == ["Dancing at Midnight"]       # words in any order
    for typo in ("midnigth train", "midnight trian", "mdnight train", "dancnig at midnight"):
        found = hits(None, node, typo)
        assert found and found[0]["match"] == "fuzzy", typo
        assert found[0]["title"] in ("Midnight Train", "Dancing at Midnight"), typo
    assert titles(hits(None, node, "aftermidnigth walk")) == ["Aftermidnight Walk"]     # a swap in a long word
    assert titles(hits(None, node, "midnight trai"))[0] == "Midnight Train"
    assert titles(hits(None, node, "midnight trin")) == ["Midnight Train"]              # a slip while typing


def test_folding_through_the_api(node, catalog) -> None:
    for q in ("cafe deja vu", "CAFÉ DÉJÀ VU", "Cafe, Deja-Vu!"):
        found = hits(None, node, q)
        assert found and found[0]["title"] == "Café Déjà Vu" and found[0]["match"] == "exact", q
    for q in ("don't stop", "don’t stop", "dont stop", "DON'T STOP BELIEVIN'"):
        found = hits(None, node, q)
        assert found and found[0]["title"] == "Don’t Stop Believin’", q


def test_artists_by_name_and_handle(node, artist, catalog) -> None:
    handle = artist.http.get("/auth/me").json()["handle"]
    for q in ("zoe nocturne", "Zoë", "@" + handle, handle, handle.split(".")[0], "@" + handle.split(".")[0]):
        found = hits(None, node, q, "artists")
        assert [a["did"] for a in found] == [artist.did], q
        assert found[0]["handle"] == handle and found[0]["display_name"] == "Zoë Nocturne"
        assert found[0]["track_count"] == 7  # listed and ready only (not the unlisted one)
    # the name finds the artist's tracks too, which show it
    assert {h["id"] for h in hits(None, node, "nocturne")} >= {catalog["exact"], catalog["cafe"]}


def test_tags_and_grouping(node, catalog) -> None:
    tags = hits(None, node, "ambient", "tags")
    assert tags == [{"type": "tag", "id": tags[0]["id"], "name": "ambient", "track_count": 8,  # not the unlisted one
                     "relevance": tags[0]["relevance"], "match": "exact"}]
    assert isinstance(tags[0]["id"], int) and tags[0]["id"] == hits(None, node, "ambient", "tags")[0]["id"]  # stable
    body = search(None, node, "midnight").json()
    assert set(body["groups"]) == {"tracks", "artists", "albums", "tags", "playlists"}
    assert body["counts"] == {k: len(v) for k, v in body["groups"].items()}
    assert len(body["results"]) == sum(body["counts"].values())
    assert [r["relevance"] for r in body["results"]] == sorted((r["relevance"] for r in body["results"]), reverse=True)
    assert len(hits(None, node, "midnight", limit=2)) == 2
    only = search(None, node, "midnight", type="playlists,TRACKS,").json()
    assert set(only["groups"]) == {"playlists", "tracks"} and only["counts"]["artists"] == 0
    # as plyr.fm, a type it does not know is ignored (and none it knows means every type)
    assert set(search(None, node, "midnight", type="tracks,songs").json()["groups"]) == {"tracks"}
    assert set(search(None, node, "midnight", type="songs").json()["groups"]) == set(body["groups"])


# ---- visibility --------------------------------------------------------------------------------------------------


def test_unlisted_tracks_are_not_in_discovery(node, artist, catalog) -> None:
    for who in (None, artist):  # not even for their artist: search is discovery
        assert catalog["unlisted"] not in [h["id"] for h in hits(who, node, "secret midnight song")]
        assert catalog["unlisted"] not in [h["id"] for h in hits(who, node, "midnight")]


def test_private_playlists_only_for_their_owner(node, artist, other, catalog) -> None:
    assert titles(hits(artist, node, "midnight", "playlists")) == ["Midnight Drive", "Midnight Secrets"]
    for who in (None, other):
        assert titles(hits(who, node, "midnight", "playlists")) == ["Midnight Drive"]
        assert hits(who, node, "midnight secrets", "playlists") == []
    found = hits(artist, node, "midnight secrets", "playlists")
    assert found[0]["is_private"] is True and found[0]["owner_did"] == artist.did


def test_tracks_that_stop_being_ready_leave(node, catalog) -> None:
    track_id = catalog["other"]
    assert titles(hits(None, node, "harbour lights")) == ["Harbour Lights"]
    db_write(node, "UPDATE tracks SET status = 'processing' WHERE id = ?", (track_id,))  # another code path
    assert wait_until(lambda: hits(None, node, "harbour lights") == [])
    assert hits(None, node, "bystander", "artists") == []  # no visible track: not an artist to discovery
    db_write(node, "UPDATE tracks SET status = 'ready' WHERE id = ?", (track_id,))
    assert wait_until(lambda: titles(hits(None, node, "harbour lights")) == ["Harbour Lights"])


# ---- consistency ---------------------------------------------------------------------------------------------------


def test_edits_renames_and_deletes_show_at_once(node, artist, pds, tmp_path: Path) -> None:
    song = make_audio(tmp_path / "e.mp3", "mp3", seconds=1, frequency=987)
    r = artist.upload(song, title="Original Name", tags='["lullaby"]')
    track_id = artist.wait(r.json()["upload_id"])[-1]["track_id"]
    assert [h["id"] for h in hits(None, node, "original name")] == [track_id]

    r = call(artist, "PATCH", f"/tracks/{track_id}", files={"title": (None, "Brand New Name")})
    assert r.status_code == 200
    # the search right after the edit waits for the indexer: no sleeping, no retrying
    assert [h["id"] for h in hits(None, node, "brand new name")] == [track_id]
    assert hits(None, node, "original name") == []

    r = call(artist, "POST", "/albums/", json={"title": "Evening Suite"})
    album_id = r.json()["id"]
    assert hits(None, node, "evening suite", "albums") == []  # an empty album is no release
    wait_for_record(node, track_id)
    assert call(artist, "POST", f"/albums/{album_id}/tracks", json={"track_id": track_id}).status_code == 200
    album = hits(None, node, "evening suite", "albums")
    assert [a["id"] for a in album] == [album_id] and album[0]["track_count"] == 1
    assert [h["id"] for h in hits(None, node, "evening suite")] == [track_id]  # found by its album

    assert call(artist, "PUT", "/artists/me", json={"display_name": "Zoë Nachtmusik"}).status_code == 200
    assert [a["did"] for a in hits(None, node, "nachtmusik", "artists")] == [artist.did]
    assert hits(None, node, "zoe nocturne", "artists") == []
    assert hits(None, node, "brand new name")[0]["artist"] == "Zoë Nachtmusik"

    assert call(artist, "DELETE", f"/tracks/{track_id}").status_code == 204
    assert hits(None, node, "brand new name") == []
    assert hits(None, node, "lullaby", "tags") == []           # its only track is gone
    assert hits(None, node, "evening suite", "albums") == []   # and so is the album's
    assert call(artist, "PUT", "/artists/me", json={"display_name": "Zoë Nocturne"}).status_code == 200


# ---- hidden tags ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged(node, pds, tmp_path_factory) -> dict[str, int]:
    """Another artist's tracks, some with tags viewers hide by default ("ai") or may choose to. "Neon" is the best
    match for "neon" (exact), so a page of one is all hidden track unless search looks further; "Glow 1".."Glow 7"
    are hidden and all better matches for "glow" than "Glow Stick"."""
    synth = sign_in(node.url, pds.create_account("synthesist"))
    d = tmp_path_factory.mktemp("tagged")
    pending = {}
    tracks = [("Neon", ["ai", "synthwave"]), ("Neon Harbor", ["synthwave"]), ("Neon Slop Machine", ["ai-slop"]),
              *[(f"Glow {i}", ["ai"]) for i in range(1, 8)], ("Glow Stick", [])]
    for i, (title, tags) in enumerate(tracks):
        song = make_audio(d / f"{i}.mp3", "mp3", seconds=1, frequency=900 + 50 * i)
        r = synth.upload(song, title=title, tags=json.dumps(tags))
        assert r.status_code == 200, r.text
        pending[title] = r.json()["upload_id"]
    return {title: synth.wait(upload_id)[-1]["track_id"] for title, upload_id in pending.items()}


def test_hidden_tags_leave_search_as_they_leave_the_feeds(node, pds, tagged) -> None:
    # Anonymous: the default hidden tags (["ai"]), as the latest feed applies them.
    assert titles(hits(None, node, "neon")) == ["Neon Harbor", "Neon Slop Machine"]
    feed = httpx.get(f"{node.url}/tracks/", params={"limit": 100}).json()["tracks"]
    assert tagged["Neon"] not in [t["id"] for t in feed] and tagged["Neon Harbor"] in [t["id"] for t in feed]
    # A page the hidden track would have filled is filled from further down.
    assert titles(hits(None, node, "neon", limit=1)) == ["Neon Harbor"]
    assert titles(hits(None, node, "glow", limit=1)) == ["Glow Stick"]  # past more hidden ones than the slack
    assert titles(hits(None, node, "glow")) == ["Glow Stick"]
    body = search(None, node, "neon").json()
    assert body["counts"] == {k: len(v) for k, v in body["groups"].items()}
    assert [r for r in body["results"] if r["type"] == "track"] == body["groups"]["tracks"]
    assert tagged["Neon"] not in [h["id"] for h in hits(None, node, "synthwave")]
    # The tags group leaves out hidden tags, and counts what a tag's page shows (every visible track with it).
    assert [t["name"] for t in hits(None, node, "synthwave", "tags")] == ["synthwave"]
    assert hits(None, node, "synthwave", "tags")[0]["track_count"] == 2
    assert [t["name"] for t in hits(None, node, "synth", "tags")] == ["synthwave"]  # (hidden below, signed in)

    # A query that is exactly a hidden tag asks for it by name: that tag is shown, as its tag page shows it.
    assert [t["name"] for t in hits(None, node, "AI", "tags")] == ["ai", "ai-slop"]
    assert tagged["Neon"] in [h["id"] for h in hits(None, node, "ai")]

    # Signed in: the viewer's own hidden tags, whatever they are.
    viewer = sign_in(node.url, pds.create_account("hider"))
    assert titles(hits(viewer, node, "neon")) == ["Neon Harbor", "Neon Slop Machine"]  # no preference yet: default
    r = call(viewer, "POST", "/preferences/", json={"hidden_tags": ["Synthwave", "ai-slop"]})
    assert r.status_code == 200, r.text
    assert hits(viewer, node, "neon") == []
    assert [t["name"] for t in hits(viewer, node, "synth", "tags")] == []
    assert titles(hits(viewer, node, "ai-slop")) == ["Neon Slop Machine"]  # named exactly: shown
    # Named exactly, "synthwave" is shown; "Neon" carries it and "ai", which this viewer no longer hides.
    assert sorted(titles(hits(viewer, node, "synthwave"))) == ["Neon", "Neon Harbor"]
    assert [t["name"] for t in hits(viewer, node, "synthwave", "tags")] == ["synthwave"]
    r = call(viewer, "POST", "/preferences/", json={"hidden_tags": []})
    assert r.status_code == 200, r.text
    assert sorted(titles(hits(viewer, node, "neon"))) == ["Neon", "Neon Harbor", "Neon Slop Machine"]


# ---- more like this ---------------------------------------------------------------------------------------------


def test_more_like_this(node, catalog) -> None:
    r = httpx.get(f"{node.url}/tracks/{catalog['exact']}/similar")
    assert r.status_code == 200, r.text
    similar = r.json()["tracks"]
    ids = [t["id"] for t in similar]
    assert ids and catalog["exact"] not in ids and catalog["unlisted"] not in ids
    assert {"audio_url", "title", "artist", "relevance"} <= set(similar[0])  # playable track objects
    assert len(httpx.get(f"{node.url}/tracks/{catalog['exact']}/similar", params={"limit": 2}).json()["tracks"]) <= 2
    assert httpx.get(f"{node.url}/tracks/999999/similar").status_code == 404
    for bad in ("0", "51", "x"):
        assert httpx.get(f"{node.url}/tracks/{catalog['exact']}/similar", params={"limit": bad}).status_code == 400


def test_more_like_this_hides_what_the_viewer_hides(node, tagged) -> None:
    """Similar tracks are discovery too: "Glow 1".."Glow 7" carry "ai" (hidden by default). From "Glow Stick"
    (no tags) they are left out; from "Glow 1", which carries "ai" itself, they are what its listener asked for."""
    def similar(track: str) -> list[int]:
        r = httpx.get(f"{node.url}/tracks/{tagged[track]}/similar", params={"limit": 5})
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()["tracks"]]

    glows = {tagged[f"Glow {i}"] for i in range(1, 8)}
    assert not glows & set(similar("Glow Stick"))
    assert glows & set(similar("Glow 1"))


# ---- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "words"), [
    ({}, "2 to 100"),
    ({"q": ""}, "2 to 100"),
    ({"q": "a"}, "2 to 100"),
    ({"q": "  a  "}, "2 to 100"),
    ({"q": "x" * 101}, "2 to 100"),
    ({"q": "midnight " * 1200}, "2 to 100"),  # 10k characters
    ({"q": "midnight", "limit": "0"}, "limit"),
    ({"q": "midnight", "limit": "51"}, "limit"),
    ({"q": "midnight", "limit": "ten"}, "limit"),
])
def test_bad_parameters_are_a_clear_400(node, catalog, params: dict[str, str], words: str) -> None:
    r = httpx.get(f"{node.url}/search/", params=params)
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]


@pytest.mark.parametrize("q", [
    '"', '""', '"midnight', 'midnight"', "*", "midnight*", "**", "NEAR", "NEAR(midnight train)", "OR", "AND", "NOT",
    "midnight OR train", "midnight AND", "-midnight", "- -", "title:midnight", "^midnight", "(midnight", "midnight)",
    "{title}: x", "'; DROP TABLE tracks; --", "%_", "\\", "\x00\x01", "💿🎶", "   midnight   ", "m" * 100,
])
def test_query_syntax_is_searched_as_text(node, catalog, q: str) -> None:
    r = httpx.get(f"{node.url}/search/", params={"q": q})
    if len(q.strip()) < 2:  # one character of syntax is still one character
        assert r.status_code == 400 and "2 to 100" in r.json()["detail"], q
        return
    assert r.status_code == 200, (q, r.text)
    body = r.json()
    if fold(q).split() == ["midnight"]:  # the punctuation folds away: the word is searched
        assert body["groups"]["tracks"][0]["title"] == "Midnight", q
    assert httpx.get(f"{node.url}/health").status_code == 200


# ---- crashes and rebuilds (these restart the module's node: keep them last) ----------------------------------------


def test_index_catches_up_after_a_crash(node, pds, artist, catalog) -> None:
    r = call(artist, "PATCH", f"/tracks/{catalog['words']}", files={"title": (None, "Dancing Till Dawn")})
    assert r.status_code == 200
    node.proc.send_signal(signal.SIGKILL)  # maybe before the indexer applied the edit, maybe after
    node.proc.wait(10)
    # Committed while no indexer ran: as if the node died between a commit and indexing it.
    db_write(node, "UPDATE tracks SET title = 'Harbour Nights' WHERE id = ?", (catalog["other"],))
    restarted = restart(node, pds)
    assert titles(hits(None, restarted, "dancing till dawn")) == ["Dancing Till Dawn"]
    assert titles(hits(None, restarted, "harbour nights")) == ["Harbour Nights"]
    # the old title is gone: only a typo away from the new one now
    assert [(h["title"], h["match"]) for h in hits(None, restarted, "harbour lights")] == [("Harbour Nights", "fuzzy")]
    assert db_rows(restarted, "SELECT count(*) FROM search_changes")[0][0] == 0 or wait_until(
        lambda: db_rows(restarted, "SELECT count(*) FROM search_changes")[0][0] == 0)  # applied rows are pruned


def test_stale_or_missing_index_is_rebuilt(node, pds, catalog) -> None:
    node.stop()
    old = node.data / "search.db.old"
    shutil.copy(node.data / "search.db", old)
    restarted = restart(node, pds)
    db_write(restarted, "UPDATE tracks SET title = 'Midnight Ferry' WHERE id = ?", (catalog["prefix"],))
    assert wait_until(lambda: titles(hits(None, restarted, "midnight ferry")) == ["Midnight Ferry"])
    assert wait_until(lambda: db_rows(restarted, "SELECT count(*) FROM search_changes")[0][0] == 0)
    restarted.stop()
    shutil.move(old, node.data / "search.db")  # a copy from before that change, whose log rows are gone
    restarted = restart(node, pds)
    assert titles(hits(None, restarted, "midnight ferry")) == ["Midnight Ferry"]
    assert "rebuilding the search index" in restarted.log()

    restarted.stop()
    (node.data / "search.db").unlink()
    restarted = restart(node, pds)
    assert titles(hits(None, restarted, "midnight ferry")) == ["Midnight Ferry"]

    restarted.stop()
    (node.data / "search.db").write_bytes(b"\0garbage, not a database" * 100)
    restarted = restart(node, pds)
    assert titles(hits(None, restarted, "midnight ferry")) == ["Midnight Ferry"]
    assert "search index damaged" in restarted.log()


def test_reindex_command(node, pds, catalog) -> None:
    cli = [sys.executable, "-m", "plyrd", "reindex", "--data", str(node.data)]
    running = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert running.returncode == 2 and "running node" in running.stderr  # the node holds the index
    node.stop()
    (node.data / "search.db").write_bytes(b"this is not a database")
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rebuilt" in done.stdout and "tracks" in done.stdout
    restarted = restart(node, pds)
    assert titles(hits(None, restarted, "midnight ferry")) == ["Midnight Ferry"]
    assert "rebuilding the search index" not in restarted.log()


# ---- helpers ----------------------------------------------------------------------------------------------------


def restart(node: ServedNode, pds: Any) -> ServedNode:
    """The node again on the same data directory and port (the module's fixture stops whichever runs last)."""
    fresh = start_node([], cwd=node.data.parent, env=node_env(pds), port=int(node.url.rsplit(":", 1)[1]),
                       log_path=node.log_path.with_suffix(f".{time.monotonic_ns()}.log"))
    node.proc, node.log_path = fresh.proc, fresh.log_path
    return node


def db_write(node: ServedNode, sql: str, params: tuple[Any, ...] = ()) -> None:
    """A write from another process, as reconciliation or a migration would make it: the triggers log it."""
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def wait_until(check: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def wait_for_record(node: ServedNode, track_id: int) -> None:
    assert wait_until(lambda: db_rows(node, "SELECT record_uri FROM tracks WHERE id = ?", (track_id,))[0][0], 30)
