"""Issue 19: conditional GETs. Public answers that change rarely carry an ETag and answer 304 (no body) to a client
that holds them; a catalog change (or, for the feed, any change to its body) changes the tag; a signed-in caller is
never answered with a 304 of the anonymous answer.

In process (the Quart test client) on a real migrated database; tracks are rows written with SQL, as an upload or an
import leaves them, and the signed-in caller has a real session row made by AuthService."""

from __future__ import annotations

import json
import time
from typing import Any

from test_json_encoding import ARTIST, add_track

from plyrd.catalog import feeds
from plyrd.web import conditional


async def developer_token(app: Any) -> str:
    from plyrd.atproto.xrpc import PasswordTokens

    auth = app.extensions["plyrd"].auth
    did, handle, pds = "did:plc:cheaplistener00000000000", "listener.example.com", "https://pds.example.com"
    creds = PasswordTokens(did=did, handle=handle, pds_url=pds, access_jwt="not-a-jwt", refresh_jwt="not-a-jwt")
    token, _ = await auth._create_session(did=did, handle=handle, pds_url=pds, kind="developer",
                                          auth_type="password", credentials=creds.to_dict(), scope="", name="t",
                                          expires_at=time.time() + 3600)
    return token


async def test_tag_list_and_totals_answer_304_until_the_catalog_changes(app, client) -> None:
    await add_track(app, 1, "one", ["rock", "jazz"], plays=3)
    for path in ("/tracks/tags", "/stats"):
        first = await client.get(path)
        tag = first.headers["ETag"]
        assert first.status_code == 200 and tag and first.headers["Cache-Control"] == "no-cache"
        again = await client.get(path, headers={"If-None-Match": tag})
        assert again.status_code == 304 and await again.get_data() == b"" and again.headers["ETag"] == tag
        # the gzipped answer's weak form of the tag matches too
        assert (await client.get(path, headers={"If-None-Match": f"W/{tag}"})).status_code == 304
        assert (await client.get(path, headers={"If-None-Match": '"something else"'})).status_code == 200

    tags_tag = (await client.get("/tracks/tags")).headers["ETag"]
    stats_tag = (await client.get("/stats")).headers["ETag"]
    assert "Authorization" in (await client.get("/tracks/tags")).headers["Vary"]  # the anonymous answer

    await add_track(app, 2, "two", ["rock"], plays=5)  # a catalog change: both answers change
    r = await client.get("/tracks/tags", headers={"If-None-Match": tags_tag})
    assert r.status_code == 200 and r.headers["ETag"] != tags_tag
    assert {t["name"]: t["track_count"] for t in json.loads(await r.get_data())} == {"rock": 2, "jazz": 1}
    r = await client.get("/stats", headers={"If-None-Match": stats_tag})
    assert r.status_code == 200 and json.loads(await r.get_data())["total_plays"] == 8

    db = app.extensions["plyrd"].db
    stats_tag = r.headers["ETag"]
    await db.execute("UPDATE tracks SET play_count = play_count + 1 WHERE id = 1")  # a play counts too
    r = await client.get("/stats", headers={"If-None-Match": stats_tag})
    assert r.status_code == 200 and json.loads(await r.get_data())["total_plays"] == 9


async def test_a_signed_in_caller_never_gets_the_anonymous_304(app, client) -> None:
    await add_track(app, 1, "one", ["rock"])
    token = await developer_token(app)
    signed_in = {"Authorization": f"Bearer {token}"}
    for path in ("/tracks/tags", "/tracks/?limit=10"):
        anonymous = await client.get(path)
        tag = anonymous.headers["ETag"]
        assert (await client.get(path, headers={"If-None-Match": tag})).status_code == 304
        r = await client.get(path, headers={**signed_in, "If-None-Match": tag})
        assert r.status_code == 200 and await r.get_data() and "ETag" not in r.headers
        assert {"Authorization", "Cookie"} <= set(r.headers["Vary"].replace(" ", "").split(","))
    # /stats is the same for everyone: one shared tag
    tag = (await client.get("/stats")).headers["ETag"]
    assert (await client.get("/stats", headers={**signed_in, "If-None-Match": tag})).status_code == 304


