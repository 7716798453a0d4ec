"""plyr.fm's shapes through a real node and the real PDS (issue 13): the track JSON field by field against plyr.fm's
TrackResponse (../shared/reference/plyrfm-inventory.md, section 12) on every route that answers tracks; the shapes
of /tracks/top, /tracks/tags, /tracks/tags/{tag}, /search/, /artists/batch, /artists/me and the developer-token
list; and the routes plyr.fm has that the node added: /tracks/by-uri, /lists/by-uri, /lists/{rkey}/reorder,
/now-playing/{did}, the public /artists/{did}/analytics, PATCH /tracks/{id} as url-encoded, empty and multipart
bodies, and PUT /artists/me with support_url and show_liked_on_profile."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import png_bytes
from conftest import node_fixture
from helpers import Person, anonymous, db, person, publish, upload

from plyrd.atproto.cbor import blob_cid

node = node_fixture("shapes")


INVENTORY = Path(__file__).resolve().parents[2] / "shared" / "reference" / "plyrfm-inventory.md"

# Section 12 of the inventory: every field plyr.fm's clients read on a track, with its JSON type. `None` in a tuple
# means the field may be null. (The list is checked against the inventory itself where that file is at hand.)
OPT_STR = (str, type(None))
TRACK_FIELDS: dict[str, Any] = {
    "id": int, "title": str, "artist": str, "artist_handle": str, "artist_did": str, "artist_avatar_url": OPT_STR,
    "file_id": str, "file_type": str, "features": list, "atproto_record_uri": OPT_STR,
    "atproto_record_cid": OPT_STR, "atproto_record_url": OPT_STR, "play_count": int, "created_at": str,
    "image_url": OPT_STR, "thumbnail_url": OPT_STR, "is_liked": bool, "like_count": int, "comment_count": int,
    "album": (dict, type(None)), "tags": list, "gated": bool, "downloadable": bool, "download_policy": str,
    "original_file_id": OPT_STR, "original_file_type": OPT_STR, "description": OPT_STR, "audio_storage": str,
    "pds_blob_cid": OPT_STR, "is_optimizing": bool, "visibility": str, "unlisted": bool, "self_labels": list,
    "labels": list,
}
ALBUM_FIELDS: dict[str, Any] = {"id": str, "slug": str, "title": str, "image_url": OPT_STR, "thumbnail_url": OPT_STR}
FEATURE_FIELDS: dict[str, Any] = {"did": str, "handle": str, "display_name": str, "avatar_url": OPT_STR}


def test_the_field_list_is_section_12() -> None:
    """TRACK_FIELDS names exactly the fields section 12 lists (when the reference is next to this checkout)."""
    if not INVENTORY.exists():
        return  # the reference lives beside the repository, not in it; the list above is its copy
    text = INVENTORY.read_text()
    section = text[text.index("## 12."):]
    clients = section[section.index("fields:"):section.index("Lists come wrapped")]
    names = re.findall(r"`([a-z_]+)`", clients)
    listed = [n for n in names if n not in ("did", "handle", "display_name", "avatar_url", "slug")]
    assert set(listed) == set(TRACK_FIELDS), set(listed) ^ set(TRACK_FIELDS)
    assert "{id, slug, title, image_url, thumbnail_url}" in clients
    assert "{did, handle, display_name, avatar_url}" in clients


def assert_fields(obj: dict[str, Any], fields: dict[str, Any], what: str) -> None:
    for name, kind in fields.items():
        assert name in obj, f"{what}: no {name} in {sorted(obj)}"
        assert isinstance(obj[name], kind) and not (kind is int and isinstance(obj[name], bool)), \
            f"{what}: {name} = {obj[name]!r} is not {kind}"


def assert_track(t: dict[str, Any], what: str = "track") -> None:
    """One track object in plyr.fm's shape: every section-12 field with its type, and the nested shapes."""
    assert_fields(t, TRACK_FIELDS, what)
    assert datetime.fromisoformat(t["created_at"]).tzinfo is not None, t["created_at"]
    assert all(isinstance(tag, str) for tag in t["tags"]) and all(isinstance(x, str) for x in t["labels"])
    if t["album"] is not None:
        assert_fields(t["album"], ALBUM_FIELDS, f"{what}.album")
    for f in t["features"]:
        assert_fields(f, FEATURE_FIELDS, f"{what}.features")
    assert t["visibility"] == ("unlisted" if t["unlisted"] else "public")
    assert t["audio_storage"] in ("r2", "both") and (t["audio_storage"] == "both") == bool(t["pds_blob_cid"])
    assert t["download_policy"] in ("anyone", "signed_in", "artist_only")
    # plyr.fm's SDK parses the same object (its pydantic Track model)
    from plyrfm._internal.types import Track

    parsed = Track.model_validate(t)
    assert parsed.id == t["id"] and (parsed.album.title if parsed.album else None) == \
        (t["album"]["title"] if t["album"] else None)


