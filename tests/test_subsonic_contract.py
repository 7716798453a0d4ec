"""Every /rest method against OpenSubsonic's OpenAPI description, on a real node with a varied library.

For each method registered in plyrd.web.subsonic (the `@method` registry), SAMPLES holds realistic calls and an error
case or two. Each call is made in JSON (validated against the method's response schema, success or failure envelope)
and in XML (which must carry the same content, tests/subsonic_contract.py). Binary methods (stream, download,
getCoverArt) check their content type on success and the envelope on failure.

A registered method without SAMPLES fails `test_every_method_has_samples`: no method skips the contract. A method
in SAMPLES that is not registered fails too: every method SAMPLES names is one plyrd promises.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_fixture
from subsonic_contract import content_differences, endpoint_names, schema_errors, xml_as_tree
from subsonic_support import Listener, rest_listener

import plyrd.web.subsonic  # noqa: F401  (its area modules fill the registry)
from plyrd.subsonic import envelope
from plyrd.web.subsonic.call import METHODS

node = node_fixture("subsonic-contract")

Param = str | list[str]


@dataclass(frozen=True)
class Sample:
    """One call: `params` are templates filled from the library's ids ("{a1}" -> "tr-12").

    error: the Subsonic error code the call must answer (None: status ok).
    xml: for a call that changes state, the XML call's own params (it makes its own change); the two answers are
      then compared with `volatile` fields (a new id, a timestamp) only required on both sides.
    unordered: the answer's lists are in random order (compared as multisets).
    content_type: for binary methods, what a success must be served as (a prefix).
    """

    params: dict[str, Param] = field(default_factory=dict)
    error: int | None = None
    xml: dict[str, Param] | None = None
    volatile: tuple[str, ...] = ()
    unordered: bool = False
    content_type: str | None = None


NOT_FOUND, MISSING, NOT_AUTHORIZED = 70, 10, 50
UNKNOWN_SONG = {"id": "tr-999999"}
BINARY = {"stream", "download", "getcoverart"}
RANDOM = {"unordered": True}

# Method -> calls, in the order they run (state-changing calls come before the reads that show their effect).
SAMPLES: dict[str, list[Sample]] = {
    # system
    "ping": [Sample()],
    "getLicense": [Sample()],
    "getMusicFolders": [Sample()],
    "getOpenSubsonicExtensions": [Sample()],
    "getUser": [Sample({"username": "{alice_handle}"})],
    "getScanStatus": [Sample()],
    "startScan": [Sample(error=NOT_AUTHORIZED)],  # alice is no admin here
    "tokenInfo": [Sample()],
    # browsing
    "getArtists": [Sample()],
    "getIndexes": [Sample()],
    "getArtist": [Sample({"id": "{alice}"}), Sample({"id": "{bob}"}), Sample({"id": "ar-did:plc:nobody"},
                                                                               error=NOT_FOUND),
                  Sample(error=MISSING)],
    "getAlbum": [Sample({"id": "{album}"}), Sample({"id": "{singles}"}), Sample({"id": "al-nope"}, error=NOT_FOUND)],
    "getMusicDirectory": [Sample({"id": "{alice}"}), Sample({"id": "{album}"}),
                          Sample({"id": "al-nope"}, error=NOT_FOUND)],
    "getSong": [Sample({"id": "{a1}"}), Sample({"id": "{a2}"}), Sample({"id": "{single}"}), Sample({"id": "{hidden}"}),
                Sample({"id": "{b1}"}), Sample(UNKNOWN_SONG, error=NOT_FOUND), Sample(error=MISSING)],
    "getGenres": [Sample()],
    "getAlbumList2": [Sample({"type": t, "size": "50"}) for t in
                      ("newest", "alphabeticalByName", "alphabeticalByArtist", "frequent", "recent", "starred",
                       "highest")]
                     + [Sample({"type": "random"}, **RANDOM), Sample({"type": "byGenre", "genre": "rock"}),
                        Sample({"type": "byYear", "fromYear": "1990", "toYear": "2100"}),
                        Sample({"type": "sideways"}, error=0), Sample(error=MISSING)],
    "getAlbumList": [Sample({"type": "alphabeticalByName"}), Sample({"type": "newest", "size": "1"}),
                     Sample(error=MISSING)],
    "getRandomSongs": [Sample({"size": "50"}, **RANDOM), Sample({"genre": "rock"}, **RANDOM)],
    "getSongsByGenre": [Sample({"genre": "rock"}), Sample({"genre": "rock", "count": "1", "offset": "1"}),
                        Sample({"genre": "no-such-genre"}), Sample(error=MISSING)],
    "getTopSongs": [Sample({"artist": "{alice_name}"}), Sample({"artist": "nobody at all", "count": "5"})],
    "getSimilarSongs": [Sample({"id": "{a1}"}, **RANDOM), Sample({"id": "{alice}", "count": "5"}, **RANDOM),
                        Sample(UNKNOWN_SONG, error=NOT_FOUND)],
    "getSimilarSongs2": [Sample({"id": "{alice}"}, **RANDOM), Sample({"id": "ar-did:plc:nobody"}, error=NOT_FOUND)],
    "getArtistInfo": [Sample({"id": "{alice}"}), Sample({"id": "ar-did:plc:nobody"}, error=NOT_FOUND)],
    "getArtistInfo2": [Sample({"id": "{alice}"}), Sample({"id": "{bob}", "count": "3"}),
                       Sample({"id": "ar-did:plc:nobody"}, error=NOT_FOUND)],
    "getAlbumInfo": [Sample({"id": "{album}"}), Sample({"id": "al-nope"}, error=NOT_FOUND)],
    "getAlbumInfo2": [Sample({"id": "{album}"}), Sample({"id": "{singles}"}), Sample({"id": "al-nope"},
                                                                                    error=NOT_FOUND)],
    "getLyrics": [Sample({"artist": "{alice_name}", "title": "Night one"}), Sample({"title": "no such song"})],
    "getLyricsBySongId": [Sample({"id": "{a1}"}), Sample({"id": "{b1}"}), Sample(UNKNOWN_SONG, error=NOT_FOUND)],
    # search
    "search3": [Sample({"query": "night"}), Sample({"query": ""}), Sample({"query": "zzzzqqq"}),
                Sample({"query": "song", "songCount": "1", "songOffset": "1", "artistCount": "0",
                        "albumCount": "0"})],
    "search2": [Sample({"query": "night"}), Sample({"query": "zzzzqqq"})],
    "search": [Sample({"any": "night"}), Sample({"title": "night", "count": "5"}), Sample({"artist": "zzzzqqq"})],
    # listening
    "scrobble": [Sample({"id": "{b1}"}), Sample({"id": "{a1}", "submission": "false"}),
                 Sample(UNKNOWN_SONG, error=NOT_FOUND), Sample(error=MISSING)],
    "star": [Sample({"id": "{b1}"}), Sample({"albumId": "{album}"}), Sample({"artistId": "{bob}"}),
             Sample(UNKNOWN_SONG, error=NOT_FOUND)],
    "getStarred": [Sample()],
    "getStarred2": [Sample()],
    "unstar": [Sample({"albumId": "{album}"}), Sample({"artistId": "{bob}"}), Sample(UNKNOWN_SONG, error=NOT_FOUND)],
    "getNowPlaying": [Sample(volatile=("minutesAgo",))],
    # playlists
    "getPlaylists": [Sample(), Sample({"username": "{bob_handle}"})],
    "getPlaylist": [Sample({"id": "{private}"}), Sample({"id": "{public}"}), Sample({"id": "pl-999999"},
                                                                                    error=NOT_FOUND)],
    "createPlaylist": [Sample({"name": "Road trip", "songId": ["{a1}", "{b1}"]}, xml={"name": "Road trip",
                                                                                       "songId": ["{a1}", "{b1}"]},
                              volatile=("id", "created", "changed", "coverArt")),
                       Sample({"name": "Bad", "songId": "tr-999999"}, error=NOT_FOUND), Sample(error=MISSING)],
    "updatePlaylist": [Sample({"playlistId": "{private}", "name": "Still secret", "comment": "for the night",
                               "songIdToAdd": "{a1}"}, xml={"playlistId": "{private}", "songIndexToRemove": "1"}),
                       Sample({"playlistId": "{public}", "name": "Not mine"}, error=50),
                       Sample({"playlistId": "pl-999999"}, error=NOT_FOUND), Sample(error=MISSING)],
    "deletePlaylist": [Sample({"id": "{doomed1}"}, xml={"id": "{doomed2}"}),
                       Sample({"id": "{public}"}, error=50), Sample({"id": "pl-999999"}, error=NOT_FOUND)],
    # play queue and bookmarks
    "savePlayQueue": [Sample({"id": ["{a1}", "{a2}", "{b1}"], "current": "{a2}", "position": "1500"}),
                      Sample({"id": ["{a1}", "tr-999999"]}, error=NOT_FOUND),
                      Sample({"id": "{a1}", "current": "{b1}"}, error=0)],
    "getPlayQueue": [Sample()],
    "createBookmark": [Sample({"id": "{a1}", "position": "12000", "comment": "the chorus"},
                              xml={"id": "{b1}", "position": "3000"}),
                       Sample({"id": "tr-999999", "position": "1"}, error=NOT_FOUND),
                       Sample({"id": "{a1}"}, error=MISSING)],
    "getBookmarks": [Sample()],
    "deleteBookmark": [Sample({"id": "{a1}"}, xml={"id": "{b1}"}), Sample(error=MISSING)],
    # files
    "stream": [Sample({"id": "{a1}"}, content_type="audio/mpeg"), Sample({"id": "{single}"}, content_type="audio/"),
               Sample({"id": "{a2}", "format": "mp3", "maxBitRate": "128"}, content_type="audio/"),
               Sample({"id": "{hidden}"}, content_type="audio/"), Sample(UNKNOWN_SONG, error=NOT_FOUND),
               Sample(error=MISSING)],
    "download": [Sample({"id": "{a2}"}, content_type="audio/flac"), Sample(UNKNOWN_SONG, error=NOT_FOUND)],
    "getCoverArt": [Sample({"id": "{a1}"}, content_type="image/"), Sample({"id": "{a1}", "size": "64"},
                                                                          content_type="image/"),
                    Sample({"id": "{album}"}, content_type="image/"),
                    Sample({"id": "{b1}"}, error=NOT_FOUND), Sample(error=MISSING)],
}


# ---- the library ------------------------------------------------------------------------------------------------


def _web(who: Listener, method: str, path: str, body: Any = None, form: dict[str, str] | None = None) -> Any:
    """A browser-session call that must succeed; a playlist edit is retried while the track's record is on its
    way to the PDS."""
    deadline = time.monotonic() + 20
    while True:
        r = who.artist.http.request(method, path, json=body, data=form, headers={"X-CSRF-Token": who.artist.csrf})
        if r.status_code in (200, 201) or time.monotonic() > deadline:
            assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
            return r.json() if r.content else None
        time.sleep(0.2)


def _rest(who: Listener, method: str, fmt: str, params: dict[str, Param]) -> httpx.Response:
    return who.rest.get(f"/rest/{method}", params={"apiKey": who.token, "f": fmt, "c": "contract", **params},
                        timeout=60)


@pytest.fixture(scope="module")
def people(node, pds) -> dict[str, Listener]:
    return {name: rest_listener(node.url, pds.create_account(f"ct{name}")) for name in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def library(node, people: dict[str, Listener], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three artists. Alice: an album of an MP3 with artwork and lyrics and a 16-bit FLAC (tags for artist, album,
    date, track), a single AIFF that streams as its MP3 rendition, an unlisted track, a private playlist and two
    to delete. Bob: a single in his public playlist, which also holds Alice's song; Bob likes Alice's song and
    Alice likes Bob's. Carol: an AAC single. Alice's listener is playing her song now."""
    tmp = tmp_path_factory.mktemp("contract-audio")
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    album_tags = {"artist": "Alice Night", "album_artist": "Alice Night", "album": "Night Drive", "date": "2019"}
    ids = {
        "a1": alice.upload(make_audio(tmp / "a1.mp3", "mp3", seconds=2.0,
                                      tags={**album_tags, "title": "Night one", "track": "1"}),
                           title="Night one", album="Night Drive", tags='["rock", "night"]',
                           image=("c.jpg", jpeg_bytes(), "image/jpeg")),
        "a2": alice.upload(make_audio(tmp / "a2.flac", "flac", seconds=2.0, frequency=330.0,
                                      tags={**album_tags, "title": "Night two", "track": "2"}),
                           title="Night two", album="Night Drive", tags='["rock"]'),
        "single": alice.upload(make_audio(tmp / "single.aiff", "aiff", seconds=2.0, frequency=550.0),
                               title="Song alone", tags='["ambient"]'),
        "hidden": alice.upload(make_audio(tmp / "hidden.mp3", "mp3", seconds=1.0, frequency=770.0),
                               title="Song hidden", unlisted="true"),
        "b1": bob.upload(make_audio(tmp / "b1.mp3", "mp3", seconds=2.0, frequency=220.0),
                         title="Night bus", tags='["rock"]'),
        "c1": carol.upload(make_audio(tmp / "c1.m4a", "m4a-aac", seconds=2.0, frequency=880.0),
                           title="Carol's song", tags='["folk"]'),
    }
    _web(alice, "PATCH", f"/tracks/{ids['a1']}", form={"lyrics": "Drive all night\nuntil the morning"})
    private = _web(alice, "POST", "/lists/playlists", {"name": "Secret", "is_private": True})["id"]
    _web(alice, "POST", f"/lists/playlists/{private}/tracks", {"track_id": ids["a2"]})
    doomed = [_web(alice, "POST", "/lists/playlists", {"name": f"Doomed {i}"})["id"] for i in (1, 2)]
    public = _web(bob, "POST", "/lists/playlists", {"name": "Bob's mix", "is_private": False})["id"]
    for track in ("b1", "a1"):
        _web(bob, "POST", f"/lists/playlists/{public}/tracks", {"track_id": ids[track]})
    _web(bob, "POST", f"/tracks/{ids['a1']}/like")
    _web(alice, "POST", f"/tracks/{ids['b1']}/like")
    _web(alice, "POST", "/now-playing/", {"track_id": ids["a1"], "progress_ms": 500})

    song = _rest(alice, "getSong", "json", {"id": f"tr-{ids['a1']}"}).json()["subsonic-response"]["song"]
    single = _rest(alice, "getSong", "json",
                   {"id": f"tr-{ids['single']}"}).json()["subsonic-response"]["song"]
    return {**{k: f"tr-{v}" for k, v in ids.items()},
            "album": song["albumId"], "singles": single["albumId"], "alice_name": song["artist"],
            "alice": f"ar-{alice.artist.did}", "bob": f"ar-{bob.artist.did}", "carol": f"ar-{carol.artist.did}",
            "alice_handle": alice.handle, "bob_handle": bob.handle,
            "private": f"pl-{private}", "public": f"pl-{public}", "doomed1": f"pl-{doomed[0]}",
            "doomed2": f"pl-{doomed[1]}"}


