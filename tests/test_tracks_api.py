"""Track listings and edits through a real node: feeds with cursors, hidden tags, unlisted tracks, tags, own
tracks, and editing with ownership checks, featured artists resolved through the real PDS, artwork swaps."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from conftest import node_fixture
from helpers import Artist, sign_in, stored_files

node = node_fixture("tracks")


@pytest.fixture(scope="module")
def artist(node, pds) -> Artist:
    return sign_in(node.url, pds.create_account("feeds"))


@pytest.fixture(scope="module")
def catalog(node, artist, tmp_path_factory) -> list[int]:
    """Five tracks, oldest first; the third is tagged ai."""
    d = tmp_path_factory.mktemp("catalog")
    ids = []
    for i in range(5):
        song = make_audio(d / f"s{i}.mp3", "mp3", seconds=1, frequency=300 + 50 * i)
        tags = ["ai"] if i == 2 else ["ambient", f"n{i}"]
        r = artist.upload(song, title=f"song {i}", tags=json.dumps(tags))
        assert r.status_code == 200, r.text
        ids.append(artist.wait(r.json()["upload_id"])[-1]["track_id"])
    return ids


def test_latest_feed_pages_with_a_cursor(node, artist, catalog) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = artist.http.get("/tracks/", params=params).json()
        seen += [t["id"] for t in body["tracks"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = [i for i in reversed(catalog) if i != catalog[2]]  # newest first, the ai-tagged one hidden
    assert seen == expected

    for bad in ({"cursor": "not-a-cursor"}, {"cursor": "WzEsMl0"[:-2]}, {"limit": "many"}):
        r = artist.http.get("/tracks/", params=bad)
        assert r.status_code == 400, bad
        assert r.json()["detail"]
    # a limit out of range is clamped to 1-100, as plyr.fm does
    assert len(artist.http.get("/tracks/", params={"limit": 0}).json()["tracks"]) == 1
    assert len(artist.http.get("/tracks/", params={"limit": 101}).json()["tracks"]) == len(expected)


def test_hidden_tags_apply_to_discovery_not_artist_pages(node, artist, catalog) -> None:
    feed = [t["id"] for t in artist.http.get("/tracks/").json()["tracks"]]
    assert catalog[2] not in feed
    page = [t["id"] for t in artist.http.get("/tracks/", params={"artist_did": artist.did}).json()["tracks"]]
    assert catalog[2] in page
    everything = artist.http.get("/tracks/", params={"filter_hidden_tags": "false"}).json()["tracks"]
    assert catalog[2] in [t["id"] for t in everything]


def test_tags(node, artist, catalog) -> None:
    counts = {t["name"]: t["track_count"] for t in artist.http.get("/tracks/tags").json()}  # plyr.fm's bare list
    assert counts["ambient"] == 4 and counts["ai"] == 1
    assert [t["name"] for t in artist.http.get("/tracks/tags", params={"q": "amb"}).json()] == ["ambient"]
    tagged = artist.http.get("/tracks/tags/AMBIENT").json()
    assert tagged["tag"] == {"name": "ambient", "track_count": 4}
    assert {t["id"] for t in tagged["tracks"]} == {catalog[i] for i in (0, 1, 3, 4)}


def test_edit_fields_and_ownership(node, artist, pds, catalog) -> None:
    track_id = catalog[0]
    other_account = pds.create_account("guest")
    other = sign_in(node.url, other_account)

    def edit(who: Artist, **fields: str):
        return who.http.patch(f"/tracks/{track_id}", files={k: (None, v) for k, v in fields.items()},
                              headers={"X-CSRF-Token": who.csrf})

    r = edit(artist, title="renamed", description="liner notes", tags='["Drone", "ambient"]',
             features=json.dumps(["@" + other_account.handle]), self_labels='["sexual"]')
    assert r.status_code == 200, r.text
    track = r.json()
    assert track["title"] == "renamed" and track["description"] == "liner notes"
    assert track["tags"] == ["drone", "ambient"]
    conn = sqlite3.connect(node.data / "plyrd.db")
    features = json.loads(conn.execute("SELECT features FROM tracks WHERE id = ?", (track_id,)).fetchone()[0])
    conn.close()
    assert features == [{"did": other_account.did, "handle": other_account.handle}]
    assert track_id in [t["id"] for t in artist.http.get("/tracks/tags/drone").json()["tracks"]]
    assert artist.http.get("/tracks/tags/n0").status_code == 404  # no track carries it any more

    for fields, words in (
        ({"title": ""}, "title"),
        ({"description": "x" * 5001}, "5000"),
        ({"tags": json.dumps([str(i) for i in range(11)])}, "10 tags"),
        ({"features": '["nobody-at-all.test"]'}, "could not be found"),
        ({"play_count": "1000000"}, "cannot edit play_count"),
        ({"unlisted": "perhaps"}, "true or false"),
    ):
        r = edit(artist, **fields)
        assert r.status_code == 400 and words in r.json()["detail"], (fields, r.text)

    r = edit(other, title="hijacked")
    assert r.status_code == 403
    r = other.http.delete(f"/tracks/{track_id}", headers={"X-CSRF-Token": other.csrf})
    assert r.status_code == 403
    assert artist.http.get(f"/tracks/{track_id}").json()["title"] == "renamed"
    assert artist.http.patch("/tracks/999999", files={"title": (None, "x")},
                             headers={"X-CSRF-Token": artist.csrf}).status_code == 404


def test_unlisted_tracks_leave_the_feed_but_not_your_own_list(node, artist, catalog) -> None:
    track_id = catalog[1]
    r = artist.http.patch(f"/tracks/{track_id}", files={"unlisted": (None, "true")},
                          headers={"X-CSRF-Token": artist.csrf})
    assert r.status_code == 200
    assert track_id not in [t["id"] for t in artist.http.get("/tracks/").json()["tracks"]]
    mine = artist.http.get("/tracks/me", params={"sort": "title"}).json()["tracks"]
    assert track_id in [t["id"] for t in mine]
    assert [t["title"] for t in mine] == sorted(t["title"] for t in mine)
    assert [t["id"] for t in artist.http.get("/tracks/me", params={"q": "song 3"}).json()["tracks"]] == [catalog[3]]
    assert artist.http.get("/tracks/me", params={"sort": "loudest"}).status_code == 400


def test_artwork_replace_and_remove(node, artist, catalog, tmp_path: Path) -> None:
    track_id = catalog[4]

    def patch(files):  # type: ignore[no-untyped-def]
        return artist.http.patch(f"/tracks/{track_id}", files=files, headers={"X-CSRF-Token": artist.csrf})

    r = patch({"image": ("a.png", png_bytes(300, 300), "image/png")})
    assert r.status_code == 200, r.text
    first = r.json()
    first_files = {first["image_url"].rsplit("/", 1)[1], first["thumbnail_url"].rsplit("/", 1)[1]}
    assert first_files <= stored_files(node)

    r = patch({"image": ("b.jpg", jpeg_bytes(200, 100), "image/jpeg")})
    second = r.json()
    assert second["thumbnail_url"] != first["thumbnail_url"]
    assert not first_files & stored_files(node)  # the old artwork is gone

    r = patch({"remove_image": (None, "true")})
    assert r.json()["image_url"] is None and r.json()["thumbnail_url"] is None
    assert second["thumbnail_url"].rsplit("/", 1)[1] not in stored_files(node)

    r = patch({"image": ("c.gif", b"GIF89a not really", "image/gif")})
    assert r.status_code in (415, 422)
    assert artist.http.get(f"/tracks/{track_id}").json()["image_url"] is None