@pytest.fixture(scope="module")
def artist(node, pds) -> Person:
    return person(node, pds, "shaper")


@pytest.fixture(scope="module")
def guest_star(node, pds) -> Person:
    """Someone the artist features (signed in once, so the node knows them), with a display name."""
    who = person(node, pds, "feat")
    assert who.put("/artists/me", json={"display_name": "Guest Star"}).status_code == 200
    return who


@pytest.fixture(scope="module")
def catalog(node, pds, artist, guest_star, tmp_path_factory) -> dict[str, Any]:
    """Two published tracks: `one` on the album "Night Drive", featuring guest_star, tagged "funk / soul"; `two`
    tagged "ambient", with no album. Plus a playlist holding both."""
    tmp = tmp_path_factory.mktemp("shapes")
    one = upload(artist, tmp, "one", seconds=3, frequency=330.0)
    two = upload(artist, tmp, "two", seconds=3, frequency=440.0)
    for t in (one, two):
        publish(node, pds, t["id"])
    r = artist.me.http.patch(f"/tracks/{one['id']}", headers={"X-CSRF-Token": artist.me.csrf}, files={
        "tags": (None, json.dumps(["funk / soul"])), "features": (None, json.dumps([guest_star.handle]))})
    assert r.status_code == 200, r.text
    r = artist.me.http.patch(f"/tracks/{two['id']}", headers={"X-CSRF-Token": artist.me.csrf},
                             data={"tags": json.dumps(["ambient"])})
    assert r.status_code == 200, r.text
    album = artist.post("/albums/", json={"title": "Night Drive"}).json()
    assert artist.post(f"/albums/{album['id']}/tracks", json={"track_id": one["id"]}).status_code == 200
    playlist = artist.post("/lists/playlists", json={"name": "both"}).json()
    for t in (one, two):
        uri, cid = publish(node, pds, t["id"])
        r = artist.post(f"/lists/playlists/{playlist['id']}/tracks", json={"track_uri": uri, "track_cid": cid})
        assert r.status_code == 200, r.text
    return {"one": artist.get(f"/tracks/{one['id']}").json(), "two": artist.get(f"/tracks/{two['id']}").json(),
            "album": album, "playlist": playlist}


# ---- the track object ------------------------------------------------------------------------------------------