# ---- the contract -----------------------------------------------------------------------------------------------


def _filled(params: dict[str, Param], ids: dict[str, str]) -> dict[str, Param]:
    return {k: [x.format(**ids) for x in v] if isinstance(v, list) else v.format(**ids) for k, v in params.items()}


def _check(who: Listener, method: str, sample: Sample, ids: dict[str, str]) -> list[str]:
    """What is wrong with one sample's answers (empty: nothing)."""
    params = _filled(sample.params, ids)
    label = f"{method}({', '.join(f'{k}={v}' for k, v in params.items())})"
    problems: list[str] = []
    if method.lower() in BINARY and sample.error is None:
        r = _rest(who, method, "json", params)
        kind = r.headers.get("content-type", "")
        if r.status_code not in (200, 206) or not kind.startswith(sample.content_type or ""):
            problems.append(f"{label}: {r.status_code} {kind}, want {sample.content_type}: {r.text[:200]}")
        elif not r.content:
            problems.append(f"{label}: an empty body")
        return problems

    r = _rest(who, method, "json", params)
    if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
        return [f"{label}: {r.status_code} {r.headers.get('content-type')}: {r.text[:200]}"]
    body = r.json()
    answer = body.get("subsonic-response", {})
    want = "ok" if sample.error is None else "failed"
    if answer.get("status") != want:
        problems.append(f"{label}: status {answer.get('status')} ({answer.get('error')}), want {want}")
    elif sample.error is not None and answer["error"]["code"] != sample.error:
        problems.append(f"{label}: error {answer['error']}, want code {sample.error}")
    problems += [f"{label}: {p}" for p in schema_errors(method, body)]

    xml_params = params if sample.xml is None else _filled(sample.xml, ids)
    x = _rest(who, method, "xml", xml_params)
    if x.status_code != 200 or not x.headers.get("content-type", "").startswith("text/xml"):
        return [*problems, f"{label} as XML: {x.status_code} {x.headers.get('content-type')}: {x.text[:200]}"]
    problems += [f"{label} as XML: {p}" for p in content_differences(body, x.content, volatile=sample.volatile,
                                                                      unordered=sample.unordered)]
    return problems


