"""Replacing a published track's audio, its revisions, restoring one, and playlist recommendations, through a real
node process, the real PDS and plyr.fm's own SDK (`plyrfm`): the track keeps its id, likes, comments, playlist entries
and record (rewritten with the new blob); earlier audio is kept as revisions (at most 10, the oldest pruned, their
files released only when nothing uses them); a refused replacement leaves no file and no row."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import httpx
from audio_samples import make_audio
from conftest import ServedNode, node_env, node_fixture, start_node
from helpers import Artist, db_rows, records, sign_in, wait_for
from plyrfm import PlyrClient
from plyrfm._internal.types import AudioRevision, PlaylistRecommendations

from plyrd.atproto.cbor import blob_cid

TRACK = "fm.plyr.track"
LIST = "fm.plyr.list"

node = node_fixture("revisions")


# ---- helpers ----------------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_files(node: ServedNode) -> set[str]:
    return {p.name for p in (node.data / "blobs").rglob("*") if p.is_file()}


def call(who: Artist, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return who.http.request(method, path, headers={"X-CSRF-Token": who.csrf, **kwargs.pop("headers", {})}, **kwargs)


def token(node: ServedNode, account: Any) -> str:
    r = httpx.post(node.url + "/auth/app-password", timeout=30, json={
        "handle": account.handle, "app_password": account.password, "token_name": "revisions"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def upload(who: Artist, path: Path, **fields: str) -> int:
    r = who.upload(path, **fields)
    assert r.status_code == 200, r.text
    done = who.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    return int(done["track_id"])


def replace(who: Artist, track_id: int, path: Path, **fields: str) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    return who.http.put(f"/tracks/{track_id}/audio", files=files, data=fields, headers={"X-CSRF-Token": who.csrf},
                        timeout=60)


def replaced(who: Artist, track_id: int, path: Path) -> None:
    """Replace the audio and follow the progress to the end, as the SDK does."""
    r = replace(who, track_id, path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending" and body["track_id"] == track_id
    done = who.wait(body["upload_id"])[-1]
    assert done["status"] == "completed" and done["track_id"] == track_id, done


def published(pds: Any, did: str, check: Any = lambda rec: True) -> dict[str, Any]:
    """The artist's only track record once it passes `check`."""
    def found() -> dict[str, Any] | None:
        recs = records(pds, did, TRACK)
        return recs[0] if len(recs) == 1 and check(recs[0]) else None

    return wait_for(found, 30)


def track_record(pds: Any, did: str, file_id: str) -> dict[str, Any]:
    """The artist's only track record once its audioBlob is this file."""
    return published(pds, did, lambda rec: rec["value"].get("audioBlob", {}).get("ref", {}).get("$link")
                     == blob_cid(file_id))


def revision_count(node: ServedNode, track_id: int) -> int:
    return db_rows(node, "SELECT count(*) FROM track_revisions WHERE track_id = ?", (track_id,))[0][0]


# ---- replacing and restoring ----------------------------------------------------------------------------------