def test_track_shape_on_every_route(node, pds, artist, guest_star, catalog) -> None:
    one, two = catalog["one"], catalog["two"]
    artist.post(f"/tracks/{one['id']}/like")
    artist.put("/queue/", json={"state": {"track_ids": [one["id"], two["id"]]}})
    handle = artist.handle
    answers: dict[str, list[dict[str, Any]]] = {
        "/tracks/": artist.get("/tracks/").json()["tracks"],
        "/tracks/{id}": [artist.get(f"/tracks/{one['id']}").json()],
        "/tracks/by-uri": [artist.get("/tracks/by-uri", params={"uri": one["atproto_record_uri"]}).json()],
        "/tracks/me": artist.get("/tracks/me").json()["tracks"],
        "/tracks/liked": artist.get("/tracks/liked").json()["tracks"],
        "/tracks/top": artist.get("/tracks/top").json(),
        "/tracks/tags/{tag}": artist.get("/tracks/tags/ambient").json()["tracks"],
        "PATCH /tracks/{id}": [artist.me.http.patch(f"/tracks/{two['id']}",
                                                    headers={"X-CSRF-Token": artist.me.csrf}).json()],
        "playlist": artist.get(f"/lists/playlists/{catalog['playlist']['id']}").json()["tracks"],
        "album": artist.get(f"/albums/{handle}/night-drive").json()["tracks"],
        "queue": artist.get("/queue/").json()["tracks"],
        "user likes": artist.get(f"/users/{handle}/likes").json()["tracks"],
    }
    for route, tracks in answers.items():
        assert tracks, route
        for t in tracks:
            assert_track(t, route)
    by_id = {t["id"]: t for t in answers["/tracks/"]}
    assert by_id[one["id"]]["is_liked"] is True and by_id[one["id"]]["like_count"] == 1
    # the counts are there on album and playlist tracks too (they were bare before)
    assert {t["id"]: t["like_count"] for t in answers["playlist"]} == {one["id"]: 1, two["id"]: 0}
    assert answers["album"][0]["is_liked"] is True


def test_track_values(node, pds, artist, guest_star, catalog) -> None:
    one = artist.get(f"/tracks/{catalog['one']['id']}").json()
    album = catalog["album"]
    assert one["album"] == {"id": album["id"], "slug": "night-drive", "title": "Night Drive",
                            "image_url": None, "thumbnail_url": None}  # no cover, no avatar: nothing to show
    assert one["features"] == [{"did": guest_star.did, "handle": guest_star.handle, "display_name": "Guest Star",
                                "avatar_url": None}]
    assert one["artist_handle"] == artist.handle and one["visibility"] == "public" and one["gated"] is False
    assert abs(datetime.fromisoformat(one["created_at"]).timestamp() - time.time()) < 600
    assert one["r2_url"] == one["audio_url"]
    assert one["downloadable"] is True and one["download_policy"] == "anyone"
    # the record: its URI and CID, and the PDS's public getRecord for it, which answers that record
    uri, cid = publish(node, pds, one["id"])
    assert (one["atproto_record_uri"], one["atproto_record_cid"]) == (uri, cid)
    record = httpx.get(one["atproto_record_url"], timeout=30)
    assert record.status_code == 200 and record.json()["cid"] == cid, one["atproto_record_url"]
    # the audio blob the record keeps on the PDS, once the PDS accepted it
    deadline = time.monotonic() + 20
    while not one["pds_blob_cid"] and time.monotonic() < deadline:
        time.sleep(0.2)
        one = artist.get(f"/tracks/{one['id']}").json()
    assert one["pds_blob_cid"] == blob_cid(one["file_id"]) and one["audio_storage"] == "both"
    assert record.json()["value"]["audioBlob"]["ref"]["$link"] == one["pds_blob_cid"]

    # an avatar stands in for a missing album cover (as plyr.fm); the album name on the record is plyrd's album_name
    artist.put("/artists/me", json={"avatar_url": "https://cdn.example.com/a.png"})
    one = artist.get(f"/tracks/{one['id']}").json()
    assert one["album"]["image_url"] == "https://cdn.example.com/a.png" and one["album"]["thumbnail_url"] is None
    assert one["artist_avatar_url"] == "https://cdn.example.com/a.png"
    artist.put("/artists/me", json={"avatar_url": None})
    two = artist.get(f"/tracks/{catalog['two']['id']}").json()
    assert two["album"] is None and two["features"] == []


def test_a_track_without_a_handle_still_has_a_string(node, pds, catalog, tmp_path) -> None:
    """users.handle is NULL while a handle no longer resolves: artist_handle falls back to the DID."""
    loner = person(node, pds, "nohandle")
    made = upload(loner, tmp_path, "loner", seconds=2, frequency=500.0)
    db(node, "UPDATE users SET handle = NULL WHERE did = ?", (loner.did,))
    try:
        t = anonymous(node).get(f"/tracks/{made['id']}").json()
        assert_track(t)
        assert t["artist_handle"] == loner.did and t["artist"] == loner.did
        assert anonymous(node).get(f"/artists/{loner.did}").json()["handle"] == loner.did
    finally:
        db(node, "UPDATE users SET handle = ? WHERE did = ?", (loner.handle, loner.did))


