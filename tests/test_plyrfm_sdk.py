"""plyr.fm's own Python SDK and CLI (`plyrfm` on PyPI) against a real node and the real PDS: the SDK is the contract.

A node is meant to be a drop-in for plyr.fm's API, so what people wrote for plyr.fm must work by changing the base
URL. This module drives every public method of `PlyrClient`, a few of `AsyncPlyrClient`, and every command of
`plyrfm/cli.py` (run as `python -m plyrfm.cli` with PLYR_API_URL and PLYR_TOKEN, as a user would), and checks what
comes back: ids, titles, album titles, tags, counts, search hits, downloaded bytes by SHA-256, replaced and restored
audio, revisions, playlist membership, profile fields. Where the SDK and the node disagree, the SDK is right.

One node for the module, one developer token for the artist and one for a listener (tokens come from
POST /auth/app-password with a `token_name`, as plyr.fm's settings page mints them), short generated audio, and one
upload per distinct need:

    A  "Aurora Sdk Song"    mp3,  album "SDK Album", tags sdkambient+sdkdrone, description  read-only checks
    B  "Borealis Sdk Song"  flac, album "SDK Album", tag sdkambient                         read-only checks, likes
    C  "Cygnus Sdk Song"    wav                                                             TrackPatch edits
    D  "Draco Sdk Song"     mp3                                                             replace / revisions
    E  "Eridanus Sdk Song"  mp3, publishing: unlisted, downloads off                        publishing defaults
    F  "Fornax Sdk Song"    mp3                                                             delete
    plus one upload through AsyncPlyrClient and one through the CLI (which the CLI then edits, replaces, deletes).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from audio_samples import make_audio, png_bytes
from conftest import ServedNode, clean_env, node_fixture
from pds_harness import Account
from plyrfm import (
    ArtistProfilePatch,
    AsyncPlyrClient,
    AudioRevision,
    PlyrClient,
    PublishingDefaults,
    PublishingPolicy,
    Track,
    TrackPatch,
)
from plyrfm._internal.config import Settings

TRACK_COLLECTION = "fm.plyr.track"
ALBUM = "SDK Album"
ALBUM_SLUG = "sdk-album"  # plyr.fm's slugify(ALBUM)

node = node_fixture("plyrfm_sdk")


# ---- helpers ----------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def developer_token(node: ServedNode, account: Account, name: str) -> str:
    """A developer token, as plyr.fm's clients expect in PLYR_TOKEN."""
    r = httpx.post(node.url + "/auth/app-password", timeout=30,
                   json={"handle": account.handle, "app_password": account.password, "token_name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def client(node: ServedNode, token: str | None) -> PlyrClient:
    """A PlyrClient for the node that ignores any PLYR_* setting or .env of the machine running the tests."""
    return PlyrClient(token=token, api_url=node.url, settings=Settings(token=None, api_url=node.url, _env_file=None))


def async_client(node: ServedNode, token: str | None) -> AsyncPlyrClient:
    return AsyncPlyrClient(token=token, api_url=node.url,
                           settings=Settings(token=None, api_url=node.url, _env_file=None))


def status_of(excinfo: pytest.ExceptionInfo[httpx.HTTPStatusError]) -> int:
    return excinfo.value.response.status_code


@dataclass(frozen=True)
class Uploaded:
    id: int
    title: str
    path: Path


@dataclass(frozen=True)
class Catalog:
    """The artist's read-only tracks A and B (both on the album "SDK Album")."""

    a: Uploaded
    b: Uploaded


# ---- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artist_account(pds) -> Account:
    return pds.create_account("sdkartist")


@pytest.fixture(scope="module")
def listener_account(pds) -> Account:
    return pds.create_account("sdklisten")


@pytest.fixture(scope="module")
def artist_token(node, artist_account) -> str:
    return developer_token(node, artist_account, "plyrfm sdk tests")


@pytest.fixture(scope="module")
def listener_token(node, listener_account) -> str:
    return developer_token(node, listener_account, "plyrfm sdk tests")


@pytest.fixture(scope="module")
def sdk(node, artist_token) -> Iterator[PlyrClient]:
    """The artist's client."""
    with client(node, artist_token) as c:
        yield c


@pytest.fixture(scope="module")
def listener(node, listener_token) -> Iterator[PlyrClient]:
    """A listener's client: another account, with no tracks."""
    with client(node, listener_token) as c:
        yield c


@pytest.fixture(scope="module")
def anon(node) -> Iterator[PlyrClient]:
    """No token at all: what anyone on the internet gets."""
    with client(node, None) as c:
        yield c


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plyrfm-audio")


def sound(directory: Path, name: str, fmt: str, frequency: float) -> Path:
    """Two seconds of audio, distinct per frequency (the node refuses an artist's second copy of the same audio)."""
    return make_audio(directory / name, fmt, seconds=2, frequency=frequency)


def upload(c: PlyrClient, path: Path, title: str, **kwargs) -> Uploaded:
    result = c.tracks.upload(path, title, **kwargs)
    assert isinstance(result.track_id, int) and result.title == title
    return Uploaded(result.track_id, title, path)


@pytest.fixture(scope="module")
def catalog(sdk, audio) -> Catalog:
    a = upload(sdk, sound(audio, "aurora.mp3", "mp3", 330), "Aurora Sdk Song", album=ALBUM,
               tags={"sdkambient", "sdkdrone"}, description="liner notes for aurora")
    b = upload(sdk, sound(audio, "borealis.flac", "flac", 370), "Borealis Sdk Song", album=ALBUM,
               tags={"sdkambient"})
    return Catalog(a, b)


@pytest.fixture(scope="module")
def a_liked(listener, catalog) -> int:
    """Track A with one like (the listener's), so it is in the top tracks."""
    listener.tracks.like(catalog.a.id)
    return catalog.a.id


@pytest.fixture(scope="module")
def cover(audio) -> Path:
    path = audio / "cover.png"
    path.write_bytes(png_bytes(64, 64))
    return path


def album_detail(node: ServedNode, handle: str, slug: str) -> dict:
    """plyr.fm's GET /albums/{handle}/{slug}: {metadata, tracks} (the SDK has no albums namespace)."""
    r = httpx.get(f"{node.url}/albums/{handle}/{slug}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def add_by_id(node: ServedNode, token: str, playlist_id: str, track_id: int) -> None:
    """Put a track in a playlist through the node's own API (setup for tests that are about something else)."""
    r = httpx.post(f"{node.url}/lists/playlists/{playlist_id}/tracks", json={"track_id": track_id},
                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text


def assert_record_ref(track: Track, did: str) -> None:
    assert track.atproto_uri is not None and track.atproto_uri.startswith(f"at://{did}/{TRACK_COLLECTION}/"), \
        f"track {track.id} has no fm.plyr.track record URI (atproto_record_uri): {track.atproto_uri!r}"
    assert track.atproto_cid, f"track {track.id} has no atproto_record_cid"


# ---- the signed-in user -------------------------------------------------------------------------------------------


def test_me(sdk, artist_account) -> None:
    me = sdk.me()
    assert me["did"] == artist_account.did
    assert me["handle"] == artist_account.handle


def test_authenticated_methods_need_a_token(anon) -> None:
    """The SDK refuses before sending anything when there is no token (so a node never sees these requests)."""
    with pytest.raises(ValueError, match="authentication required"):
        anon.tracks.my()
    with pytest.raises(ValueError, match="authentication required"):
        anon.me()


# ---- uploads ------------------------------------------------------------------------------------------------------


def test_upload_with_album_tags_and_description(sdk, catalog, artist_account) -> None:
    a = sdk.tracks.get(catalog.a.id)
    assert (a.id, a.title) == (catalog.a.id, "Aurora Sdk Song")
    assert set(a.tags) == {"sdkambient", "sdkdrone"}
    assert a.description == "liner notes for aurora"
    assert a.album is not None, "album= was dropped: the track is on no album"
    assert a.album.title == ALBUM
    assert a.album.slug == ALBUM_SLUG
    assert a.artist_handle == artist_account.handle
    assert a.visibility == "public" and a.unlisted is False and a.gated is False
    assert (a.original_file_type or a.file_type) == "mp3"
    assert_record_ref(a, artist_account.did)

    b = sdk.tracks.get(catalog.b.id)
    assert b.title == "Borealis Sdk Song" and b.tags == ["sdkambient"] and b.description is None
    assert b.album is not None and b.album.title == ALBUM
    assert b.album.id == a.album.id, "a second upload with the same album title must join the same album"
    assert (b.original_file_type or b.file_type) == "flac"


def test_upload_album_lists_its_tracks(node, catalog, artist_account) -> None:
    """album="SDK Album" finds or creates the artist's album, as plyr.fm does: the album lists both tracks in order."""
    albums = httpx.get(f"{node.url}/albums/{artist_account.handle}", timeout=30).json()["albums"]
    assert [al["title"] for al in albums].count(ALBUM) == 1, albums
    detail = album_detail(node, artist_account.handle, ALBUM_SLUG)
    assert detail["metadata"]["title"] == ALBUM
    assert [t["id"] for t in detail["tracks"]] == [catalog.a.id, catalog.b.id]


def test_upload_with_publishing_defaults(sdk, anon, audio, tmp_path, artist_account) -> None:
    """The SDK's `publishing` form field (PublishingDefaults JSON) is honoured: an unlisted track stays out of the
    public list, and downloads "off" refuses anyone who is not the artist."""
    publishing = PublishingDefaults(access=PublishingPolicy(visibility="unlisted", downloads="off"))
    e = upload(sdk, sound(audio, "eridanus.mp3", "mp3", 410), "Eridanus Sdk Song", publishing=publishing)
    track = sdk.tracks.get(e.id)
    assert track.title == "Eridanus Sdk Song"
    assert track.visibility == "unlisted" and track.unlisted is True
    assert e.id not in [t.id for t in anon.tracks.list(limit=100)]
    assert e.id in [t.id for t in sdk.tracks.my(limit=100)], "the artist's own list includes unlisted tracks"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        anon.tracks.download(e.id, tmp_path / "eridanus.bin")
    assert status_of(refused) in (401, 403)
    assert not (tmp_path / "eridanus.bin").exists()


# ---- reading tracks -----------------------------------------------------------------------------------------------


def test_get_by_id_and_by_at_uri(anon, catalog, artist_account) -> None:
    by_id = anon.tracks.get(catalog.a.id)
    assert by_id.title == "Aurora Sdk Song" and by_id.album is not None and by_id.album.title == ALBUM
    assert_record_ref(by_id, artist_account.did)
    uri = by_id.atproto_uri
    assert uri is not None
    by_uri = anon.tracks.get(uri)  # a TrackRef that is an at:// URI goes to GET /tracks/by-uri
    assert (by_uri.id, by_uri.title, by_uri.atproto_uri) == (catalog.a.id, "Aurora Sdk Song", uri)
    assert anon.tracks.get_by_uri(uri).id == catalog.a.id


def test_get_unknown_track_is_404(anon, artist_account) -> None:
    with pytest.raises(httpx.HTTPStatusError) as missing:
        anon.tracks.get(987654321)
    assert status_of(missing) == 404
    with pytest.raises(httpx.HTTPStatusError) as missing_uri:
        anon.tracks.get_by_uri(f"at://{artist_account.did}/{TRACK_COLLECTION}/3zzzzzzzzzzzz")
    assert status_of(missing_uri) == 404


def test_list_public_tracks(anon, catalog) -> None:
    tracks = anon.tracks.list(limit=50)
    ids = [t.id for t in tracks]
    assert catalog.a.id in ids and catalog.b.id in ids
    assert ids.index(catalog.b.id) < ids.index(catalog.a.id), "newest first"
    by_id = {t.id: t for t in tracks}
    assert by_id[catalog.a.id].album is not None and by_id[catalog.a.id].album.title == ALBUM
    assert len(anon.tracks.list(limit=1)) == 1


def test_list_limit_above_100_is_clamped(anon, catalog) -> None:
    """plyr.fm clamps GET /tracks/?limit= to 1..100 rather than refusing (contract §4.1)."""
    assert catalog.a.id in [t.id for t in anon.tracks.list(limit=150)]


def test_my_tracks(sdk, catalog) -> None:
    mine = {t.id: t for t in sdk.tracks.my()}
    assert {catalog.a.id, catalog.b.id} <= set(mine)
    assert mine[catalog.a.id].title == "Aurora Sdk Song"
    assert mine[catalog.b.id].album is not None and mine[catalog.b.id].album.title == ALBUM
    assert len(sdk.tracks.my(limit=1)) == 1


def test_like_liked_unlike(listener, catalog) -> None:
    """Likes as plyr.fm answers them: idempotent both ways, counted on the track, listed in liked()."""
    b = catalog.b.id
    listener.tracks.like(b)
    assert b in [t.id for t in listener.tracks.liked()]
    assert listener.tracks.get(b).like_count == 1
    listener.tracks.like(b)  # already liked: plyr.fm answers 200 {"liked": true}
    assert listener.tracks.get(b).like_count == 1
    listener.tracks.unlike(b)
    assert b not in [t.id for t in listener.tracks.liked()]
    assert listener.tracks.get(b).like_count == 0
    listener.tracks.unlike(b)  # not liked: plyr.fm answers 200 {"liked": false}


def test_download_is_the_uploaded_file(anon, sdk, catalog, tmp_path, monkeypatch) -> None:
    """GET /audio/{file_id}/download: anyone may download by default (plyr.fm's "open"), and the bytes are the
    original upload's."""
    out = anon.tracks.download(catalog.a.id, tmp_path / "aurora.bin")
    assert sha256(out) == sha256(catalog.a.path)
    # No output path: the SDK names the file after the title and the original's type (the lossless flac).
    monkeypatch.chdir(tmp_path)
    named = sdk.tracks.download(catalog.b.id)
    assert named == Path("Borealis Sdk Song.flac")
    assert sha256(tmp_path / named) == sha256(catalog.b.path)


# ---- editing (TrackPatch) -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def editable(sdk, audio) -> Uploaded:
    return upload(sdk, sound(audio, "cygnus.wav", "wav", 450), "Cygnus Sdk Song", description="cygnus notes")


def test_update_fields_without_image(sdk, node, editable, artist_account) -> None:
    """Without an image the SDK sends application/x-www-form-urlencoded, as plyr.fm's Form() fields take it."""
    patch = TrackPatch(title="Cygnus Renamed", album="SDK Edits", tags=["sdkedited", "sdkmore"],
                       description="new cygnus notes")
    updated = sdk.tracks.update(editable.id, patch)
    for track in (updated, sdk.tracks.get(editable.id)):
        assert track.id == editable.id
        assert track.title == "Cygnus Renamed"
        assert track.album is not None and track.album.title == "SDK Edits"
        assert set(track.tags) == {"sdkedited", "sdkmore"}
        assert track.description == "new cygnus notes"
    detail = album_detail(node, artist_account.handle, "sdk-edits")
    assert [t["id"] for t in detail["tracks"]] == [editable.id]


def test_update_image(sdk, editable, cover) -> None:
    """With an image the SDK sends multipart/form-data; the other fields stay as they were."""
    before = sdk.tracks.get(editable.id)
    assert before.image_url is None
    updated = sdk.tracks.update(editable.id, TrackPatch(image=cover))
    assert updated.image_url
    after = sdk.tracks.get(editable.id)
    assert after.image_url == updated.image_url
    assert (after.title, set(after.tags), after.description) == (before.title, set(before.tags), before.description)
    image = httpx.get(after.image_url, timeout=30)
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_update_features(sdk, node, editable, listener_account) -> None:
    """TrackPatch.features is a JSON list of handles; the node resolves them. The SDK's Track does not model
    `features`, so the answer is read as JSON: plyr.fm's [{did, handle, display_name, avatar_url}]."""
    before = sdk.tracks.get(editable.id)
    updated = sdk.tracks.update(editable.id, TrackPatch(features=json.dumps([listener_account.handle])))
    assert (updated.id, updated.title) == (editable.id, before.title)
    features = httpx.get(f"{node.url}/tracks/{editable.id}", timeout=30).json()["features"]
    assert [(f["did"], f["handle"]) for f in features] == [(listener_account.did, listener_account.handle)]
    assert {"did", "handle", "display_name", "avatar_url"} <= set(features[0])


def test_update_empty_description_clears_it(sdk, editable) -> None:
    assert sdk.tracks.update(editable.id, TrackPatch(description="")).description is None
    assert sdk.tracks.get(editable.id).description is None


def test_update_with_nothing_set_changes_nothing(sdk, editable) -> None:
    """An empty TrackPatch sends a PATCH with no body at all."""
    before = sdk.tracks.get(editable.id)
    after = sdk.tracks.update(editable.id, TrackPatch())
    assert (after.id, after.title, set(after.tags)) == (before.id, before.title, set(before.tags))


# ---- replacing audio, revisions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replaced:
    track: Uploaded
    before: Track  # the track as it was before the replacement
    replacement: Path
    playlist_id: str


@pytest.fixture(scope="module")
def replaced(sdk, listener, node, artist_token, audio) -> Replaced:
    """Track D, liked by the listener and in a playlist, then given new audio with replace_audio()."""
    d = upload(sdk, sound(audio, "draco.mp3", "mp3", 490), "Draco Sdk Song", tags={"sdkdraco"})
    listener.tracks.like(d.id)
    playlist = sdk.playlists.create("SDK Draco Mix")
    add_by_id(node, artist_token, playlist.id, d.id)
    before = sdk.tracks.get(d.id)
    replacement = sound(audio, "draco-v2.flac", "flac", 530)
    result = sdk.tracks.replace_audio(d.id, replacement)
    assert (result.track_id, result.title) == (d.id, "Draco Sdk Song")
    return Replaced(d, before, replacement, playlist.id)


def test_replace_audio_keeps_the_track(sdk, anon, replaced, tmp_path, artist_account) -> None:
    """Same id, title, tags, likes, playlist entry and record URI; new audio (and so a new file id and record CID)."""
    d, before = replaced.track, replaced.before
    after = sdk.tracks.get(d.id)
    assert (after.id, after.title, set(after.tags)) == (d.id, "Draco Sdk Song", {"sdkdraco"})
    assert after.like_count == 1
    assert after.file_id != before.file_id
    assert "flac" in (after.file_type, after.original_file_type)
    assert_record_ref(after, artist_account.did)
    assert after.atproto_uri == before.atproto_uri
    assert after.atproto_cid != before.atproto_cid
    assert [t.id for t in anon.playlists.get(replaced.playlist_id).tracks] == [d.id]
    out = anon.tracks.download(d.id, tmp_path / "draco.bin")
    assert sha256(out) == sha256(replaced.replacement)


def test_revisions_list_the_earlier_audio(sdk, replaced) -> None:
    revisions = sdk.tracks.revisions(replaced.track.id)
    assert len(revisions) == 1
    rev = revisions[0]
    assert isinstance(rev, AudioRevision)
    assert rev.track_id == replaced.track.id
    assert "mp3" in (rev.file_type, rev.original_file_type)
    assert rev.was_gated is False


def test_restore_revision_brings_the_earlier_audio_back(sdk, anon, replaced, tmp_path) -> None:
    d = replaced.track
    (rev,) = sdk.tracks.revisions(d.id)
    new_rev = sdk.tracks.restore_revision(d.id, rev.id)
    # The answer is the new revision holding the audio that was just displaced (the flac).
    assert new_rev.track_id == d.id and new_rev.id != rev.id
    assert "flac" in (new_rev.file_type, new_rev.original_file_type)
    out = anon.tracks.download(d.id, tmp_path / "restored.bin")
    assert sha256(out) == sha256(d.path)
    after = sdk.tracks.get(d.id)
    assert after.file_id == replaced.before.file_id
    assert (after.title, after.like_count, after.atproto_uri) == ("Draco Sdk Song", 1, replaced.before.atproto_uri)
    # plyr.fm consumes the restored revision and lists the displaced audio instead, newest first.
    ids = [r.id for r in sdk.tracks.revisions(d.id)]
    assert ids[0] == new_rev.id and rev.id not in ids


# ---- deleting -----------------------------------------------------------------------------------------------------


def test_delete(sdk, audio) -> None:
    f = upload(sdk, sound(audio, "fornax.mp3", "mp3", 570), "Fornax Sdk Song")
    assert sdk.tracks.get(f.id).title == "Fornax Sdk Song"
    sdk.tracks.delete(f.id)
    with pytest.raises(httpx.HTTPStatusError) as gone:
        sdk.tracks.get(f.id)
    assert status_of(gone) == 404
    assert f.id not in [t.id for t in sdk.tracks.my(limit=100)]


# ---- tags ---------------------------------------------------------------------------------------------------------


def test_tags_list(anon, catalog) -> None:
    tags = {t.name: t.track_count for t in anon.tags.list()}
    assert tags["sdkambient"] == 2 and tags["sdkdrone"] == 1
    assert [t.name for t in anon.tags.list(q="sdkdro")] == ["sdkdrone"]
    assert len(anon.tags.list(limit=1)) == 1


def test_tag_tracks(anon, catalog) -> None:
    tracks = anon.tags.tracks("sdkambient")
    assert {t.id for t in tracks} == {catalog.a.id, catalog.b.id}
    assert all(t.album is not None and t.album.title == ALBUM for t in tracks)
    assert [t.id for t in anon.tags.tracks("sdkdrone")] == [catalog.a.id]
    assert len(anon.tags.tracks("sdkambient", limit=1)) == 1


def test_unknown_tag_is_404(anon) -> None:
    """plyr.fm answers 404 "tag 'x' not found" (contract §4.25)."""
    with pytest.raises(httpx.HTTPStatusError) as missing:
        anon.tags.tracks("sdknosuchtag")
    assert status_of(missing) == 404


# ---- discover -----------------------------------------------------------------------------------------------------


def test_search_tracks(anon, catalog, artist_account) -> None:
    found = anon.discover.search("Aurora", type="tracks")
    hits = [r for r in found.results if r.type == "track"]
    assert catalog.a.id in [h.id for h in hits]
    hit = next(h for h in hits if h.id == catalog.a.id)
    assert hit.title == "Aurora Sdk Song"
    assert hit.artist_handle == artist_account.handle
    assert hit.artist_display_name, "an artist without a display name is shown by handle"
    assert found.counts["tracks"] >= 1


def test_search_everything(anon, catalog, artist_account) -> None:
    """No type: all five kinds in one answer, every item parsed by the SDK's discriminated union."""
    found = anon.discover.search("Borealis")
    assert catalog.b.id in [r.id for r in found.results if r.type == "track"]
    assert {"tracks", "artists", "albums", "tags", "playlists"} <= set(found.counts)


def test_search_tags(anon, catalog) -> None:
    found = anon.discover.search("sdkambient", type="tags")
    tags = {r.name: r for r in found.results if r.type == "tag"}
    assert "sdkambient" in tags
    assert tags["sdkambient"].track_count == 2
    assert isinstance(tags["sdkambient"].id, int)


def test_search_artists(anon, catalog, artist_account) -> None:
    found = anon.discover.search(artist_account.handle.split(".")[0], type="artists")
    artists = {r.did: r for r in found.results if r.type == "artist"}
    assert artist_account.did in artists
    assert artists[artist_account.did].handle == artist_account.handle
    assert artists[artist_account.did].display_name


def test_search_albums(anon, catalog, artist_account) -> None:
    found = anon.discover.search(ALBUM, type="albums")
    albums = [(r.title, r.slug, r.artist_handle) for r in found.results if r.type == "album"]
    assert albums.count((ALBUM, ALBUM_SLUG, artist_account.handle)) == 1, albums
    assert found.counts["albums"] >= 1


def test_top_tracks(anon, a_liked) -> None:
    top = anon.discover.top_tracks()
    by_id = {t.id: t for t in top}
    assert a_liked in by_id
    assert by_id[a_liked].like_count == 1 and by_id[a_liked].title == "Aurora Sdk Song"
    assert by_id[a_liked].album is not None and by_id[a_liked].album.title == ALBUM


def test_top_tracks_limit_is_clamped(anon, a_liked) -> None:
    """plyr.fm clamps GET /tracks/top?limit= to 1..50 (contract item 5)."""
    assert a_liked in [t.id for t in anon.discover.top_tracks(limit=60)]
    assert len(anon.discover.top_tracks(limit=1)) == 1


# ---- playlists ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playlist_id(sdk) -> str:
    playlist = sdk.playlists.create("SDK Road Trip")
    assert playlist.name == "SDK Road Trip" and playlist.track_count == 0
    return playlist.id


def test_playlist_create_and_list(sdk, playlist_id, artist_account) -> None:
    mine = {p.id: p for p in sdk.playlists.list()}
    assert mine[playlist_id].name == "SDK Road Trip"
    assert mine[playlist_id].owner_did == artist_account.did
    assert mine[playlist_id].owner_handle == artist_account.handle


def test_playlist_add_get_remove(sdk, anon, playlist_id, catalog) -> None:
    assert sdk.playlists.add_track(playlist_id, catalog.a.id).track_count == 1
    b_uri = sdk.tracks.get(catalog.b.id).atproto_uri
    assert b_uri is not None
    assert sdk.playlists.add_track(playlist_id, b_uri).track_count == 2  # a TrackRef may be the record's URI
    full = anon.playlists.get(playlist_id)
    assert full.name == "SDK Road Trip" and full.track_count == 2
    assert [(t.id, t.title) for t in full.tracks] == [(catalog.a.id, "Aurora Sdk Song"),
                                                       (catalog.b.id, "Borealis Sdk Song")]
    assert all(t.album is not None and t.album.title == ALBUM for t in full.tracks)
    assert sdk.playlists.remove_track(playlist_id, catalog.a.id).track_count == 1
    assert [t.id for t in anon.playlists.get(playlist_id).tracks] == [catalog.b.id]


def test_playlist_update_and_by_artist(sdk, anon, playlist_id, artist_account) -> None:
    updated = sdk.playlists.update(playlist_id, name="SDK Road Trip 2", show_on_profile=True)
    assert (updated.id, updated.name, updated.show_on_profile) == (playlist_id, "SDK Road Trip 2", True)
    assert playlist_id in [p.id for p in anon.playlists.by_artist(artist_account.did)]
    assert anon.playlists.get(playlist_id).name == "SDK Road Trip 2"
    hidden = sdk.playlists.update(playlist_id, show_on_profile=False)
    assert (hidden.name, hidden.show_on_profile) == ("SDK Road Trip 2", False)
    assert playlist_id not in [p.id for p in anon.playlists.by_artist(artist_account.did)]


def test_playlist_recommendations(sdk, node, artist_token, catalog, artist_account) -> None:
    """Tracks like the playlist's (the search index's similar tracks), never the playlist's own: a playlist holding
    B is recommended A, which shares B's album, tag and title words."""
    playlist = sdk.playlists.create("SDK Recommend Me")
    add_by_id(node, artist_token, playlist.id, catalog.b.id)
    recs = sdk.playlists.recommendations(playlist.id, limit=5)
    assert recs.available is True
    ids = [t.id for t in recs.tracks]
    assert catalog.a.id in ids and catalog.b.id not in ids
    assert len(ids) <= 5
    a = next(t for t in recs.tracks if t.id == catalog.a.id)
    assert (a.title, a.artist_handle) == ("Aurora Sdk Song", artist_account.handle)
    assert a.artist_display_name
    assert len(sdk.playlists.recommendations(playlist.id, limit=1).tracks) == 1
    sdk.playlists.delete(playlist.id)


def test_playlist_delete(sdk, anon) -> None:
    playlist = sdk.playlists.create("SDK Short Lived")
    sdk.playlists.delete(playlist.id)
    assert playlist.id not in [p.id for p in sdk.playlists.list()]
    with pytest.raises(httpx.HTTPStatusError) as gone:
        anon.playlists.get(playlist.id)
    assert status_of(gone) == 404


# ---- artist profile -----------------------------------------------------------------------------------------------
# The listener's profile is the one edited, so the artist keeps no display name (search falls back to the handle).


def test_artist_me(listener, listener_account) -> None:
    profile = listener.artists.me()
    assert (profile.did, profile.handle) == (listener_account.did, listener_account.handle)


def test_artist_update_bio_and_display_name(listener, listener_account) -> None:
    updated = listener.artists.update(ArtistProfilePatch(bio="sdk bio", display_name="SDK Listener"))
    assert (updated.did, updated.bio, updated.display_name) == (listener_account.did, "sdk bio", "SDK Listener")
    again = listener.artists.me()
    assert (again.bio, again.display_name) == ("sdk bio", "SDK Listener")


def test_artist_update_support_url_and_liked_on_profile(listener) -> None:
    patch = ArtistProfilePatch(support_url="https://ko-fi.com/sdklistener", show_liked_on_profile=True)
    updated = listener.artists.update(patch)
    assert (updated.support_url, updated.show_liked_on_profile) == ("https://ko-fi.com/sdklistener", True)
    again = listener.artists.me()
    assert (again.support_url, again.show_liked_on_profile) == ("https://ko-fi.com/sdklistener", True)
    off = listener.artists.update(ArtistProfilePatch(show_liked_on_profile=False))
    assert (off.support_url, off.show_liked_on_profile) == ("https://ko-fi.com/sdklistener", False)


# ---- AsyncPlyrClient ----------------------------------------------------------------------------------------------


async def test_async_get_list_and_search(node, artist_token, catalog) -> None:
    async with async_client(node, artist_token) as ac:
        a = await ac.tracks.get(catalog.a.id)
        assert a.title == "Aurora Sdk Song" and a.album is not None and a.album.title == ALBUM
        assert catalog.a.id in [t.id for t in await ac.tracks.list(limit=50)]
        found = await ac.discover.search("Aurora", type="tracks")
        assert catalog.a.id in [r.id for r in found.results if r.type == "track"]


async def test_async_upload(node, artist_token, audio, sdk) -> None:
    path = sound(audio, "hydra.mp3", "mp3", 610)
    async with async_client(node, artist_token) as ac:
        result = await ac.tracks.upload(path, "Hydra Sdk Song", album="SDK Async Album", tags={"sdkasync"})
        assert result.title == "Hydra Sdk Song"
        track = await ac.tracks.get(result.track_id)
    assert track.title == "Hydra Sdk Song" and track.tags == ["sdkasync"]
    assert track.album is not None and track.album.title == "SDK Async Album"
    out = sdk.tracks.download(result.track_id, audio / "hydra.bin")
    assert sha256(out) == sha256(path)


# ---- the CLI ------------------------------------------------------------------------------------------------------


def run_cli(node: ServedNode, token: str | None, *args: str, stdin: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m plyrfm.cli ARGS` as a user runs it: configured by PLYR_API_URL and PLYR_TOKEN only."""
    env = {k: v for k, v in clean_env(PLYR_API_URL=node.url, COLUMNS="300", NO_COLOR="1").items()
           if k != "PLYR_TOKEN"}
    if token is not None:
        env["PLYR_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "plyrfm.cli", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, cwd=cwd or node.data.parent)


def cli_ok(node: ServedNode, token: str | None, *args: str, stdin: str | None = None,
           cwd: Path | None = None) -> str:
    done = run_cli(node, token, *args, stdin=stdin, cwd=cwd)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"plyrfm {' '.join(args)} exited {done.returncode}:\n{out[-4000:]}"
    return out


def test_cli_me(node, artist_token, artist_account) -> None:
    out = cli_ok(node, artist_token, "me")
    assert f"did: {artist_account.did}" in out and f"handle: {artist_account.handle}" in out


def test_cli_without_token(node) -> None:
    done = run_cli(node, None, "tracks", "my")
    assert done.returncode == 1 and "authentication required" in done.stdout


def test_cli_unknown_track_is_not_found(node) -> None:
    done = run_cli(node, None, "tracks", "get", "987654321")
    assert done.returncode == 1 and "track not found" in done.stdout


@dataclass(frozen=True)
class CliTrack:
    id: int
    path: Path


@pytest.fixture(scope="module")
def cli_track(node, artist_token, audio) -> CliTrack:
    path = sound(audio, "lyra.mp3", "mp3", 650)
    out = cli_ok(node, artist_token, "tracks", "upload", str(path), "Lyra Cli Song", "--album", "SDK Cli Album",
                 "--tag", "sdkcli", "--tag", "sdkcli2", "--description", "cli notes",
                 "--publishing", '{"access": {"visibility": "public", "downloads": "open"}}')
    m = re.search(r"uploaded: track (\d+)", out)
    assert m, out
    return CliTrack(int(m.group(1)), path)


def test_cli_tracks_upload(sdk, cli_track) -> None:
    track = sdk.tracks.get(cli_track.id)
    assert track.title == "Lyra Cli Song" and set(track.tags) == {"sdkcli", "sdkcli2"}
    assert track.description == "cli notes" and track.visibility == "public"
    assert track.album is not None and track.album.title == "SDK Cli Album"


def test_cli_tracks_list(node, catalog) -> None:
    out = cli_ok(node, None, "tracks", "list", "--limit", "50")
    assert re.search(rf"\b{catalog.a.id}\b.*Aurora Sdk Song", out), out
    assert re.search(rf"\b{catalog.b.id}\b.*Borealis Sdk Song", out), out


def test_cli_tracks_get(node, sdk, catalog) -> None:
    out = cli_ok(node, None, "tracks", "get", str(catalog.a.id))
    assert "Aurora Sdk Song by" in out and f"id: {catalog.a.id}" in out
    assert f"album: {ALBUM}" in out and "sdkambient" in out and "sdkdrone" in out
    uri = sdk.tracks.get(catalog.a.id).atproto_uri
    assert uri and f"uri: {uri}" in out
    by_uri = cli_ok(node, None, "tracks", "get", uri)
    assert "Aurora Sdk Song by" in by_uri and f"id: {catalog.a.id}" in by_uri


def test_cli_tracks_my(node, artist_token, catalog) -> None:
    out = cli_ok(node, artist_token, "tracks", "my", "--limit", "50")
    assert re.search(rf"\b{catalog.a.id}\b.*Aurora Sdk Song.*{ALBUM}", out), out


def test_cli_like_liked_unlike(node, artist_token, cli_track) -> None:
    assert f"liked track {cli_track.id}" in cli_ok(node, artist_token, "tracks", "like", str(cli_track.id))
    liked = cli_ok(node, artist_token, "tracks", "liked")
    assert re.search(rf"\b{cli_track.id}\b.*Lyra Cli Song", liked), liked
    assert f"unliked track {cli_track.id}" in cli_ok(node, artist_token, "tracks", "unlike", str(cli_track.id))
    assert "Lyra Cli Song" not in cli_ok(node, artist_token, "tracks", "liked")


def test_cli_tracks_download(node, cli_track, tmp_path) -> None:
    out = cli_ok(node, None, "tracks", "download", str(cli_track.id), "-o", str(tmp_path / "lyra.mp3"))
    assert "saved:" in out
    assert sha256(tmp_path / "lyra.mp3") == sha256(cli_track.path)


def test_cli_tracks_update(node, artist_token, sdk, cli_track) -> None:
    out = cli_ok(node, artist_token, "tracks", "update", str(cli_track.id), "--title", "Lyra Renamed",
                 "--tags", "sdkcli, sdkcli3", "--album", "SDK Cli Album 2", "--description", "cli notes 2")
    assert "updated: Lyra Renamed" in out and "sdkcli3" in out
    track = sdk.tracks.get(cli_track.id)
    assert (track.title, set(track.tags), track.description) == ("Lyra Renamed", {"sdkcli", "sdkcli3"},
                                                                  "cli notes 2")
    assert track.album is not None and track.album.title == "SDK Cli Album 2"


def test_cli_tracks_update_image(node, artist_token, sdk, cli_track, cover) -> None:
    before = sdk.tracks.get(cli_track.id)
    out = cli_ok(node, artist_token, "tracks", "update", str(cli_track.id), "--image", str(cover))
    assert f"updated: {before.title}" in out
    assert sdk.tracks.get(cli_track.id).image_url


def test_cli_replace_audio_revisions_restore(node, artist_token, sdk, cli_track, audio, tmp_path) -> None:
    replacement = sound(audio, "lyra-v2.flac", "flac", 690)
    out = cli_ok(node, artist_token, "tracks", "replace-audio", str(cli_track.id), str(replacement))
    assert f"replaced audio: track {cli_track.id}" in out
    cli_ok(node, None, "tracks", "download", str(cli_track.id), "-o", str(tmp_path / "v2.bin"))
    assert sha256(tmp_path / "v2.bin") == sha256(replacement)

    (rev,) = sdk.tracks.revisions(cli_track.id)
    listing = cli_ok(node, artist_token, "tracks", "revisions", str(cli_track.id))
    assert f"audio revisions for track {cli_track.id}" in listing
    assert re.search(rf"\b{rev.id}\b.*{re.escape(rev.created_at.isoformat())}", listing), listing

    restored = cli_ok(node, artist_token, "tracks", "restore-revision", str(cli_track.id), str(rev.id), "--yes")
    m = re.search(rf"restored revision {rev.id}; previous audio saved as revision (\d+)", restored)
    assert m, restored
    assert int(m.group(1)) in [r.id for r in sdk.tracks.revisions(cli_track.id)]
    cli_ok(node, None, "tracks", "download", str(cli_track.id), "-o", str(tmp_path / "v1.bin"))
    assert sha256(tmp_path / "v1.bin") == sha256(cli_track.path)


def test_cli_tracks_delete(node, artist_token, sdk, cli_track) -> None:
    title = sdk.tracks.get(cli_track.id).title
    asked = cli_ok(node, artist_token, "tracks", "delete", str(cli_track.id), stdin="n\n")
    assert "cancelled" in asked
    assert sdk.tracks.get(cli_track.id).id == cli_track.id
    out = cli_ok(node, artist_token, "tracks", "delete", str(cli_track.id), "--yes")
    assert f"deleted: {title}" in out
    with pytest.raises(httpx.HTTPStatusError) as gone:
        sdk.tracks.get(cli_track.id)
    assert status_of(gone) == 404


@pytest.fixture(scope="module")
def cli_playlist(node, artist_token) -> str:
    out = cli_ok(node, artist_token, "playlists", "create", "SDK Cli Mix")
    m = re.search(r"created: SDK Cli Mix \(([0-9a-f-]{36})\)", out)
    assert m, out
    return m.group(1)


def test_cli_playlists_create_and_list(node, artist_token, sdk, cli_playlist) -> None:
    assert sdk.playlists.get(cli_playlist).name == "SDK Cli Mix"
    out = cli_ok(node, artist_token, "playlists", "list")
    assert re.search(rf"{cli_playlist}.*SDK Cli Mix", out), out


def test_cli_playlists_add_get_remove(node, artist_token, sdk, cli_playlist, catalog) -> None:
    added = cli_ok(node, artist_token, "playlists", "add-track", cli_playlist, str(catalog.a.id))
    assert "added track to SDK Cli Mix (1 tracks)" in added
    shown = cli_ok(node, None, "playlists", "get", cli_playlist)
    assert "SDK Cli Mix by @" in shown and "1 tracks" in shown
    assert re.search(rf"\b{catalog.a.id}\b.*Aurora Sdk Song", shown), shown
    removed = cli_ok(node, artist_token, "playlists", "remove-track", cli_playlist, str(catalog.a.id))
    assert "removed track from SDK Cli Mix (0 tracks)" in removed
    assert sdk.playlists.get(cli_playlist).tracks == []


def test_cli_playlists_update(node, artist_token, sdk, cli_playlist) -> None:
    out = cli_ok(node, artist_token, "playlists", "update", cli_playlist, "--name", "SDK Cli Mix 2",
                 "--show-on-profile")
    assert "updated: SDK Cli Mix 2" in out
    playlist = sdk.playlists.get(cli_playlist)
    assert (playlist.name, playlist.show_on_profile) == ("SDK Cli Mix 2", True)


def test_cli_playlists_delete(node, artist_token, sdk) -> None:
    """Without --yes the CLI shows the playlist (GET) and asks first."""
    playlist = sdk.playlists.create("SDK Cli Doomed")
    out = cli_ok(node, artist_token, "playlists", "delete", playlist.id, stdin="y\n")
    assert "delete 'SDK Cli Doomed' (0 tracks)?" in out and "deleted" in out
    assert playlist.id not in [p.id for p in sdk.playlists.list()]


def test_cli_tags(node, catalog) -> None:
    listed = cli_ok(node, None, "tags", "list")
    assert re.search(r"#sdkambient\s.*\b2\b", listed), listed
    prefixed = cli_ok(node, None, "tags", "list", "--q", "sdkdro")
    assert "#sdkdrone" in prefixed and "#sdkambient" not in prefixed
    tagged = cli_ok(node, None, "tags", "get", "sdkambient")
    assert "tracks tagged #sdkambient" in tagged
    assert "Aurora Sdk Song" in tagged and "Borealis Sdk Song" in tagged


def test_cli_artists_me_and_update(node, listener_token, listener_account) -> None:
    out = cli_ok(node, listener_token, "artists", "update", "--bio", "cli bio", "--display-name", "Cli Listener")
    assert "updated profile" in out and "display_name: Cli Listener" in out and "bio: cli bio" in out
    me = cli_ok(node, listener_token, "artists", "me")
    assert f"handle: {listener_account.handle}" in me
    assert "display_name: Cli Listener" in me and "bio: cli bio" in me


def test_cli_artists_update_support_url(node, listener_token) -> None:
    out = cli_ok(node, listener_token, "artists", "update", "--support-url", "https://ko-fi.com/clilistener",
                 "--show-liked-on-profile")
    assert "updated profile" in out
    me = cli_ok(node, listener_token, "artists", "me")
    assert "support_url: https://ko-fi.com/clilistener" in me


def test_cli_discover_search(node, catalog) -> None:
    tracks = cli_ok(node, None, "discover", "search", "Aurora")
    assert f"track {catalog.a.id}: Aurora Sdk Song by" in tracks
    tags = cli_ok(node, None, "discover", "search", "sdkambient", "--type", "tags")
    assert "tag #sdkambient (2 tracks)" in tags


def test_cli_discover_top(node, a_liked) -> None:
    out = cli_ok(node, None, "discover", "top")
    assert re.search(rf"\b{a_liked}\b.*Aurora Sdk Song.*\b1\b", out), out