def test_replace_keeps_the_track_its_social_life_and_its_record(node, pds, tmp_path: Path) -> None:
    account, fan_account = pds.create_account("replacer"), pds.create_account("fan")
    artist, fan = sign_in(node.url, account), sign_in(node.url, fan_account)
    assert call(artist, "POST", "/preferences/", json={"allow_comments": True}).status_code == 200
    first = make_audio(tmp_path / "first.mp3", "mp3", seconds=2, frequency=440.0)
    track_id = upload(artist, first, title="to be replaced")
    before = artist.http.get(f"/tracks/{track_id}").json()
    assert before["original_file_id"] == sha(first.read_bytes())
    old_record = track_record(pds, artist.did, before["file_id"])

    # an album of the artist's, and a fan's like, comment and playlist entry
    album = call(artist, "POST", "/albums/", json={"title": "the album"}).json()
    assert call(artist, "POST", f"/albums/{album['id']}/tracks", json={"track_id": track_id}).status_code == 200
    assert call(fan, "POST", f"/tracks/{track_id}/like").status_code == 200
    assert call(fan, "POST", f"/tracks/{track_id}/comments", json={"text": "lovely", "timestamp_ms": 500}
                ).status_code == 200
    playlist = call(fan, "POST", "/lists/playlists", json={"name": "keepers"}).json()
    assert call(fan, "POST", f"/lists/playlists/{playlist['id']}/tracks", json={"track_id": track_id}
                ).status_code == 200

    # new audio that browsers cannot all play: it goes through the upload's rendition step, through plyr.fm's SDK
    second = make_audio(tmp_path / "second.aiff", "aiff", seconds=3, kind="music", frequency=330.0)
    with PlyrClient(token=token(node, account), api_url=node.url) as sdk:
        result = sdk.tracks.replace_audio(track_id, second)
        assert result.track_id == track_id and result.title == "to be replaced"

        after = fan.http.get(f"/tracks/{track_id}").json()
        assert after["id"] == track_id and after["title"] == "to be replaced"
        assert after["original_file_id"] == sha(second.read_bytes()) and after["original_file_type"] == "aiff"
        assert after["file_type"] == "mp3" and after["file_id"] not in (before["file_id"], after["original_file_id"])
        assert abs(after["duration"] - 3) < 0.15 and len(after["peaks"]) == 1000
        assert after["like_count"] == 1 and after["comment_count"] == 1 and after["is_liked"] is True
        assert [u["did"] for u in fan.http.get(f"/tracks/{track_id}/likes").json()["users"]] == [fan.did]
        assert [c["text"] for c in fan.http.get(f"/tracks/{track_id}/comments").json()["comments"]] == ["lovely"]
        in_playlist = fan.http.get(f"/lists/playlists/{playlist['id']}").json()["tracks"]
        assert [(t["id"], t["file_id"]) for t in in_playlist] == [(track_id, after["file_id"])]

        # the same record, rewritten with the new blob; its createdAt kept; the album's strongRef follows it
        new_record = track_record(pds, artist.did, after["file_id"])
        assert new_record["uri"] == old_record["uri"] and new_record["cid"] != old_record["cid"]
        assert new_record["value"]["createdAt"] == old_record["value"]["createdAt"]
        assert new_record["value"]["duration"] == 3
        assert new_record["value"]["audioUrl"] == f"{node.url}/audio/{after['file_id']}"
        blob = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.sync.getBlob",
                         params={"did": artist.did, "cid": blob_cid(after["file_id"])})
        served = artist.http.get(f"/audio/{after['file_id']}")
        assert served.status_code == 200 and sha(served.content) == after["file_id"] == sha(blob.content)
        download = artist.http.get(f"/audio/{after['original_file_id']}/download")
        assert download.status_code == 200 and download.content == second.read_bytes()
        assert artist.http.get(f"/audio/{before['file_id']}").status_code == 404
        (album_uri,), = db_rows(node, "SELECT record_uri FROM albums WHERE id = ?", (album["id"],))
        wait_for(lambda: [r for r in records(pds, artist.did, LIST) if r["uri"] == album_uri
                          and r["value"]["items"][0]["subject"]["cid"] == new_record["cid"]], 30)

        # the old audio is a revision, in the SDK's shape
        revisions = sdk.tracks.revisions(track_id)
        assert len(revisions) == 1
        old = revisions[0]
        assert (old.track_id, old.file_type, old.original_file_type, old.duration, old.was_gated) == (
            track_id, "mp3", "mp3", 2, False)
        raw = artist.http.get(f"/tracks/{track_id}/revisions").json()
        assert raw["track_id"] == track_id and raw["revisions"][0]["original_file_id"] == before["original_file_id"]

        # restoring it brings the old bytes back and keeps the displaced audio as a revision
        snapshot = sdk.tracks.restore_revision(track_id, old.id)
        assert isinstance(snapshot, AudioRevision) and snapshot.id != old.id
        assert (snapshot.file_type, snapshot.original_file_type, snapshot.duration) == ("mp3", "aiff", 3)
        restored = fan.http.get(f"/tracks/{track_id}").json()
        assert restored["original_file_id"] == before["original_file_id"] == restored["file_id"]
        assert sha(fan.http.get(f"/audio/{restored['file_id']}").content) == sha(first.read_bytes())
        assert restored["like_count"] == 1 and restored["comment_count"] == 1
        assert [r.id for r in sdk.tracks.revisions(track_id)] == [snapshot.id]
        back = track_record(pds, artist.did, before["file_id"])
        assert back["uri"] == old_record["uri"] and back["value"]["createdAt"] == old_record["value"]["createdAt"]

    # that revision is gone now; restoring it again is a 404
    assert call(artist, "POST", f"/tracks/{track_id}/revisions/{old.id}/restore").status_code == 404
    assert artist.http.get("/sync/").json()["outbox"]["failed"] == 0


