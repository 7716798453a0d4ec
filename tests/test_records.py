"""Records plyrd writes: the lexicon validator rule by rule, TIDs, CIDs computed locally and checked against the real
PDS, and every builder's output written to the PDS and read back unchanged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pds_harness import Account

from plyrd.atproto import cbor, lexicon, tids
from plyrd.atproto import records as r
from plyrd.atproto.lexicon import RecordInvalid, validate, validate_value
from plyrd.atproto.xrpc import PasswordSession, PasswordTokens
from plyrd.errors import InvalidInput
from plyrd.network import share

DID = "did:plc:abcdefghijklmnopqrstuvwx"
TRACK_URI = f"at://{DID}/fm.plyr.track/3kabcdefghij2"
TRACK_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
WHEN = datetime(2026, 8, 20, 12, 34, 56, 789000, tzinfo=UTC)
AUDIO_SHA = hashlib.sha256(b"audio").hexdigest()


def track(**over: Any) -> dict[str, Any]:
    record = r.track_record(
        title="Night Drive", artist="Ada", file_type="flac", created_at=WHEN, audio_url="https://music.example/a/1",
        audio_blob=cbor.blob_ref(AUDIO_SHA, "audio/flac", 5), album="Roads", duration=215,
        features=[{"did": "did:plc:feat1234567890abcdefghij", "handle": "feat.test", "displayName": "Feat"}],
        image_url="https://music.example/i/1.webp", description="notes", labels=["graphic-media"],
    )
    record.update(over)
    return record


def rejected(collection: str, record: dict[str, Any]) -> RecordInvalid:
    with pytest.raises(RecordInvalid) as info:
        validate(collection, record)
    assert isinstance(info.value, InvalidInput)  # handlers map it to a 400 like any bad input
    return info.value


def like(**over: Any) -> dict[str, Any]:
    return {**r.like_record(TRACK_URI, TRACK_CID, WHEN), **over}


# --------------------------------------------------------------------------- validator, rule by rule


def test_every_builder_validates() -> None:
    play = r.teal_play_record(track_name="Night Drive", artists=["Ada", "Bo"], played_time=WHEN,
                              music_service_uri="https://music.example", duration=215.4, release_name="Roads",
                              origin_uri="https://music.example/track/1")
    built = {
        "fm.plyr.track": track(),
        "fm.plyr.like": like(),
        "fm.plyr.comment": r.comment_record(r.strong_ref(TRACK_URI, TRACK_CID), "nice", 61_000, WHEN, WHEN),
        "fm.plyr.list": r.list_record("playlist", "Mix", [r.strong_ref(TRACK_URI, TRACK_CID)] * 3, WHEN, WHEN),
        "fm.plyr.actor.profile": r.profile_record(created_at=WHEN, bio="hi", avatar="https://x.example/a.png"),
        "fm.teal.feed.play": play,
        "fm.teal.actor.status": r.teal_status_record(item=play, time=WHEN),
        "app.bsky.feed.post": share.post_record(
            share.Draft(1, "hi https://x.example/a", "https://music.example/track/1", "Night Drive", "Ada — Night",
                        None), thumb=None, created_at=WHEN),
    }
    assert sorted(built) == lexicon.record_collections()
    for collection, record in built.items():
        assert record["$type"] == collection
        validate(collection, record)
    assert play["duration"] == 215 and play["playedTime"] == "2026-08-20T12:34:56.789Z"
    status = built["fm.teal.actor.status"]
    assert status["expiry"] == "2026-08-20T12:44:56.789Z" and "$type" not in status["item"]
    # A minimal track: only what the lexicon requires plus one way to play it.
    minimal = r.track_record(title="T", artist="A", file_type="mp3", created_at=WHEN, audio_url="https://x.example/")
    assert set(minimal) == {"$type", "title", "artist", "fileType", "createdAt", "audioUrl"}


def test_required_and_type() -> None:
    rec = track()
    del rec["title"]
    e = rejected("fm.plyr.track", rec)
    assert (e.path, e.rule) == ("$.title", "required")
    assert "$.title" in e.detail and "required" in e.detail
    assert rejected("fm.plyr.track", track(title=None)).rule == "required"
    assert rejected("fm.plyr.track", track(title=7)).rule == "type"
    assert rejected("fm.plyr.track", track(duration="12")).rule == "type"
    assert rejected("fm.plyr.track", track(duration=True)).rule == "type"  # a bool is not an integer
    assert rejected("fm.plyr.track", track(features={"did": DID})).rule == "type"  # array
    assert rejected("fm.plyr.track", track(supportGate="any")).rule == "type"  # object behind a ref
    e = rejected("fm.plyr.track", track(duration=1.5))
    assert (e.path, e.rule) == ("$.duration", "data")  # floats are not in the atproto data model at all
    validate("fm.plyr.track", track(duration=2**53 - 1))
    assert rejected("fm.plyr.track", track(duration=2**53)).rule == "data"  # beyond what JavaScript (the PDS) reads
    assert rejected("fm.plyr.like", like(subject={"uri": TRACK_URI})).path == "$.subject.cid"
    assert rejected("fm.plyr.like", {**like(), "$type": "fm.plyr.track"}).rule == "$type"
    with pytest.raises(InvalidInput, match="no record lexicon"):
        validate("com.example.nothing", like())
    with pytest.raises(InvalidInput, match="no record lexicon"):
        validate("com.atproto.repo.strongRef", like())  # a lexicon, but not a record


def test_string_lengths_count_utf8_bytes_and_graphemes() -> None:
    validate("fm.plyr.track", track(title="é" * 128))  # 256 bytes
    e = rejected("fm.plyr.track", track(title="é" * 129))  # 129 characters but 258 bytes
    assert (e.path, e.rule) == ("$.title", "maxLength")
    assert rejected("fm.plyr.track", track(title="")).rule == "minLength"
    assert rejected("fm.plyr.track", track(description="x" * 5001)).rule == "maxLength"
    assert rejected("fm.plyr.comment", r.comment_record(r.strong_ref(TRACK_URI, TRACK_CID), "x", 0, WHEN)
                    | {"text": ""}).rule == "minLength"
    # fm.plyr.list name: at most 256 bytes and 64 graphemes. 64 accented letters written as e + combining accent
    # are 128 code points and 192 bytes but 64 graphemes.
    items = [r.strong_ref(TRACK_URI, TRACK_CID)]
    validate("fm.plyr.list", r.list_record("album", "e\u0301" * 64, items, WHEN))
    e = rejected("fm.plyr.list", {**r.list_record("album", "x", items, WHEN), "name": "é" * 65})  # 130 bytes
    assert (e.path, e.rule) == ("$.name", "maxGraphemes")
    assert lexicon.grapheme_count("👩‍👩‍👧‍👦🇫🇷한국어e\u0301\r\n") == 7
    assert lexicon.grapheme_count("\u1100\u1161\u11a8") == 1  # a Hangul syllable from conjoining jamo


def test_arrays_integers_and_blobs() -> None:
    feature = {"did": "did:plc:feat1234567890abcdefghij"}
    validate("fm.plyr.track", track(features=[feature] * 10))
    assert rejected("fm.plyr.track", track(features=[feature] * 11)).rule == "maxLength"
    ref = r.strong_ref(TRACK_URI, TRACK_CID)
    validate("fm.plyr.list", r.list_record("liked", "Liked", [ref] * 500, WHEN))
    assert rejected("fm.plyr.list", {**r.list_record("liked", None, [], WHEN), "items": [{"subject": ref}] * 501}
                    ).rule == "maxLength"
    e = rejected("fm.plyr.track", track(duration=-1))
    assert (e.path, e.rule) == ("$.duration", "minimum")
    assert rejected("fm.plyr.comment", r.comment_record(ref, "x", 0, WHEN) | {"timestampMs": -5}).rule == "minimum"

    blob = cbor.blob_ref(AUDIO_SHA, "audio/mpeg", 104_857_600)
    validate("fm.plyr.track", track(audioBlob=blob))
    e = rejected("fm.plyr.track", track(audioBlob={**blob, "size": 104_857_601}))
    assert (e.path, e.rule) == ("$.audioBlob.size", "maxSize")
    e = rejected("fm.plyr.track", track(audioBlob={**blob, "mimeType": "image/png"}))
    assert (e.path, e.rule) == ("$.audioBlob.mimeType", "accept")
    assert rejected("fm.plyr.track", track(audioBlob={"cid": "x", "mimeType": "audio/mpeg"})).rule == "type"
    assert rejected("fm.plyr.track", track(audioBlob={**blob, "ref": "bafk..."})).rule == "type"
    assert rejected("fm.plyr.track", track(audioBlob={**blob, "ref": {"$link": "nope"}})).rule == "data"


def test_formats() -> None:
    ref = r.strong_ref(TRACK_URI, TRACK_CID)
    for bad in ("2026-08-20 12:34:56Z", "2026-08-20T12:34:56", "2026-08-20T12:34Z", "2026-08-20T12:34:56-00:00",
                "2026-02-30T00:00:00Z", "2026-08-20t12:34:56z", "yesterday"):
        e = rejected("fm.plyr.like", like(createdAt=bad))
        assert (e.path, e.rule) == ("$.createdAt", "format"), bad
    for good in ("2026-08-20T12:34:56Z", "2026-08-20T12:34:56.123456+02:00", "1985-04-12T23:20:50.12Z"):
        validate("fm.plyr.like", like(createdAt=good))
    for bad in ("https://x.example/a", "at://", "at://not a did/fm.plyr.track/x", "at://did:plc:x/not-nsid/x",
                "at://did:plc:x/fm.plyr.track/a/b"):
        e = rejected("fm.plyr.like", like(subject={**ref, "uri": bad}))
        assert (e.path, e.rule) == ("$.subject.uri", "format"), bad
    validate("fm.plyr.like", like(subject={**ref, "uri": "at://ada.test/fm.plyr.track/3kabcdefghij2"}))
    assert rejected("fm.plyr.like", like(subject={**ref, "cid": "not-a-cid"})).rule == "format"
    e = rejected("fm.plyr.track", track(features=[{"did": "plc:abc"}]))
    assert (e.path, e.rule) == ("$.features[0].did", "format")
    e = rejected("fm.plyr.track", track(features=[{"did": DID, "handle": "-bad-.test"}]))
    assert (e.path, e.rule) == ("$.features[0].handle", "format")
    for bad in ("not a uri", "/relative/path", ""):
        assert rejected("fm.plyr.track", track(audioUrl=bad)).rule == "format", bad
    validate("fm.plyr.track", track(audioUrl="http://127.0.0.1:8080/audio/1"))
    lang = {"type": "string", "format": "language"}
    for good in ("en", "pt-BR", "zh-Hant-TW", "i-klingon"):
        validate_value(lang, good)
    for bad in ("english!", "e", "en_US"):
        with pytest.raises(RecordInvalid):
            validate_value(lang, bad)


def test_refs_unions_and_other_types() -> None:
    # Local refs (#featuredArtist, #item, #selfLabel) and cross-lexicon refs (strongRef, teal defs) both resolve.
    items = [{"subject": {"uri": TRACK_URI, "cid": "bad"}}]
    e = rejected("fm.plyr.list", {**r.list_record("album", "A", [], WHEN), "items": items})
    assert e.path == "$.items[0].subject.cid"
    play = r.teal_play_record(track_name="T", artists=["A"], played_time=WHEN, music_service_uri="https://x.example")
    e = rejected("fm.teal.feed.play", {**play, "artists": [{"artistName": ""}]})
    assert (e.path, e.rule) == ("$.artists[0].artistName", "minLength")
    e = rejected("fm.teal.actor.status", {**r.teal_status_record(item=play, time=WHEN), "item": {"trackName": "T"}})
    assert (e.path, e.rule) == ("$.item.artists", "required")
    assert rejected("fm.plyr.track", track(supportGate={})).path == "$.supportGate.type"
    validate("fm.plyr.track", track(supportGate={"type": "copyright"}))  # knownValues is an open set

    # Unions: a member must name its $type; known members are checked; an open union lets unknown ones through.
    e = rejected("fm.plyr.track", track(labels={"values": []}))
    assert (e.path, e.rule) == ("$.labels.$type", "union")
    e = rejected("fm.plyr.track", track(labels={"$type": "com.atproto.label.defs#selfLabels",
                                                "values": [{"val": "x"}] * 11}))
    assert (e.path, e.rule) == ("$.labels.values", "maxLength")
    e = rejected("fm.plyr.track", track(labels={"$type": "com.atproto.label.defs#selfLabels",
                                                "values": [{"val": "x" * 129}]}))
    assert e.path == "$.labels.values[0].val"
    validate("fm.plyr.track", track(labels={"$type": "com.example.futureLabels", "anything": 1}))
    closed = {"type": "union", "refs": ["com.atproto.repo.strongRef"], "closed": True}
    validate_value(closed, {"$type": "com.atproto.repo.strongRef", "uri": TRACK_URI, "cid": TRACK_CID})
    with pytest.raises(RecordInvalid, match="union"):
        validate_value(closed, {"$type": "com.example.other"})

    # Types none of the shipped records use yet, through one-off schemas.
    validate_value({"type": "boolean"}, True)
    with pytest.raises(RecordInvalid, match=r"\(type\)"):
        validate_value({"type": "boolean"}, 1)
    validate_value({"type": "cid-link"}, {"$link": TRACK_CID})
    with pytest.raises(RecordInvalid):
        validate_value({"type": "cid-link"}, TRACK_CID)
    validate_value({"type": "unknown"}, {"$type": "x.y.z", "a": [1]})
    with pytest.raises(RecordInvalid, match=r"\(type\)"):
        validate_value({"type": "unknown"}, "text")
    validate_value({"type": "bytes", "maxLength": 3}, {"$bytes": "AQID"})
    with pytest.raises(RecordInvalid, match="maxLength"):
        validate_value({"type": "bytes", "maxLength": 2}, {"$bytes": "AQID"})
    validate_value({"type": "string", "enum": ["a", "b"]}, "a")
    with pytest.raises(RecordInvalid, match=r"\(enum\)"):
        validate_value({"type": "string", "enum": ["a", "b"]}, "c")
    with pytest.raises(RecordInvalid, match=r"\(const\)"):
        validate_value({"type": "integer", "const": 3}, 4)
    with pytest.raises(RecordInvalid, match=r"\(maximum\)"):
        validate_value({"type": "integer", "maximum": 3}, 4)


def test_builders_refuse_what_plyrd_never_writes() -> None:
    with pytest.raises(InvalidInput, match="audioUrl or audioBlob"):
        r.track_record(title="T", artist="A", file_type="mp3", created_at=WHEN)
    with pytest.raises(InvalidInput, match="listType"):
        r.list_record("mixtape", "x", [], WHEN)
    with pytest.raises(RecordInvalid):
        r.like_record("https://not-at-uri", TRACK_CID, WHEN)
    with pytest.raises(InvalidInput):
        lexicon.validate_rkey("fm.plyr.like", "self")  # likes are keyed by TID
    with pytest.raises(InvalidInput):
        lexicon.validate_rkey("fm.plyr.actor.profile", tids.new_tid())  # the profile is keyed `self`
    lexicon.validate_rkey("fm.plyr.actor.profile", "self")


# --------------------------------------------------------------------------- TIDs


def test_tids_are_monotonic_and_sort_by_time() -> None:
    made = [tids.new_tid() for _ in range(20_000)]
    assert all(lexicon.is_tid(t) and len(t) == 13 for t in made)
    assert made == sorted(made) and len(set(made)) == len(made)  # strictly increasing, even within a microsecond
    assert abs(tids.tid_time(made[-1]) - datetime.now(UTC)) < timedelta(seconds=5)

    # From a time: deterministic (a retried scrobble lands on the same rkey), exact to the microsecond, ordered.
    assert tids.tid_for_time(WHEN) == tids.tid_for_time(WHEN.astimezone(timezone(timedelta(hours=5))))
    assert tids.tid_time(tids.tid_for_time(WHEN)) == WHEN
    times = [WHEN + timedelta(microseconds=i * 997) for i in range(1000)]
    assert [tids.tid_for_time(t) for t in times] == sorted(tids.tid_for_time(t) for t in times)
    assert tids.tid_for_time(WHEN).endswith("22")  # clock id 0 -> the last two characters encode zero bits
    assert tids.tid_for_time(datetime(1970, 1, 1)) == "2222222222222"
    for good in ("3jzfcijpj2z2a", "7777777777777", "3zzzzzzzzzzzz"):
        assert lexicon.is_tid(good)
    for bad in ("3jzfcijpj2z21", "ojzfcijpj2z2a", "3jzfcijpj2z2", "3JZFCIJPJ2Z2A"):
        assert not lexicon.is_tid(bad)


# --------------------------------------------------------------------------- against the real PDS


@pytest.fixture
async def session(pds, pds_account: Account) -> AsyncIterator[PasswordSession]:
    async with httpx.AsyncClient(timeout=30) as http:
        tokens = PasswordTokens(did=pds_account.did, handle=pds_account.handle, pds_url=pds.pds_url,
                                access_jwt=pds_account.access_jwt, refresh_jwt=pds_account.refresh_jwt)
        yield PasswordSession(http, tokens)


async def test_blob_ref_equals_what_upload_blob_returns(session: PasswordSession) -> None:
    for data, mime in ((os.urandom(300_000), "audio/mpeg"), (b"", "audio/flac"), (b"x" * 10, "audio/wav")):
        uploaded = await session.upload_blob(data, mime)
        assert uploaded == cbor.blob_ref(hashlib.sha256(data).hexdigest(), mime, len(data))


async def test_builders_round_trip_through_the_pds_with_matching_cids(session: PasswordSession) -> None:
    audio = os.urandom(50_000)
    blob = await session.upload_blob(audio, "audio/mpeg")
    local_blob = cbor.blob_ref(hashlib.sha256(audio).hexdigest(), "audio/mpeg", len(audio))
    assert blob == local_blob
    track_rec = r.track_record(
        title="Nuit blanche — 夜 🌙", artist="Ada Ñ", file_type="mp3", created_at=WHEN,
        audio_url="https://music.example/audio/1", audio_blob=local_blob, album="Roads", duration=215,
        features=[{"did": session.did, "handle": "feat.test", "displayName": "F"}],
        image_url="https://music.example/i.webp", support_gate="any", description="line 1\nline 2",
        labels=["graphic-media", "nudity"],
    )
    track_rkey = tids.new_tid()
    put = await session.put_record("fm.plyr.track", track_rkey, track_rec)
    assert put["cid"] == cbor.record_cid(track_rec)
    ref = r.strong_ref(put["uri"], put["cid"])
    play = r.teal_play_record(track_name="Nuit blanche", artists=["Ada"], played_time=WHEN,
                              music_service_uri="https://music.example", duration=215, release_name="Roads",
                              origin_uri="https://music.example/track/1")
    # Edge cases of the encoding: the largest integer, empty strings and arrays, nested objects and links.
    edge_cases = {**r.track_record(title="T", artist="A", file_type="m", created_at=WHEN, audio_url="https://x.example/"),
                  "duration": 2**53 - 1, "album": "", "zz": {"b": [], "a": {"$link": TRACK_CID}}}
    writes = [
        ("fm.plyr.like", tids.new_tid(), r.like_record(ref["uri"], ref["cid"], WHEN)),
        ("fm.plyr.comment", tids.new_tid(), r.comment_record(ref, "at 1:01 ✨", 61_000, WHEN, WHEN)),
        ("fm.plyr.list", tids.new_tid(), r.list_record("album", "Roads", [ref, ref], WHEN)),
        ("fm.plyr.list", tids.new_tid(), r.list_record("liked", None, [], WHEN)),
        ("fm.plyr.actor.profile", "self", r.profile_record(created_at=WHEN, bio="ü" * 256,
                                                           avatar="https://x.example/a.png", updated_at=WHEN)),
        ("fm.teal.feed.play", tids.tid_for_time(WHEN), play),
        ("fm.teal.actor.status", "self", r.teal_status_record(item=play, time=WHEN)),
        ("fm.plyr.track", tids.new_tid(), edge_cases),
    ]
    for collection, rkey, record in writes:
        validate(collection, record)
        answer = await session.put_record(collection, rkey, record)
        assert answer["cid"] == cbor.record_cid(record), collection
        back = await session.get_record(collection, rkey)
        assert back["value"] == record and back["cid"] == answer["cid"], collection
    back = await session.get_record("fm.plyr.track", track_rkey)
    assert back["value"] == track_rec and back["value"]["audioBlob"] == blob