# ---- shapes of the other answers ---------------------------------------------------------------------------------


def test_top_tracks_are_a_bare_array_with_a_clamped_limit(node, artist, catalog) -> None:
    artist.post(f"/tracks/{catalog['one']['id']}/like")
    guest = anonymous(node)
    top = guest.get("/tracks/top").json()
    assert isinstance(top, list) and top[0]["id"] == catalog["one"]["id"]
    assert guest.get("/tracks/top", params={"limit": 500}).status_code == 200  # clamped to 50, as plyr.fm
    assert len(guest.get("/tracks/top", params={"limit": 0}).json()) == 1  # clamped to 1
    assert guest.get("/tracks/top", params={"limit": "lots"}).status_code == 400


def test_tags_and_a_tags_tracks(node, artist, catalog) -> None:
    guest = anonymous(node)
    db(node, "UPDATE tracks SET play_count = 7 WHERE id = ?", (catalog["two"]["id"],))
    tags = guest.get("/tracks/tags").json()
    assert isinstance(tags, list)
    by_name = {t["name"]: t for t in tags}
    assert by_name["ambient"] == {"name": "ambient", "track_count": 1, "total_plays": 7}
    assert by_name["funk / soul"]["track_count"] == 1
    assert tags[0]["name"] == "ambient"  # most played first
    assert [t["name"] for t in guest.get("/tracks/tags", params={"q": "FUN"}).json()] == ["funk / soul"]

    body = guest.get("/tracks/tags/funk / soul").json()  # a slash in the tag, as plyr.fm's {tag_name:path}
    assert body["tag"] == {"name": "funk / soul", "track_count": 1} and body["created_by_handle"] is None
    assert [t["id"] for t in body["tracks"]] == [catalog["one"]["id"]]
    assert guest.get("/tracks/tags/FUNK%20%2F%20SOUL").json()["tag"]["name"] == "funk / soul"
    r = guest.get("/tracks/tags/no-such-tag")
    assert r.status_code == 404 and "no-such-tag" in r.json()["detail"]


def test_search_results_parse_as_plyr_fm_clients_expect(node, artist, catalog) -> None:
    from plyrfm._internal.types import SearchResponse

    guest = anonymous(node)
    body = guest.get("/search/", params={"q": "ambient"}).json()
    SearchResponse.model_validate(body)  # the SDK's own model: one bad item would fail it all
    tag = next(r for r in body["results"] if r["type"] == "tag")
    assert isinstance(tag["id"], int) and tag["name"] == "ambient"
    assert tag["id"] == guest.get("/search/", params={"q": "ambient", "type": "tags"}).json()["results"][0]["id"]
    track = guest.get("/search/", params={"q": "two", "type": "tracks"}).json()["results"][0]
    assert track["artist_display_name"] == artist.handle  # no display name: the handle, never null
    assert track["artist_handle"] == artist.handle
    body = guest.get("/search/", params={"q": "two", "type": "tracks,nonsense"})  # unknown types are ignored
    assert body.status_code == 200 and {r["type"] for r in body.json()["results"]} == {"track"}
    assert guest.get("/search/", params={"q": "two", "type": "nonsense"}).status_code == 200  # all kinds


def test_artists_batch(node, artist, guest_star) -> None:
    guest = anonymous(node)
    r = guest.post("/artists/batch", json=[artist.did, guest_star.did, "did:plc:nobodyhere"])
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {artist.did, guest_star.did}
    assert body[guest_star.did]["display_name"] == "Guest Star" and body[artist.did]["handle"] == artist.handle
    assert guest.post("/artists/batch", json={"dids": [artist.did]}).json().keys() == {artist.did}
    assert guest.post("/artists/batch", json=[]).json() == {}
    for bad in ([1, 2], [artist.did] * 101, "did:plc:x", {"dids": "x"}):
        assert guest.post("/artists/batch", json=bad).status_code == 400, bad