def test_at_most_ten_revisions_and_pruning_releases_only_unused_files(node, pds, tmp_path: Path) -> None:
    artist = sign_in(node.url, pds.create_account("pruner"))
    neighbour = sign_in(node.url, pds.create_account("neighbour"))
    x = make_audio(tmp_path / "x.mp3", "mp3", seconds=1, frequency=200.0)
    track_id = upload(artist, x, title="many versions")
    upload(neighbour, x, title="the same bytes")  # another artist's track holds the same file
    track_record(pds, artist.did, sha(x.read_bytes()))
    ys = [make_audio(tmp_path / f"y{i}.mp3", "mp3", seconds=1, frequency=250.0 + 37 * i) for i in range(1, 13)]
    y_sha = {i: sha(y.read_bytes()) for i, y in enumerate(ys, start=1)}

    for i, y in enumerate(ys[:10], start=1):
        replaced(artist, track_id, y)
        assert revision_count(node, track_id) == i
    # ten revisions: x and y1..y9. The eleventh replacement prunes x, which the neighbour's track still holds.
    replaced(artist, track_id, ys[10])
    assert revision_count(node, track_id) == 10
    listed = artist.http.get(f"/tracks/{track_id}/revisions").json()["revisions"]
    assert [r["original_file_id"] for r in listed] == [y_sha[i] for i in range(10, 0, -1)]
    assert sha(x.read_bytes()) in stored_files(node)
    # the twelfth prunes y1, which nothing else holds: its file goes
    replaced(artist, track_id, ys[11])
    listed = artist.http.get(f"/tracks/{track_id}/revisions").json()["revisions"]
    assert [r["original_file_id"] for r in listed] == [y_sha[i] for i in range(11, 1, -1)]
    files = stored_files(node)
    assert y_sha[1] not in files and not db_rows(node, "SELECT 1 FROM blobs WHERE sha256 = ?", (y_sha[1],))
    assert all(y_sha[i] in files for i in range(2, 13)) and sha(x.read_bytes()) in files
    current = artist.http.get(f"/tracks/{track_id}").json()
    assert current["original_file_id"] == y_sha[12]
    track_record(pds, artist.did, y_sha[12])

    # deleting the track releases its revisions' files too; the neighbour's copy of x stays
    assert call(artist, "DELETE", f"/tracks/{track_id}").status_code == 204
    assert revision_count(node, track_id) == 0
    files = stored_files(node)
    assert not any(y_sha[i] in files for i in range(1, 13)) and sha(x.read_bytes()) in files


