"""Issue 19: JSON answers are written by orjson (jsonify, views returning dicts, the Subsonic envelope), and they mean
what the standard library's meant: the same keys and values, UTF-8 text, Flask's rules for dates and Decimals, and
what orjson refuses (non-str keys, integers beyond 64 bits, lone surrogates) still written.

In process (the Quart test client) on a real migrated database; the track is a row written with SQL, as an upload
or an import leaves it."""

from __future__ import annotations

import datetime
import decimal
import json
import time
from typing import Any

import orjson
import pytest
from quart import jsonify

from plyrd.subsonic import envelope
from plyrd.web import json_provider

ARTIST = "did:plc:cheapartist0000000000000"
PEAKS = json.dumps([round(i / 1000, 3) for i in range(1000)])


async def add_track(app: Any, track_id: int, title: str, tags: list[str], *, plays: int = 0) -> None:
    db = app.extensions["plyrd"].db
    sha = f"{track_id:064x}"
    now = time.time()
    async with db.write() as conn:
        await conn.execute("INSERT OR IGNORE INTO users(did, handle, pds_url) VALUES (?, ?, ?)",
                           (ARTIST, "cheap.example.com", "https://pds.example.com"))
        await conn.execute("INSERT INTO blobs(sha256, size, mime, refcount, created_at, touched_at)"
                           " VALUES (?, 1000, 'audio/mpeg', 1, ?, ?)", (sha, now, now))
        await conn.execute(
            "INSERT INTO tracks(id, artist_did, title, tags, original_sha, original_ext, original_mime, container,"
            " codec, duration, sample_rate, channels, lossless, peaks, status, created_at, updated_at, play_count)"
            " VALUES (?, ?, ?, ?, ?, 'mp3', 'audio/mpeg', 'mp3', 'mp3', 120.5, 44100, 2, 0, ?, 'ready', ?, ?, ?)",
            (track_id, ARTIST, title, json.dumps(tags), sha, PEAKS, now + track_id, now + track_id, plays))
        for tag in tags:
            await conn.execute("INSERT INTO track_tags(tag, track_id) VALUES (?, ?)", (tag, track_id))



async def test_json_answers_are_orjson_and_mean_what_they_meant(app, client) -> None:
    assert isinstance(app.json, json_provider.OrjsonProvider)
    await add_track(app, 1, "Ça va — 日本語 🎵", ["chanson"])
    r = await client.get("/tracks/1")
    body = await r.get_data()
    assert r.status_code == 200 and r.mimetype == "application/json"
    track = json.loads(body)
    assert track["title"] == "Ça va — 日本語 🎵" and "Ça va — 日本語 🎵".encode() in body  # UTF-8, not \u escapes
    assert track["peaks"] == json.loads(PEAKS) and track["duration"] == 120.5 and track["id"] == 1
    assert body == orjson.dumps(track, option=orjson.OPT_APPEND_NEWLINE)  # keys in the order the shaping made them

    # Errors still serialise the same way.
    r = await client.get("/tracks/999")
    assert r.status_code == 404 and set(json.loads(await r.get_data())) == {"detail"}

    async with app.test_request_context("/"):
        when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        value = {"when": when, "price": decimal.Decimal("1.50"), "big": 2**70, "keys": {1: "a", 2: "b"},
                 "float": 0.1, "neg": -3, "text": "ü"}
        got = json.loads(await jsonify(value).get_data())
        # Flask's rules for dates and Decimals; int keys as strings; integers beyond 64 bits exact.
        assert got == {"when": "Fri, 02 Jan 2026 03:04:05 GMT", "price": "1.50", "big": 2**70,
                       "keys": {"1": "a", "2": "b"}, "float": 0.1, "neg": -3, "text": "ü"}
        # A lone surrogate cannot be UTF-8: written escaped, as before, rather than failing the answer.
        assert json.loads(await jsonify({"t": "a\ud800b"}).get_data()) == {"t": "a\ud800b"}
        with pytest.raises(TypeError):
            jsonify({"set": {1, 2}})


def test_subsonic_json_is_orjson_without_nulls() -> None:
    text = envelope.Text("a biography")
    response = envelope.ok({"song": [{"id": "tr-1", "title": "Ça — 日本", "year": None, "genres": [{"name": "x"}],
                                      "replayGain": None, "artist": text, "nested": {"gone": None, "kept": 0}}],
                            "keys": {3: "three"}})
    body = envelope.to_json(response)
    assert "Ça — 日本".encode() in body
    parsed = json.loads(body)["subsonic-response"]
    assert parsed["song"] == [{"id": "tr-1", "title": "Ça — 日本", "genres": [{"name": "x"}], "artist": "a biography",
                               "nested": {"kept": 0}}]
    assert parsed["keys"] == {"3": "three"} and parsed["status"] == "ok"
    assert body.startswith(orjson.dumps({"subsonic-response": {"status": "ok"}})[:-2])
    # what the standard library wrote, parsed, is what orjson writes
    old = json.dumps({"subsonic-response": envelope._strip_none(response)}, ensure_ascii=False).encode()
    assert json.loads(old) == json.loads(body)
