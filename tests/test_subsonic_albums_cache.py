"""Subsonic's album summaries are computed once per catalog change (plyrd.subsonic.snapshot, migration 0030's
`catalog_epoch`), and each album read is one hop to a reader's thread.

The handlers of plyrd.web.subsonic.browsing run on a real migrated database (the `db` fixture: one writer, readers,
as the node opens it); a catalog change is an ordinary write on the node's writer connection, as the node's own code
makes it, and must show in the very next answer: a new track, an album renamed, a play counted, an artist renamed, a
repo gone inactive, a track taken down (its owner still sees it in their album; nobody else does).
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import aiosqlite
import pytest
from werkzeug.datastructures import MultiDict

from plyrd.catalog.tracks import Audience, Where, seen_as_owner, visible
from plyrd.subsonic import snapshot
from plyrd.subsonic.envelope import NOT_FOUND, SubsonicError
from plyrd.web.subsonic import browsing

ALICE, BOB, CAROL = "did:plc:alicealbums", "did:plc:bobalbums", "did:plc:carolalbums"
SHA = "0" * 64


class Caller:
    """A Subsonic caller as the handlers see one (plyrd.web.subsonic.call.Call needs a session and a node)."""

    def __init__(self, db: Any, did: str, *, admin: bool = False) -> None:
        self.db, self.did, self.admin = db, did, admin

    async def call(self, handler: Any, **params: Any) -> dict[str, Any]:
        auth = SimpleNamespace(audience=lambda did, handle: Audience(did, is_admin=self.admin, library=True))
        call = browsing.Call(MultiDict({k: str(v) for k, v in params.items()}),
                             SimpleNamespace(did=self.did, handle=None),  # type: ignore[arg-type]
                             SimpleNamespace(db=self.db, auth=auth))  # type: ignore[arg-type]
        return await handler(call)  # type: ignore[no-any-return]

    async def albums(self, kind: str, **params: Any) -> list[dict[str, Any]]:
        found = await self.call(browsing.get_album_list2, type=kind, size=500, **params)
        return found["albumList2"]["album"]

    async def album(self, sid: str) -> dict[str, Any]:
        return (await self.call(browsing.get_album, id=sid))["album"]


async def add_user(db: Any, did: str, name: str) -> None:
    async with db.write() as conn:
        await conn.execute("INSERT INTO users(did, handle, display_name) VALUES (?, ?, ?)",
                           (did, name.lower() + ".test", name))


async def add_track(db: Any, did: str, title: str, *, album: str | None = None, at: float = 1.7e9,
                    tags: tuple[str, ...] = ()) -> int:
    async with db.write() as conn:
        cur = await conn.execute(
            "INSERT INTO tracks(artist_did, title, album, tags, original_sha, original_ext, original_mime, container,"
            " codec, duration, sample_rate, channels, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'mp3', 'audio/mpeg', 'mp3', 'mp3', 180, 44100, 2, 'ready', ?)",
            (did, title, album, json.dumps(list(tags)), SHA, at))
        track_id = cur.lastrowid
        await conn.executemany("INSERT INTO track_tags(tag, track_id) VALUES (?, ?)", [(t, track_id) for t in tags])
    assert track_id is not None
    return track_id


async def add_album(db: Any, did: str, title: str, tracks: list[int], at: float = 1.7e9) -> str:
    album_id = str(uuid.uuid4())
    async with db.write() as conn:
        await conn.execute("INSERT INTO albums(id, artist_did, slug, title, created_at) VALUES (?, ?, ?, ?, ?)",
                           (album_id, did, title.lower(), title, at))
        await conn.executemany("INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, ?, ?)",
                               [(album_id, i, t) for i, t in enumerate(tracks)])
    return f"al-{album_id}"


async def write(db: Any, sql: str, *params: Any) -> None:
    async with db.write() as conn:
        await conn.execute(sql, params)


@pytest.fixture
async def world(db: Any) -> dict[str, Any]:
    for did, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")):
        await add_user(db, did, name)
    first = [await add_track(db, ALICE, f"Blue {i}", at=1.7e9 + i, tags=("rock",)) for i in range(3)]
    blue = await add_album(db, ALICE, "Blue", first, at=1.7e9)
    single = await add_track(db, BOB, "Alone", at=1.7e9 + 50, tags=("jazz",))
    return {"blue": blue, "blue_tracks": first, "bob_single": single}


def names(albums: list[dict[str, Any]]) -> list[str]:
    return [a["name"] for a in albums]


async def test_each_album_read_is_one_hop(db: Any, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of a request (its music folder, the page, the rows, the caller's stars and likes, hidden tags)
    goes to a reader's thread once: aiosqlite sends each statement or function through Connection._execute."""
    hops: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    alice = Caller(db, ALICE)
    asks: list[tuple[Any, dict[str, Any]]] = [
        *((browsing.get_album_list2, {"type": kind, "size": 10}) for kind in
          ("newest", "alphabeticalByName", "alphabeticalByArtist", "frequent", "random", "recent", "starred",
           "highest")),
        (browsing.get_album_list2, {"type": "byYear", "fromYear": 1990, "toYear": 2030}),
        (browsing.get_album_list2, {"type": "byGenre", "genre": "rock"}),
        (browsing.get_album_list2, {"type": "newest", "musicFolderId": 1}),
        (browsing.get_album_list, {"type": "newest"}),
        (browsing.get_album, {"id": world["blue"]}),
        (browsing.get_random_songs, {"size": 5}),
        (browsing.get_artists, {}),
    ]
    for handler, params in asks * 2:  # the first computes the summaries; the second reuses them
        hops.clear()
        answer = await alice.call(handler, **params)
        assert answer and len(hops) == 1, (handler.__name__, params, hops)