def test_refused_replacements_leave_no_file_and_no_row(node, pds, tmp_path: Path) -> None:
    artist = sign_in(node.url, pds.create_account("refuser"))
    stranger = sign_in(node.url, pds.create_account("stranger"))
    mine = make_audio(tmp_path / "mine.mp3", "mp3", seconds=1, frequency=523.0)
    other = make_audio(tmp_path / "other.mp3", "mp3", seconds=1, frequency=587.0)
    track_id = upload(artist, mine, title="mine")
    other_id = upload(artist, other, title="my other")
    wait_for(lambda: len(records(pds, artist.did, TRACK)) == 2, 30)
    fresh = make_audio(tmp_path / "fresh.mp3", "mp3", seconds=1, frequency=659.0)
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio at all\n" * 400)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(make_audio(tmp_path / "whole.flac", "flac", seconds=2).read_bytes()[:300])
    files, uploads = stored_files(node), db_rows(node, "SELECT count(*) FROM uploads")

    def refused(status: int | set[int], r: httpx.Response, words: str) -> None:
        assert r.status_code in ({status} if isinstance(status, int) else status), (r.status_code, r.text)
        assert words in r.json()["detail"], r.text
        assert stored_files(node) == files  # nothing stored stays
        assert db_rows(node, "SELECT count(*) FROM uploads") == uploads
        assert revision_count(node, track_id) == 0

    refused(403, replace(stranger, track_id, fresh), "your own tracks")
    refused(415, replace(artist, track_id, garbage), "")
    refused({415, 422}, replace(artist, track_id, truncated), "")
    refused(409, replace(artist, track_id, mine), "already the track's audio")
    refused(409, replace(artist, track_id, other), f"track {other_id}")
    refused(400, replace(artist, track_id, fresh, title="no"), "title")
    refused(400, artist.http.put(f"/tracks/{track_id}/audio", files={"image": ("c.mp3", fresh.read_bytes())},
                                 headers={"X-CSRF-Token": artist.csrf}), "'file'")
    refused(404, replace(artist, 10**9, fresh), "not found")
    anonymous = httpx.put(f"{node.url}/tracks/{track_id}/audio", files={"file": ("f.mp3", fresh.read_bytes())})
    refused(401, anonymous, "")

    # revisions are their artist's: others get 403, a revision of another track 404
    assert stranger.http.get(f"/tracks/{track_id}/revisions").status_code == 403
    assert httpx.get(f"{node.url}/tracks/{track_id}/revisions").status_code == 401
    assert artist.http.get(f"/tracks/{10**9}/revisions").status_code == 404
    assert call(artist, "POST", f"/tracks/{track_id}/revisions/1/restore").status_code == 404
    assert artist.http.get(f"/tracks/{track_id}").json()["original_file_id"] == sha(mine.read_bytes())


def follow_until(who: Artist, upload_id: str, phase: str) -> None:
    with who.http.stream("GET", f"/tracks/uploads/{upload_id}/progress", timeout=60) as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["phase"] == phase:
                return
    raise AssertionError(f"the replacement never reached {phase}")


def test_a_replacement_survives_a_crash_and_the_track_plays_meanwhile(pds, tmp_path: Path) -> None:
    env = node_env(pds, PLYRD_MEDIA_WORKERS="1")
    served = start_node([], cwd=tmp_path, env=env)
    account = pds.create_account("crashswap")
    artist = sign_in(served.url, account)
    first = make_audio(tmp_path / "first.mp3", "mp3", seconds=1, frequency=440.0)
    track_id = upload(artist, first, title="through a crash")
    # long enough that the rendition is still being made when the node is killed
    long = make_audio(tmp_path / "long.aiff", "aiff", seconds=240, channels=2, kind="music")
    r = replace(artist, track_id, long)
    assert r.status_code == 200, r.text
    upload_id = r.json()["upload_id"]
    follow_until(artist, upload_id, "transcoding")
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)

    port = int(served.url.rsplit(":", 1)[1])
    restarted = start_node([], cwd=tmp_path, env=env, port=port, log_path=tmp_path / "second.log")
    try:
        artist = sign_in(restarted.url, account)
        meanwhile = artist.http.get(f"/tracks/{track_id}").json()  # still the old audio, playable
        assert meanwhile["original_file_id"] == sha(first.read_bytes()) and meanwhile["playable"]
        done = artist.wait(upload_id, timeout=120)[-1]
        assert done["status"] == "completed" and done["track_id"] == track_id, (done, restarted.log())
        after = artist.http.get(f"/tracks/{track_id}").json()
        assert after["original_file_id"] == sha(long.read_bytes()) and after["file_type"] == "mp3"
        assert revision_count(restarted, track_id) == 1
        track_record(pds, account.did, after["file_id"])
        # nothing orphaned: every stored file has its row with a reference, nothing left in tmp/
        rows = dict(db_rows(restarted, "SELECT sha256, refcount FROM blobs"))
        assert stored_files(restarted) == set(rows) and all(count >= 1 for count in rows.values())
        assert not list((restarted.data / "tmp").iterdir())
    finally:
        restarted.stop()


