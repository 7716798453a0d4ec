"""Duplicate recordings on a shared node: a new upload that sounds like another uploader's track is flagged for
review (a report case with the reason "duplicate", from the node itself), through a real node, the real PDS, Debian's
libchromaprint and real audio encoded with PyAV.

Chromaprint needs music-like audio (spectra that change): a steady tone fingerprints as one item repeated, which
says nothing about a recording (checked below: such a fingerprint is never matched). The audio here is a melody of
harmonic notes over a chord with drum-like noise bursts, made from a seed; the same seed encoded as FLAC and as MP3
128k is "the same recording encoded differently".

A node without libchromaprint is simulated by making its loader fail: a sitecustomize.py on the node's PYTHONPATH
blocks the import of pyacoustid's `chromaprint` module (sys.modules["chromaprint"] = None, Python's way to make an
import fail), so plyrd cannot reach the library, as on a system without libchromaprint1. The library itself is
installed here and other tests need it: this takes it away from one process only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from audio_samples import CHUNK, SPECS, make_audio
from conftest import ServedNode, node_env, start_node
from helpers import Person, db, person

SECONDS = 15.0
RATE = 44100


def melody(seed: int, seconds: float = SECONDS) -> np.ndarray:
    """Mono float32 music: random notes of a minor scale (harmonics, decaying) over a chord, with noise bursts."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    pos = 0
    while pos < out.size:
        n = min(int(RATE * rng.choice([0.125, 0.25, 0.375, 0.5])), out.size - pos)
        root = 220 * 2 ** ((rng.choice([0, 2, 3, 5, 7, 8, 10]) + 12 * rng.integers(0, 2)) / 12)
        t = np.arange(n) / RATE
        note = sum(np.sin(2 * np.pi * root * k * t) / k for k in (1, 2, 3, 4)) * np.exp(-3 * t)
        chord = sum(np.sin(2 * np.pi * root * r / 2 * t) for r in (1, 1.26, 1.5))
        out[pos:pos + n] = 0.5 * note + 0.2 * chord
        if rng.random() < 0.4:
            b = min(n, RATE // 20)
            out[pos:pos + b] += rng.normal(0, 0.5, b) * np.exp(-np.arange(b) / (RATE / 200))
        pos += n
    return np.clip(out / 2, -1, 1).astype(np.float32)


def write(path: Path, fmt: str, mono: np.ndarray, *, bitrate: int | None = None) -> Path:
    """`mono` as a stereo file of `fmt` (audio_samples.SPECS), as tests/audio_samples.py writes its signals."""
    spec = SPECS[fmt]
    with av.open(str(path), "w", format=spec.container, options=dict(spec.options)) as out:
        stream = out.add_stream(spec.codec, rate=RATE, options=dict(spec.codec_options))
        stream.layout = "stereo"
        if bitrate:
            stream.bit_rate = bitrate
        if spec.sample_fmt:
            stream.format = spec.sample_fmt
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=RATE)
        for start in range(0, mono.size, CHUNK):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.tile(mono[start:start + CHUNK], (2, 1))),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = RATE, start
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


def uploaded(who: Person, path: Path, title: str) -> int:
    r = who.me.upload(path, title=title)
    assert r.status_code == 200, r.text
    events = who.me.wait(r.json()["upload_id"])
    assert events[-1]["status"] == "completed", events
    return int(events[-1]["track_id"])


def cases(node: ServedNode, track_id: int) -> list[tuple[Any, ...]]:
    """(reason, state, reporter, entry reason, description) of the report cases on a track."""
    return db(node, "SELECT r.reason, r.state, e.reporter, e.reason, e.description FROM reports r"
                    " JOIN report_entries e ON e.report_id = r.id WHERE r.target_type = 'track' AND r.target_id = ?",
              (str(track_id),))