def test_artists_me_and_its_update(node, pds, artist) -> None:
    me = artist.get("/artists/me").json()
    for key in ("did", "handle", "display_name", "bio", "avatar_url", "created_at", "updated_at",
                "show_liked_on_profile", "support_url"):
        assert key in me, key
    assert datetime.fromisoformat(me["created_at"]) and me["show_liked_on_profile"] is False
    assert me["support_url"] is None

    r = artist.put("/artists/me", json={"support_url": "https://ko-fi.com/shaper", "show_liked_on_profile": True,
                                        "bio": "hello"})
    assert r.status_code == 200, r.text
    assert r.json()["support_url"] == "https://ko-fi.com/shaper" and r.json()["show_liked_on_profile"] is True
    assert r.json()["bio"] == "hello"
    # the same preferences /preferences/ shows, and what they do: liked tracks on the profile, the support link
    prefs = artist.get("/preferences/").json()
    assert prefs["show_liked_on_profile"] is True and prefs["support_url"] == "https://ko-fi.com/shaper"
    assert anonymous(node).get(f"/users/{artist.handle}/likes").status_code == 200
    tracks = artist.get("/tracks/me").json()["tracks"]
    assert tracks and all(t["artist_support_url"] == "https://ko-fi.com/shaper" for t in tracks)
    assert anonymous(node).get(f"/artists/{artist.did}").json()["support_url"] == "https://ko-fi.com/shaper"

    for bad in ({"support_url": "http://ko-fi.com/x"}, {"support_url": "javascript:alert(1)"},
                {"support_url": 5}, {"show_liked_on_profile": "yes"}, {"support_url": "https://x\"y.com"},
                {"bio": "ok", "support_url": "ftp://x.com"}):
        r = artist.put("/artists/me", json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert artist.get("/artists/me").json()["bio"] == "hello"  # a refused update changes nothing
    r = artist.put("/artists/me", json={"support_url": "", "show_liked_on_profile": False})
    assert r.json()["support_url"] is None and r.json()["show_liked_on_profile"] is False
    assert anonymous(node).get(f"/users/{artist.handle}/likes").status_code == 403


def test_developer_tokens_as_plyr_fm_lists_them(node, pds) -> None:
    account = pds.create_account("tokens")
    r = httpx.post(node.url + "/auth/app-password", timeout=30, json={
        "handle": account.handle, "app_password": account.password, "token_name": "script"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    listed = httpx.get(node.url + "/auth/developer-tokens", headers={"Authorization": f"Bearer {token}"},
                       timeout=30).json()["tokens"]
    assert len(listed) == 1
    t = listed[0]
    assert t["session_id"] == t["prefix"] == token[:8] and t["name"] == "script"
    created, expires = datetime.fromisoformat(t["created_at"]), datetime.fromisoformat(t["expires_at"])
    assert abs(created.timestamp() - time.time()) < 600 and expires > created
    assert datetime.fromisoformat(t["last_used_at"])


# ---- routes plyr.fm has --------------------------------------------------------------------------------------


def test_track_by_uri(node, artist, catalog) -> None:
    guest = anonymous(node)
    one = catalog["one"]
    got = guest.get("/tracks/by-uri", params={"uri": one["atproto_record_uri"]})
    assert got.status_code == 200 and got.json()["id"] == one["id"] and got.json()["peaks"]
    assert guest.get("/tracks/by-uri", params={"uri": f"at://{artist.did}/fm.plyr.track/nope"}).status_code == 404
    assert guest.get("/tracks/by-uri").status_code == 400


def test_lists_by_uri(node, artist, catalog) -> None:
    guest = anonymous(node)
    album = artist.get(f"/albums/{artist.handle}/night-drive").json()["metadata"]
    playlist = artist.get(f"/lists/playlists/{catalog['playlist']['id']}").json()
    assert album["atproto_record_uri"] and playlist["atproto_record_uri"]
    assert guest.get("/lists/by-uri", params={"uri": album["atproto_record_uri"]}).json() == {
        "type": "album", "id": album["id"], "handle": artist.handle, "slug": "night-drive"}
    assert guest.get("/lists/by-uri", params={"uri": playlist["atproto_record_uri"]}).json() == {
        "type": "playlist", "id": playlist["id"], "handle": None, "slug": None}
    r = guest.get("/lists/by-uri", params={"uri": f"at://{artist.did}/fm.plyr.list/nope"})
    assert r.status_code == 404 and r.json()["detail"] == "list not found"
    assert guest.get("/lists/by-uri").status_code == 400


def _rkey(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def test_reorder_a_list_by_rkey(node, pds, artist, catalog, tmp_path) -> None:
    one, two = catalog["one"], catalog["two"]
    refs = {t["id"]: {"uri": t["atproto_record_uri"], "cid": t["atproto_record_cid"]} for t in (one, two)}
    # a playlist
    playlist = artist.get(f"/lists/playlists/{catalog['playlist']['id']}").json()
    assert [t["id"] for t in playlist["tracks"]] == [one["id"], two["id"]]
    rkey = _rkey(playlist["atproto_record_uri"])
    r = artist.put(f"/lists/{rkey}/reorder", json={"items": [refs[two["id"]], refs[one["id"]]]})
    assert r.status_code == 200, r.text
    after = artist.get(f"/lists/playlists/{playlist['id']}").json()
    assert [t["id"] for t in after["tracks"]] == [two["id"], one["id"]]
    assert r.json() == {"uri": after["atproto_record_uri"], "cid": after["atproto_record_cid"]}
    assert r.json()["cid"] != playlist["atproto_record_cid"]
    assert artist.put(f"/lists/{rkey}/reorder", json={"items": [refs[two["id"]]]}).status_code == 400  # not all

    # an album (two tracks on it first)
    album = artist.get(f"/albums/{artist.handle}/night-drive").json()["metadata"]
    assert artist.post(f"/albums/{album['id']}/tracks", json={"track_id": two["id"]}).status_code == 200
    album = artist.get(f"/albums/{artist.handle}/night-drive").json()
    assert [t["id"] for t in album["tracks"]] == [one["id"], two["id"]]
    rkey = _rkey(album["metadata"]["atproto_record_uri"])
    r = artist.put(f"/lists/{rkey}/reorder", json={"items": [refs[two["id"]], refs[one["id"]]]})
    assert r.status_code == 200, r.text
    album = artist.get(f"/albums/{artist.handle}/night-drive").json()
    assert [t["id"] for t in album["tracks"]] == [two["id"], one["id"]]
    assert r.json() == {"uri": album["metadata"]["atproto_record_uri"], "cid": album["metadata"]["atproto_record_cid"]}
    r = artist.put(f"/lists/{rkey}/reorder", json={"items": [refs[two["id"]], refs[two["id"]]]})
    assert r.status_code == 400
    # put the album back as the other tests expect it: only `one` on it
    assert artist.delete(f"/albums/{album['metadata']['id']}/tracks/{two['id']}").status_code == 200

    # the liked list
    for t in (one, two):
        assert artist.post(f"/tracks/{t['id']}/like").status_code == 200
    (rkey,) = db(node, "SELECT rkey FROM liked_lists WHERE did = ?", (artist.did,))[0]
    liked = [t["id"] for t in artist.get("/tracks/liked").json()["tracks"]]
    new = list(reversed(liked))
    r = artist.put(f"/lists/{rkey}/reorder", json={"items": [refs[i] for i in new]})
    assert r.status_code == 200, r.text
    assert r.json()["uri"] == f"at://{artist.did}/fm.plyr.list/{rkey}" and r.json()["cid"]
    assert [t["id"] for t in artist.get("/tracks/liked").json()["tracks"]] == new

    # someone else's list, an unknown rkey, no sign-in
    stranger = person(node, pds, "stranger")
    assert stranger.put(f"/lists/{rkey}/reorder", json={"items": []}).status_code == 404
    assert artist.put("/lists/3zzzzzzzzzzzz/reorder", json={"items": []}).status_code == 404
    assert anonymous(node).put(f"/lists/{rkey}/reorder", json={"items": []}).status_code == 401


def test_now_playing_by_did_alone(node, pds, artist, catalog) -> None:
    guest = anonymous(node)
    assert guest.get(f"/now-playing/{artist.did}").status_code == 204
    r = artist.post("/now-playing/", json={"track_id": catalog["one"]["id"], "progress_ms": 1000})
    assert r.status_code == 200, r.text
    short, long = guest.get(f"/now-playing/{artist.did}"), guest.get(f"/now-playing/by-did/{artist.did}")
    assert short.status_code == 200 and short.json()["track_id"] == catalog["one"]["id"]
    assert short.json().keys() == long.json().keys()
    artist.delete("/now-playing/")
    assert guest.get(f"/now-playing/{artist.did}").status_code == 204


def test_public_analytics(node, pds, artist, catalog) -> None:
    guest = anonymous(node)
    db(node, "UPDATE tracks SET play_count = 7 WHERE id = ?", (catalog["two"]["id"],))
    db(node, "UPDATE tracks SET play_count = 3 WHERE id = ?", (catalog["one"]["id"],))
    body = guest.get(f"/artists/{artist.did}/analytics").json()
    assert body["total_plays"] == 10 and body["total_items"] == 2 and body["total_duration_seconds"] > 0
    assert body["top_item"] == {"id": catalog["two"]["id"], "title": "two", "play_count": 7}
    assert body["top_liked"]["id"] == catalog["one"]["id"]
    assert body["rank"] == 1
    assert guest.get("/artists/did:plc:nobodyhere/analytics").json() == {
        "total_plays": 0, "total_items": 0, "total_duration_seconds": 0, "top_item": None, "top_liked": None,
        "rank": None}
    # /artists/me/analytics stays the signed-in artist's own (not "the artist whose DID is me")
    assert guest.get("/artists/me/analytics").status_code == 401
    assert "plays_per_day" in artist.get("/artists/me/analytics").json()


# ---- edits ---------------------------------------------------------------------------------------------------


def test_patch_takes_urlencoded_empty_and_multipart_bodies(node, artist, catalog) -> None:
    track_id = catalog["two"]["id"]
    h = {"X-CSRF-Token": artist.me.csrf}
    http = artist.me.http
    # url-encoded, as plyr.fm's SDK sends an update without an image
    r = http.patch(f"/tracks/{track_id}", data={"title": "two, renamed", "description": "notes"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "two, renamed" and r.json()["description"] == "notes"
    assert_track(r.json())
    # no body at all: nothing changes, the track comes back
    before = http.get(f"/tracks/{track_id}").json()
    r = http.patch(f"/tracks/{track_id}", headers=h)
    assert r.status_code == 200 and r.json()["title"] == "two, renamed"
    assert r.json()["atproto_record_cid"] == before["atproto_record_cid"]  # the record was not rewritten
    # multipart with an image still works
    r = http.patch(f"/tracks/{track_id}", headers=h, files={"title": (None, "two"),
                                                               "image": ("c.png", png_bytes(64, 64), "image/png")})
    assert r.status_code == 200 and r.json()["title"] == "two" and r.json()["image_url"]
    # refusals: unknown fields, a field twice, a body of another type, someone else
    for body, status in ((b"play_count=5", 400), (b"title=a&title=b", 400), (b"title=%ff", 400),
                         (b"title=a%00b", 400), (b"=x", 400)):
        r = http.patch(f"/tracks/{track_id}", content=body,
                       headers={**h, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == status, (body, r.text)
    r = http.patch(f"/tracks/{track_id}", json={"title": "x"}, headers=h)
    assert r.status_code == 415
    r = http.patch(f"/tracks/{track_id}", content=b"title=" + b"x" * 70_000,
                   headers={**h, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert http.get(f"/tracks/{track_id}").json()["title"] == "two"


def test_patch_album_puts_the_track_on_an_album(node, artist, catalog) -> None:
    """plyr.fm's edit of `album`: a title puts the track on the artist's album of that title (made when there is
    none), off any other; an empty one takes it off."""
    track_id, handle = catalog["two"]["id"], artist.handle
    h = {"X-CSRF-Token": artist.me.csrf}
    http = artist.me.http

    def on(slug: str) -> list[int]:
        return [t["id"] for t in artist.get(f"/albums/{handle}/{slug}").json()["tracks"]]

    r = http.patch(f"/tracks/{track_id}", data={"album": "Side B"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["album"]["title"] == "Side B" and r.json()["album_name"] == "Side B"
    assert on("side-b") == [track_id]
    r = http.patch(f"/tracks/{track_id}", data={"album": "night drive!"}, headers=h)  # the same slug: that album
    assert r.json()["album"]["id"] == catalog["album"]["id"] and r.json()["album_name"] == "Night Drive"
    assert on("night-drive") == [catalog["one"]["id"], track_id] and on("side-b") == []
    r = http.patch(f"/tracks/{track_id}", data={"album": ""}, headers=h)
    assert r.json()["album"] is None and r.json()["album_name"] is None
    assert on("night-drive") == [catalog["one"]["id"]]


def test_sdk_client_reads_the_node(node, pds, artist, catalog) -> None:
    """A few of the SDK's reads against the node, with the artist's developer token (tests/test_plyrfm_sdk.py
    drives all of them)."""
    from plyrfm import PlyrClient

    r = httpx.post(node.url + "/auth/app-password", timeout=30, json={
        "handle": artist.handle, "app_password": artist.account.password, "token_name": "sdk"})
    client = PlyrClient(token=r.json()["token"], api_url=node.url)
    got = client.tracks.get(catalog["one"]["id"])
    assert got.album is not None and got.album.title == "Night Drive"
    assert got.atproto_uri == catalog["one"]["atproto_record_uri"]
    assert client.tracks.get(catalog["one"]["atproto_record_uri"]).id == catalog["one"]["id"]
    assert {t.name for t in client.tags.list()} >= {"ambient", "funk / soul"}
    assert [t.id for t in client.tags.tracks("funk / soul")] == [catalog["one"]["id"]]
    assert client.discover.top_tracks() and client.discover.search("ambient").results
    client.tracks.like(catalog["one"]["id"])
    client.tracks.like(catalog["one"]["id"])  # idempotent
    client.tracks.unlike(catalog["two"]["id"])
    client.tracks.unlike(catalog["two"]["id"])


def test_downloadable_follows_the_policy_for_each_viewer(node, pds, artist, catalog) -> None:
    """`downloadable` is for whoever asks (plyrd.catalog.downloads), and the track page offers the download only
    when it is true."""
    track_id = catalog["two"]["id"]
    h = {"X-CSRF-Token": artist.me.csrf}
    browser = {"Accept": "text/html"}
    try:
        r = artist.me.http.patch(f"/tracks/{track_id}", data={"download_policy": "signed_in"}, headers=h)
        assert r.status_code == 200 and r.json()["download_policy"] == "signed_in" and r.json()["downloadable"]
        guest, listener = anonymous(node), person(node, pds, "listener")
        assert guest.get(f"/tracks/{track_id}").json()["downloadable"] is False
        assert listener.get(f"/tracks/{track_id}").json()["downloadable"] is True
        assert "/download\" download" not in guest.get(f"/track/{track_id}", headers=browser).text
        assert "/download\" download" in listener.get(f"/track/{track_id}", headers=browser).text
        artist.me.http.patch(f"/tracks/{track_id}", data={"download_policy": "artist_only"}, headers=h)
        assert listener.get(f"/tracks/{track_id}").json()["downloadable"] is False
        assert artist.get(f"/tracks/{track_id}").json()["downloadable"] is True
        assert [t["downloadable"] for t in guest.get("/tracks/top").json() if t["id"] == track_id] in ([], [False])
    finally:
        artist.me.http.patch(f"/tracks/{track_id}", data={"download_policy": ""}, headers=h)
    assert anonymous(node).get(f"/tracks/{track_id}").json()["download_policy"] == "anyone"