def test_a_replacement_whose_track_is_deleted_meanwhile_fails_and_releases_its_files(node, pds,
                                                                                     tmp_path: Path) -> None:
    artist = sign_in(node.url, pds.create_account("vanisher"))
    first = make_audio(tmp_path / "first.mp3", "mp3", seconds=1, frequency=466.0)
    track_id = upload(artist, first, title="gone soon")
    long = make_audio(tmp_path / "long.aiff", "aiff", seconds=120, channels=2, kind="music", frequency=270.0)
    r = replace(artist, track_id, long)
    assert r.status_code == 200, r.text
    follow_until(artist, r.json()["upload_id"], "transcoding")
    assert call(artist, "DELETE", f"/tracks/{track_id}").status_code == 204
    done = artist.wait(r.json()["upload_id"], timeout=120)[-1]
    assert done["status"] == "failed" and "deleted" in done["error"], done
    files = stored_files(node)
    assert sha(long.read_bytes()) not in files and sha(first.read_bytes()) not in files
    assert db_rows(node, "SELECT blob_refs FROM uploads WHERE id = ?", (r.json()["upload_id"],)) == [("[]",)]
    assert not db_rows(node, "SELECT 1 FROM blobs WHERE refcount = 0")


# ---- recommendations -------------------------------------------------------------------------------------------


def test_playlist_recommendations_are_like_it_and_not_in_it(node, pds, tmp_path: Path) -> None:
    maker = sign_in(node.url, pds.create_account("glacier"))
    listener_account = pds.create_account("curator")
    listener = sign_in(node.url, listener_account)
    nosy = sign_in(node.url, pds.create_account("nosy"))

    def song(title: str, frequency: float, tags: list[str], **fields: str) -> int:
        path = make_audio(tmp_path / f"{title.replace(' ', '_')}.mp3", "mp3", seconds=1, frequency=frequency)
        return upload(maker, path, title=title, tags=json.dumps(tags), **fields)

    one = song("glacier drone one", 300.0, ["ambient", "drone"])
    two = song("glacier drone two", 310.0, ["ambient", "drone"])
    three = song("glacier drone three", 320.0, ["ambient", "drone"])
    four = song("glacier drone four", 330.0, ["ambient", "drone"])
    unlisted = song("glacier drone hidden", 340.0, ["ambient", "drone"], unlisted="true")
    machine = song("glacier drone machine", 350.0, ["ambient", "drone", "ai"])
    wait_for(lambda: len(records(pds, maker.did, TRACK)) == 6, 30)

    playlist = call(listener, "POST", "/lists/playlists", json={"name": "ice"}).json()
    path = f"/lists/playlists/{playlist['id']}/recommendations"
    assert listener.http.get(path).json() == {"tracks": [], "available": False}  # nothing to go on yet
    for track_id in (one, two):
        assert call(listener, "POST", f"/lists/playlists/{playlist['id']}/tracks", json={"track_id": track_id}
                    ).status_code == 200

    with PlyrClient(token=token(node, listener_account), api_url=node.url) as sdk:
        recs = sdk.playlists.recommendations(playlist["id"], limit=10)
        assert isinstance(recs, PlaylistRecommendations) and recs.available
        ids = [t.id for t in recs.tracks]
        assert {three, four} <= set(ids)
        assert not {one, two, unlisted, machine} & set(ids)  # in the playlist, unlisted, or a hidden tag ("ai")
        first = recs.tracks[0]
        assert first.artist_handle and first.artist_display_name and first.title.startswith("glacier")
        assert len(sdk.playlists.recommendations(playlist["id"]).tracks) <= 3  # plyr.fm's default limit
        assert len(sdk.playlists.recommendations(playlist["id"], limit=1).tracks) == 1

    for bad in ("0", "11", "x"):
        assert listener.http.get(path, params={"limit": bad}).status_code == 400
    assert httpx.get(node.url + path).status_code == 401
    assert nosy.http.get(path).status_code == 403  # someone else's playlist
    assert call(listener, "PATCH", f"/lists/playlists/{playlist['id']}", json={"is_private": True}).status_code == 200
    assert nosy.http.get(path).status_code == 404  # a private playlist does not exist for others
    assert {three, four} <= {t["id"] for t in listener.http.get(path, params={"limit": 10}).json()["tracks"]}