def test_the_oracle_catches_breaks() -> None:
    """The checks themselves: a wrong type, a bad date-time and a missing required element break the schema (named
    by their JSON path); an XML form with a changed or missing value differs from its JSON."""
    song = {"id": "tr-1", "isDir": False, "title": "t", "year": 2020, "created": "2024-01-01T00:00:00.5Z",
            "genres": [{"name": "rock"}], "starred": None}
    good = envelope.ok({"song": song, "lyrics": {"value": ""}})
    assert schema_errors("getSong", json.loads(envelope.to_json(good))) == []
    assert content_differences(json.loads(envelope.to_json(good)), envelope.to_xml(good)) == []
    assert schema_errors("stream", json.loads(envelope.to_json(envelope.failed(70, "song not found")))) == []

    bad = envelope.ok({"song": {**song, "year": "2020", "created": "yesterday"}})
    errors = schema_errors("getSong", json.loads(envelope.to_json(bad)))
    assert any(e.startswith("$.subsonic-response.song.year: '2020' is not of type 'integer'") for e in errors), errors
    assert any(e.startswith("$.subsonic-response.song.created:") for e in errors), errors
    empty = json.loads(envelope.to_json(envelope.ok()))
    assert any("'song' is a required property" in e for e in schema_errors("getSong", empty))
    wrong_code = {"subsonic-response": {**envelope.failed(70, "x"), "error": {"code": "70"}}}
    assert any("error.code" in e for e in schema_errors("getAlbum", wrong_code))

    body = json.loads(envelope.to_json(good))
    changed = envelope.to_xml(good).replace(b'year="2020"', b'year="2021"')
    assert content_differences(body, changed) == ["$.subsonic-response.song.year: JSON '2020', XML '2021'"]
    dropped = envelope.to_xml(envelope.ok({"song": {**song, "genres": []}, "lyrics": {"value": ""}}))
    assert content_differences(body, dropped) == [
        '$.subsonic-response.song.genres: in JSON ([{"name":"rock"}]), missing from XML']

    # A control character in a title (only NUL is refused on input) must not make the XML unparseable: it becomes
    # U+FFFD there, while JSON carries it escaped; tabs and newlines survive in attributes.
    odd = envelope.ok({"song": {**song, "title": "bell\x07 tab\tline\nend"}})
    assert xml_as_tree(envelope.to_xml(odd))["subsonic-response"]["song"][0]["title"] == "bell\ufffd tab\tline\nend"
    assert content_differences(json.loads(envelope.to_json(odd)), envelope.to_xml(odd)) == []


def test_samples_name_real_methods() -> None:
    known = set(endpoint_names())
    assert not set(SAMPLES) - known, f"not OpenSubsonic methods: {set(SAMPLES) - known}"


def test_every_method_has_samples() -> None:
    """A method plyrd answers must be in SAMPLES, so it cannot skip the contract."""
    sampled = {m.lower() for m in SAMPLES}
    missing = sorted(m for m in METHODS if m not in sampled)
    assert not missing, f"registered methods without SAMPLES in {__name__}: {missing}"


@pytest.mark.parametrize("method", list(SAMPLES))
def test_method_answers_its_schema(node, people: dict[str, Listener], library: dict[str, str], method: str) -> None:
    assert method.lower() in METHODS, f"{method} is named by issue 14 but plyrd.web.subsonic does not answer it"
    problems = [p for sample in SAMPLES[method] for p in _check(people["alice"], method, sample, library)]
    assert not problems, f"{method}:\n  " + "\n  ".join(problems)