@pytest.fixture(scope="module")
def node(pds: Any, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    served = start_node([], cwd=tmp_path_factory.mktemp("duplicates"), env=node_env(pds))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("duplicate-audio")
    a, b, c = melody(1), melody(2), melody(3)
    return {"a.flac": write(d / "a.flac", "flac", a), "a.mp3": write(d / "a.mp3", "mp3", a, bitrate=128_000),
            "b.flac": write(d / "b.flac", "flac", b), "c.flac": write(d / "c.flac", "flac", c),
            "c.mp3": write(d / "c.mp3", "mp3", c, bitrate=128_000), "d.flac": write(d / "d.flac", "flac", melody(4))}


@pytest.fixture(scope="module")
def people(node: ServedNode, pds: Any) -> tuple[Person, Person]:
    return person(node, pds, "dupalice"), person(node, pds, "dupbob")


def loaded(node: ServedNode, library: str) -> bool:
    return library in Path(f"/proc/{node.proc.pid}/maps").read_text()


def test_an_idle_node_has_not_loaded_libchromaprint(node: ServedNode) -> None:
    """Looked up at start-up, loaded by the first fingerprint: it brings a second libavcodec, not needed idle."""
    assert not loaded(node, "libchromaprint")


def test_the_same_recording_by_another_uploader_is_flagged(node: ServedNode, people: tuple[Person, Person],
                                                           audio: dict[str, Path]) -> None:
    alice, bob = people
    first = uploaded(alice, audio["a.flac"], "Original")
    assert cases(node, first) == []
    again = uploaded(bob, audio["a.mp3"], "Mine now")  # the same audio, as a 128k MP3, by someone else
    [(reason, state, reporter, entry_reason, description)] = cases(node, again)
    assert (reason, state, reporter, entry_reason) == ("duplicate", "open", "did:plyrd:node", "duplicate")
    assert f"track {first} \u201cOriginal\u201d by @{alice.handle}" in description, description
    assert cases(node, first) == []  # the earlier track is not the one under review
    # Both fingerprints are kept, with keys for the index.
    rows = db(node, "SELECT track_id, length(fp), seconds FROM track_fingerprints WHERE track_id IN (?, ?)",
              (first, again))
    assert len(rows) == 2 and all(size >= 4 * 100 and seconds > SECONDS - 1 for _, size, seconds in rows), rows
    assert db(node, "SELECT count(*) FROM track_fingerprint_keys WHERE track_id = ?", (again,))[0][0] > 0
    # The track stays as it was: playable, listed; an admin decides.
    assert bob.get(f"/tracks/{again}").status_code == 200
    assert loaded(node, "libchromaprint")


def test_a_different_recording_is_not_flagged(node: ServedNode, people: tuple[Person, Person],
                                              audio: dict[str, Path]) -> None:
    _, bob = people
    other = uploaded(bob, audio["b.flac"], "Something else")
    assert cases(node, other) == []
    assert db(node, "SELECT count(*) FROM track_fingerprints WHERE track_id = ?", (other,)) == [(1,)]


def test_an_uploader_re_uploading_their_own_recording_is_not_a_case(node: ServedNode, people: tuple[Person, Person],
                                                                     audio: dict[str, Path]) -> None:
    alice, _ = people
    mine = uploaded(alice, audio["c.flac"], "Mine")
    again = uploaded(alice, audio["c.mp3"], "Mine, as MP3")
    assert cases(node, mine) == [] and cases(node, again) == []
    assert db(node, "SELECT count(*) FROM track_fingerprints WHERE track_id IN (?, ?)", (mine, again)) == [(2,)]


def test_a_deleted_track_takes_its_fingerprint_along(node: ServedNode, people: tuple[Person, Person],
                                                     audio: dict[str, Path]) -> None:
    _, bob = people
    track_id = uploaded(bob, audio["d.flac"], "Short-lived")
    assert db(node, "SELECT count(*) FROM track_fingerprints WHERE track_id = ?", (track_id,)) == [(1,)]
    assert bob.delete(f"/tracks/{track_id}").status_code in (200, 204)
    assert db(node, "SELECT count(*) FROM track_fingerprints WHERE track_id = ?", (track_id,)) == [(0,)]
    assert db(node, "SELECT count(*) FROM track_fingerprint_keys WHERE track_id = ?", (track_id,)) == [(0,)]


# ---- a node without libchromaprint

@pytest.fixture(scope="module")
def bare_node(pds: Any, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    shadow = tmp_path_factory.mktemp("no-chromaprint")
    (shadow / "sitecustomize.py").write_text('import sys\n\nsys.modules["chromaprint"] = None\n')
    served = start_node([], cwd=tmp_path_factory.mktemp("duplicates-bare"),
                        env=node_env(pds, PYTHONPATH=str(shadow)))
    yield served
    served.stop()


def test_a_node_without_libchromaprint_says_so_once_and_skips_the_check(bare_node: ServedNode, pds: Any,
                                                                        audio: dict[str, Path]) -> None:
    carol, dave = person(bare_node, pds, "dupcarol"), person(bare_node, pds, "dupdave")
    first = uploaded(carol, audio["a.flac"], "Original")
    again = uploaded(dave, audio["a.mp3"], "Same")  # would be flagged on a node with the library
    assert cases(bare_node, first) == [] and cases(bare_node, again) == []
    assert db(bare_node, "SELECT count(*) FROM track_fingerprints") == [(0,)]
    assert bare_node.log().count("duplicate-recording check off: libchromaprint not found") == 1, bare_node.log()


# ---- in process: what the check is made of

def test_fingerprints_compare_by_recording_not_by_encoding(tmp_path: Path) -> None:
    from plyrd.media.chromaprint import compare, distinctive, fingerprint, keys
    from plyrd.moderation.duplicates import MATCH_BIT_ERROR

    a = melody(1)
    flac = fingerprint(write(tmp_path / "a.flac", "flac", a))
    mp3 = fingerprint(write(tmp_path / "a.mp3", "mp3", a, bitrate=128_000))
    later = fingerprint(write(tmp_path / "late.flac", "flac", np.concatenate([np.zeros(3 * RATE, np.float32), a])))
    other = fingerprint(write(tmp_path / "b.flac", "flac", melody(2)))
    assert distinctive(flac.items) and distinctive(other.items)
    assert compare(flac.items, mp3.items).bit_error < 0.05
    shifted = compare(flac.items, later.items)  # three seconds of silence in front: found by the voted offsets
    assert shifted.bit_error <= MATCH_BIT_ERROR and 2.5 < shifted.offset_seconds < 3.5, shifted
    assert compare(flac.items, other.items).bit_error > 0.3
    assert len(set(keys(flac.items)) & set(keys(mp3.items))) >= 2
    assert not set(keys(flac.items)) & set(keys(other.items))
    # A steady tone is one item over and over: never distinctive, so never matched against other tones.
    tone = fingerprint(make_audio(tmp_path / "tone.flac", "flac", seconds=10, kind="music"))
    assert not distinctive(tone.items)


def test_fingerprints_off_in_config_means_no_check(tmp_path: Path) -> None:
    from plyrd.config import load_config
    from plyrd.moderation import duplicates

    on = load_config(env={}, overrides={"storage.data_dir": str(tmp_path)})
    off = load_config(env={}, overrides={"storage.data_dir": str(tmp_path), "moderation.fingerprints": False})
    assert duplicates.available() and duplicates.enabled(on) and duplicates.start_up_notice(on) is None
    assert not duplicates.enabled(off) and duplicates.start_up_notice(off) is None


def test_a_failing_check_never_fails_the_upload(tmp_path: Path) -> None:
    """check_upload swallows what goes wrong (here: a database whose tracks table is gone) and reports nothing."""
    import asyncio

    from plyrd.config import load_config
    from plyrd.db import Database
    from plyrd.moderation.duplicates import check_upload
    from plyrd.threads import ThreadSlots

    async def run() -> list[Any]:
        database = Database(tmp_path / "plyrd.db")
        await database.open()
        try:
            await database.execute("ALTER TABLE tracks RENAME TO tracks_gone")
            config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path)})
            return await check_upload(database, ThreadSlots(1), config, 1, tmp_path / "missing.flac")
        finally:
            await database.close()

    assert asyncio.run(run()) == []