async def test_summaries_are_kept_until_the_catalog_changes(db: Any, world: dict[str, Any]) -> None:
    alice, kept = Caller(db, ALICE), snapshot.of(db)
    assert names(await alice.albums("alphabeticalByName")) == ["Blue", "Singles"]
    built = kept.built
    for kind in ("newest", "alphabeticalByName", "alphabeticalByArtist", "random"):
        await alice.albums(kind)
    await Caller(db, BOB).albums("newest")  # another listener who sees the same tracks shares them
    assert kept.built == built
    await write(db, "UPDATE albums SET title = 'Azure' WHERE id = ?", world["blue"].removeprefix("al-"))
    assert names(await alice.albums("alphabeticalByName")) == ["Azure", "Singles"]
    assert kept.built == built + 1


async def test_every_change_shows_in_the_next_answer(db: Any, world: dict[str, Any]) -> None:
    bob = Caller(db, BOB)
    blue = world["blue"]
    assert (await bob.album(blue))["songCount"] == 3
    assert await bob.albums("frequent") == []

    # a new upload: a new album (its text names one), and more songs on the node's album
    await add_track(db, CAROL, "Green 1", album="Green", at=1.8e9)
    assert names(await bob.albums("newest"))[0] == "Green"
    extra = await add_track(db, ALICE, "Blue 4", at=1.7e9 + 10)
    await write(db, "INSERT INTO album_tracks(album_id, position, track_id) VALUES (?, 3, ?)",
                blue.removeprefix("al-"), extra)
    assert (await bob.album(blue))["songCount"] == 4
    assert [a["songCount"] for a in await bob.albums("newest") if a["id"] == blue] == [4]

    # a play counted (plyrd.catalog.plays adds to tracks.play_count): in once the kept answer is PLAYS_BEHIND old
    await write(db, "UPDATE tracks SET play_count = play_count + 2 WHERE id = ?", world["blue_tracks"][0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "PLAYS_BEHIND", 0.0)
        assert [(a["id"], a["playCount"]) for a in await bob.albums("frequent")] == [(blue, 2)]
        assert (await bob.album(blue))["playCount"] == 2

    # a rename of the artist (a profile refresh)
    await write(db, "UPDATE users SET display_name = 'Alicia' WHERE did = ?", ALICE)
    assert {a["artist"] for a in await bob.albums("newest") if a["artistId"] == f"ar-{ALICE}"} == {"Alicia"}

    # a genre given to a track
    await write(db, "INSERT INTO track_tags(tag, track_id) VALUES ('ambient', ?)", extra)
    assert [a["id"] for a in await bob.albums("byGenre", genre="ambient")] == [blue]

    # the artist's repo goes inactive (users.repo_status): their albums are gone for everyone but admins
    await write(db, "UPDATE users SET repo_status = 'deactivated' WHERE did = ?", ALICE)
    assert blue not in {a["id"] for a in await bob.albums("newest")}
    with pytest.raises(SubsonicError) as raised:
        await bob.album(blue)
    assert raised.value.code == NOT_FOUND
    admin = Caller(db, CAROL, admin=True)
    assert blue in {a["id"] for a in await admin.albums("newest")}
    await write(db, "UPDATE users SET repo_status = NULL WHERE did = ?", ALICE)
    assert blue in {a["id"] for a in await bob.albums("newest")}

    # a track deleted
    await write(db, "DELETE FROM tracks WHERE id = ?", world["bob_single"])
    assert f"al-singles-{BOB}" not in {a["id"] for a in await bob.albums("newest")}
    assert f"tr-{world['bob_single']}" not in {
        s["id"] for s in (await bob.call(browsing.get_random_songs, size=50))["randomSongs"]["song"]}


async def test_a_taken_down_track_stays_in_its_owners_album_only(db: Any, world: dict[str, Any]) -> None:
    alice, bob = Caller(db, ALICE), Caller(db, BOB)
    blue, gone = world["blue"], world["blue_tracks"][1]
    await alice.albums("newest")
    await bob.albums("newest")
    await write(db, "UPDATE tracks SET taken_down = 'spam', taken_down_at = 1 WHERE id = ?", gone)
    assert f"tr-{gone}" in {s["id"] for s in (await alice.album(blue))["song"]}
    assert (await alice.album(blue))["songCount"] == 3
    assert f"tr-{gone}" not in {s["id"] for s in (await bob.album(blue))["song"]}
    assert (await bob.album(blue))["songCount"] == 2
    assert [a["songCount"] for a in await alice.albums("newest") if a["id"] == blue] == [3]
    assert [a["songCount"] for a in await bob.albums("newest") if a["id"] == blue] == [2]
    # nobody discovers it, its owner neither
    for who in (alice, bob):
        songs = (await who.call(browsing.get_random_songs, size=50))["randomSongs"]["song"]
        assert f"tr-{gone}" not in {s["id"] for s in songs}


async def test_hidden_tags_and_likes_are_the_callers_own(db: Any, world: dict[str, Any]) -> None:
    """Random songs leave out the caller's hidden tags (their preference, read with the request), and a song is
    starred for whoever liked it, whatever the shared summaries hold."""
    alice, bob = Caller(db, ALICE), Caller(db, BOB)
    every = {f"tr-{t}" for t in (*world["blue_tracks"], world["bob_single"])}
    assert {s["id"] for s in (await alice.call(browsing.get_random_songs, size=50))["randomSongs"]["song"]} == every
    await write(db, "INSERT INTO preferences(did, prefs) VALUES (?, ?)", BOB, json.dumps({"hidden_tags": ["rock"]}))
    assert {s["id"] for s in (await bob.call(browsing.get_random_songs, size=50))["randomSongs"]["song"]} == {
        f"tr-{world['bob_single']}"}
    assert len((await alice.call(browsing.get_random_songs, size=2))["randomSongs"]["song"]) == 2
    liked = world["blue_tracks"][2]
    await write(db, "INSERT INTO likes(did, track_id, rkey, position) VALUES (?, ?, 'rk1', 0)", BOB, liked)
    starred = {s["id"] for s in (await bob.album(world["blue"]))["song"] if s.get("starred")}
    assert starred == {f"tr-{liked}"}
    assert not [s for s in (await alice.album(world["blue"]))["song"] if s.get("starred")]
    assert [a["id"] for a in await bob.albums("starred")] == [world["blue"]]
    assert await alice.albums("starred") == []


async def test_only_a_tracks_owner_sees_more_than_others(db: Any, world: dict[str, Any]) -> None:
    """`seen_as_owner` is exactly what separates one person's `visible` from another's (plyrd.subsonic.snapshot
    shares answers among people for whom it holds for no track)."""
    await write(db, "UPDATE tracks SET taken_down = 'spam', taken_down_at = 1 WHERE id = ?", world["blue_tracks"][0])
    await write(db, "UPDATE users SET repo_status = 'deactivated' WHERE did = ?", CAROL)
    await add_track(db, CAROL, "Hidden away")

    async def ids(where: Where) -> set[int]:
        return {r["id"] for r in await db.fetchall(f"SELECT t.id FROM tracks t WHERE {where.sql}", where.params)}

    nobody = "did:plc:ownsnothing"
    for admin in (False, True):
        for did in (ALICE, BOB, CAROL):
            someone = Audience(did, is_admin=admin, library=True)
            other = Audience(nobody, is_admin=admin, library=True)
            assert await ids(visible(someone)) - await ids(seen_as_owner(someone)) == await ids(visible(other))
    assert await ids(seen_as_owner(Audience(ALICE, library=True))) == {world["blue_tracks"][0]}


async def test_plays_alone_do_not_rebuild_the_summaries_for_a_minute(db: Any, world: dict[str, Any]) -> None:
    """Every play a player reports adds to a play count; a node where people listen would otherwise rebuild every
    album with each one. A play is counted in once the kept answer is PLAYS_BEHIND seconds old; others at once."""
    bob, kept = Caller(db, BOB), snapshot.of(db)
    blue = world["blue"]
    assert await bob.albums("frequent") == []
    built = kept.built
    for _ in range(3):
        await write(db, "UPDATE tracks SET play_count = play_count + 1 WHERE id = ?", world["blue_tracks"][0])
        assert await bob.albums("frequent") == []  # a minute behind at most
    assert kept.built == built
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "PLAYS_BEHIND", 0.0)  # the minute has passed
        assert [(a["id"], a["playCount"]) for a in await bob.albums("frequent")] == [(blue, 3)]
    assert kept.built == built + 1
    await write(db, "UPDATE tracks SET play_count = play_count + 1 WHERE id = ?", world["blue_tracks"][0])
    await write(db, "UPDATE albums SET title = 'Azure' WHERE id = ?", blue.removeprefix("al-"))  # not a play: at once
    assert [(a["name"], a["playCount"]) for a in await bob.albums("frequent")] == [("Azure", 4)]