async def test_feed_is_tagged_by_its_body(app, client, monkeypatch) -> None:
    monkeypatch.setattr(conditional, "MOMENT", 600.0)  # a slow machine must not see the kept page expire mid-test
    await add_track(app, 1, "one", ["rock"])
    first = await client.get("/tracks/?limit=10")
    tag = first.headers["ETag"]
    assert (await client.get("/tracks/?limit=10", headers={"If-None-Match": tag})).status_code == 304
    # a like changes the feed's like count without touching the catalog: the anonymous page kept for a moment
    # (conditional.MOMENT) still answers; after it, the body, and so the tag, change
    db = app.extensions["plyrd"].db
    await db.execute("INSERT INTO likes(did, track_id, rkey, position) VALUES (?, 1, ?, 0)", ("did:plc:fan", "3abc"))
    assert (await client.get("/tracks/?limit=10", headers={"If-None-Match": tag})).status_code == 304
    monkeypatch.setattr(conditional, "MOMENT", 0.0)
    r = await client.get("/tracks/?limit=10", headers={"If-None-Match": tag})
    assert r.status_code == 200 and r.headers["ETag"] != tag
    assert json.loads(await r.get_data())["tracks"][0]["like_count"] == 1


async def test_the_anonymous_feed_is_kept_a_moment_but_never_past_a_catalog_change(app, client, monkeypatch) -> None:
    """A crowd of visitors costs one feed page per moment; a track added, taken down or edited shows at once."""
    monkeypatch.setattr(conditional, "MOMENT", 600.0)
    await add_track(app, 1, "one", ["rock"])
    db = app.extensions["plyrd"].db
    made = 0
    read_latest = feeds.read_latest

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return read_latest(*args, **kwargs)

    monkeypatch.setattr(feeds, "read_latest", counting)
    first = json.loads(await (await client.get("/tracks/?limit=10")).get_data())
    for _ in range(5):
        assert json.loads(await (await client.get("/tracks/?limit=10")).get_data()) == first
    assert made == 1
    await db.execute("UPDATE tracks SET taken_down = 'spam', taken_down_at = 1 WHERE id = 1")  # moves the count
    assert json.loads(await (await client.get("/tracks/?limit=10")).get_data())["tracks"] == []
    assert made == 2
    token = await developer_token(app)  # a signed-in caller is never answered from the kept page
    await client.get("/tracks/?limit=10", headers={"Authorization": f"Bearer {token}"})
    assert made == 3


async def test_shared_answers_are_made_once_per_catalog_change(app, client, monkeypatch) -> None:
    from plyrd.catalog import plays

    made = []
    real = plays.node_stats

    async def counted(db: Any) -> dict[str, int]:
        made.append(1)
        return await real(db)

    monkeypatch.setattr(plays, "node_stats", counted)
    await add_track(app, 1, "one", ["rock"], plays=2)
    first, second = await client.get("/stats"), await client.get("/stats")
    assert await first.get_data() == await second.get_data() and first.headers["ETag"] == second.headers["ETag"]
    assert len(made) == 1  # the second caller (no If-None-Match) got the bytes made for the first
    await app.extensions["plyrd"].db.execute("UPDATE tracks SET play_count = 7 WHERE id = 1")
    third = await client.get("/stats")
    assert len(made) == 2 and json.loads(await third.get_data())["total_plays"] == 7


async def test_an_artists_album_list_is_tagged_for_anonymous_callers(app, client) -> None:
    await add_track(app, 1, "one", ["rock"])
    db = app.extensions["plyrd"].db
    await db.execute("INSERT INTO albums(id, artist_did, slug, title) VALUES (?, ?, 'first', 'First')",
                     ("3f2b8c1e-7d4a-4e2b-9c1f-0a1b2c3d4e5f", ARTIST))
    await db.execute("INSERT INTO album_tracks(album_id, track_id, position) VALUES (?, 1, 0)",
                     ("3f2b8c1e-7d4a-4e2b-9c1f-0a1b2c3d4e5f",))
    first = await client.get("/albums/cheap.example.com")
    tag = first.headers["ETag"]
    assert [a["title"] for a in json.loads(await first.get_data())["albums"]] == ["First"]
    assert (await client.get("/albums/cheap.example.com", headers={"If-None-Match": tag})).status_code == 304
    await db.execute("UPDATE albums SET title = 'Renamed'")
    r = await client.get("/albums/cheap.example.com", headers={"If-None-Match": tag})
    assert r.status_code == 200 and [a["title"] for a in json.loads(await r.get_data())["albums"]] == ["Renamed"]
    assert (await client.get("/albums/nobody.example.com")).status_code == 404
