"""Gapless playback in a real browser (Debian's Chromium, headless, through Playwright), measured.

One continuous signal (a tone with a little noise, so every stretch of it is unique) is made with PyAV, cut in two
at a sample boundary, and the second half turned down 6 dB so the node's loudness analysis gives each its own
track_gain_db. Both halves are uploaded (as FLAC; as MP3 with the encoder's delay and padding in its LAME tag; as
AIFF, which the node serves as its own LAME MP3 rendition), queued and played through the player bar. Everything
the player sends to the speakers passes its master GainNode; a ScriptProcessorNode on it records every output
sample in the page (the only tap Web Audio offers without a worklet module; it records, it changes nothing). In
Python the recording is lined up with the original signal before and after the boundary: the difference of the two
offsets is the gap (or overlap) at the boundary, to the sample. The level right after the boundary shows the second
track's own gain applied from its first sample. The same ruler measures the plain swap at `ended` (the path a hidden
page or a locked phone takes).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import node_env, start_node
from helpers import sign_in

RATE = 44100  # headless Chromium's AudioContext runs at 44.1 kHz here: no resampling anywhere
HALF_S = 4.0
LIMIT_MS = 20.0


@pytest.fixture(scope="module")
def account(pds) -> Any:
    return pds.create_account("gapless")


@pytest.fixture(scope="module")
def node(pds, tmp_path_factory) -> Iterator[Any]:
    served = start_node([], cwd=tmp_path_factory.mktemp("gapless"), env=node_env(pds))
    yield served
    served.stop()


def continuous_signal() -> np.ndarray:
    n = int(RATE * HALF_S * 2)
    t = np.arange(n) / RATE
    noise = np.random.default_rng(7).normal(0, 0.06, n)
    return (0.3 * np.sin(2 * np.pi * 330 * t) + noise).astype(np.float32)


def write(path: Path, samples: np.ndarray, codec: str) -> Path:
    """Stereo (the same signal both sides) `codec` audio: flac (s16) or mp3 (libmp3lame, with its Info tag)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=RATE, layout="stereo")
        if codec == "libmp3lame":
            stream.bit_rate = 320_000
        fmt = stream.codec_context.format.name
        for i in range(0, len(samples), 4096):
            block = np.ascontiguousarray(np.vstack([samples[i:i + 4096]] * 2))
            if fmt == "s16":
                frame = av.AudioFrame.from_ndarray((np.clip(block, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1),
                                                   format="s16", layout="stereo")
            else:  # planar float (mp3)
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def lame_gapless_info(path: Path) -> tuple[int, int]:
    """(encoder delay, padding) from the LAME tag in the first frame's Xing/Info header."""
    data = path.read_bytes()
    start = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        start = 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])
    frame = data[start:start + 2000]
    at = max(frame.find(b"Xing"), frame.find(b"Info"))
    assert at > 0, "no Xing/Info header"
    # LAME writes "LAME3.100", FFmpeg's muxer "Lavf" + its version: the same 36-byte LAME tag follows either
    lame = max(frame.find(b"LAME", at), frame.find(b"Lavf", at), frame.find(b"Lavc", at))
    assert lame > 0, "no LAME tag"
    b = frame[lame + 21:lame + 24]
    return (b[0] << 4) | (b[1] >> 4), ((b[1] & 0x0F) << 8) | b[2]


@pytest.fixture(scope="module")
def tracks(node, account, tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    d = tmp_path_factory.mktemp("gapless-audio")
    x = continuous_signal()
    cut = int(RATE * HALF_S)
    halves = [x[:cut], x[cut:] * 0.5]
    artist = sign_in(node.url, account)
    out: dict[str, list[dict[str, Any]]] = {}
    # AIFF is not played by most browsers: the node serves its own MP3 rendition (plyrd.media.transcode, LAME)
    kinds = (("flac", "flac", "flac"), ("mp3", "libmp3lame", "mp3"), ("rendition", "pcm_s16be", "aiff"))
    for kind, codec, ext in kinds:
        out[kind] = []
        for n, half in enumerate(halves, 1):
            src = write(d / f"{kind}-{n}.{ext}", half, codec)
            r = artist.upload(src, title=f"{kind} half {n}")
            assert r.status_code == 200, r.text
            events = artist.wait(r.json()["upload_id"])
            assert events[-1]["status"] == "completed", events
            track = artist.http.get(f"/tracks/{events[-1]['track_id']}").json()
            track["source_path"] = src
            out[kind].append(track)
    return out


@pytest.fixture(scope="module")
def page(browser, node) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(node.url + "/")
    pg.wait_for_function("() => window.plyrd && window.plyrd.player")
    yield pg
    assert not errors, errors
    context.close()


RECORD = """() => {
  const p = window.plyrd.player;
  const rec = p.ctx.createScriptProcessor(16384, 2, 1);
  window.__rec = { chunks: [], first: null, node: rec };
  rec.onaudioprocess = (e) => {
    if (window.__rec.first === null) window.__rec.first = e.playbackTime;
    window.__rec.chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  };
  const sink = p.ctx.createGain();
  sink.gain.value = 0;
  p.gapless.master.connect(rec);
  rec.connect(sink).connect(p.ctx.destination);
}"""

COLLECT = """() => {
  const r = window.__rec;
  r.node.disconnect();
  window.plyrd.player.gapless.master.disconnect(r.node);
  const n = r.chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const c of r.chunks) { all.set(c, o); o += c.length; }
  let s = '';
  const bytes = new Uint8Array(all.buffer);
  for (let i = 0; i < bytes.length; i += 32768) s += String.fromCharCode(...bytes.subarray(i, i + 32768));
  return { first: r.first, data: btoa(s) };
}"""


def shift(rec: np.ndarray, ref: np.ndarray, at: int, guess: int = 0, span: int = 8000,
          n: int = 4096) -> tuple[int, float]:
    """How far `rec[at:at+n]` lies from the same samples in `ref` (ref index - at; searched within `span` of
    `guess`), by normalised cross-correlation, and the score. Gains do not change it; a gap between two stretches
    shows as a change of shift. The signal's tone matches one period off at ~0.93; only the right lag gives ~1."""
    seg = rec[at:at + n].astype(np.float64)
    best, score = 0, -2.0
    for s in range(max(0, at + guess - span), min(len(ref) - n, at + guess + span)):
        r = ref[s:s + n]
        c = float(np.dot(seg, r) / np.sqrt(np.dot(seg, seg) * np.dot(r, r) + 1e-12))
        if c > score:
            best, score = s, c
    return best - at, score


def queue_and_play(page: Any, one: dict[str, Any], two: dict[str, Any], at: float = 0) -> None:
    page.evaluate("""async ([a, b, at]) => { const p = window.plyrd.player; p.queue.ids = [a, b]; p.queue.index = 0;
                      await p.load(0, { autoplay: false, at }); }""", [one["id"], two["id"], at])
    page.wait_for_function("() => window.plyrd.player.audio.readyState >= 3")
    page.evaluate("""() => { window.__played = [];
        document.addEventListener('plyrd:played', (e) => window.__played.push(e.detail.id)); }""")
    page.click("#player [data-player=toggle]")  # a real click: the gesture Web Audio needs
    page.wait_for_function("() => window.plyrd.player.ctx?.state === 'running' && !window.plyrd.player.audio.paused")
    page.evaluate(RECORD)


def recording(page: Any) -> tuple[np.ndarray, float]:
    got = page.evaluate(COLLECT)
    return np.frombuffer(base64.b64decode(got["data"]), dtype=np.float32), got["first"]


@pytest.mark.parametrize("kind", ["flac", "mp3", "rendition"])
def test_the_next_track_starts_where_the_last_one_ends(page, tracks, kind: str) -> None:
    one, two = tracks[kind]
    for t in (one, two):
        # What the browser plays, and how long it decodes: exactly the samples cut (an MP3's encoder delay and
        # padding, from its LAME tag, trimmed away).
        mime, frames, data = page.evaluate("""async (id) => { const r = await fetch(`/audio/${id}`);
            const type = r.headers.get('content-type'); const bytes = await r.arrayBuffer();
            const ctx = new OfflineAudioContext(2, 1, 44100);
            return [type, (await ctx.decodeAudioData(bytes.slice(0))).length, Array.from(new Uint8Array(bytes))]; }""",
                                           t["file_id"])
        assert mime == ("audio/flac" if kind == "flac" else "audio/mpeg")
        if mime == "audio/mpeg":
            path = t["source_path"].with_suffix(".served.mp3")
            path.write_bytes(bytes(data))
            delay, padding = lame_gapless_info(path)
            assert delay > 0 and padding > 0
            same = bytes(data) == t["source_path"].read_bytes()
            print(f"\nserved MP3 ({'the upload' if same else 'the node rendition'}): LAME delay {delay}, "
                  f"padding {padding}, decoded to {frames} samples")
        assert frames == int(RATE * HALF_S), (kind, frames)

    queue_and_play(page, one, two)
    try:
        page.wait_for_function("id => window.plyrd.player.track.id === id && window.plyrd.player.gapless.log.some("
                               "e => e.event === 'handed-back' && e.track === id) && "
                               "window.plyrd.player.audio.currentTime > 2.2", arg=two["id"], timeout=20_000)
    except Exception:
        state = page.evaluate("""() => { const p = window.plyrd.player;
            return { track: p.track.id, t: p.audio.currentTime, paused: p.audio.paused, log: p.gapless.log,
                     prepared: p.gapless.prepared && { key: p.gapless.prepared.key, to: p.gapless.prepared.to.id },
                     bridge: Boolean(p.gapless.bridge) }; }""")
        raise AssertionError(f"no gapless hand-over: {state}") from None
    rec, _ = recording(page)
    # The bar, the lock screen and the waveform show track 2; each track's listening is counted on its own.
    shown = page.evaluate("""() => ({ title: document.querySelector('#player [data-player=title]').textContent,
        session: navigator.mediaSession.metadata?.title, wave: document.querySelector('#player [data-player=wave]')
          .getAttribute('aria-valuemax') })""")
    assert shown == {"title": two["title"], "session": two["title"], "wave": str(int(HALF_S))}
    page.wait_for_function("ids => ids.every(id => window.__played.includes(id))", arg=[one["id"], two["id"]],
                           timeout=10_000)
    print(f"\n{kind}: the element's duration for track 2: {page.evaluate('window.plyrd.player.audio.duration')} s")
    log = [e for e in page.evaluate("window.plyrd.player.gapless.log") if e.get("track") in (None, two["id"])]
    assert page.evaluate("window.plyrd.player.audio.paused") is False
    events = [e["event"] for e in log]
    armed = [e for e in log if e["event"] == "armed"][-1]
    handed = [e for e in log if e["event"] == "handed-back"][-1]
    assert handed["delay"] is not None and "cancelled" not in events, [str(e) for e in log]

    # Each track's own gain: the element's gain node carried track 1's, the bridge started with track 2's.
    factor = [10 ** (max(-12, min(6, t["track_gain_db"])) / 20) for t in (one, two)]
    assert abs(factor[0] / factor[1] - 1) > 0.3  # the halves really differ
    assert armed["elementGain"] == pytest.approx(factor[0], rel=1e-6)
    assert armed["bridgeGain"] == pytest.approx(factor[1], rel=1e-6)
    assert page.evaluate("window.plyrd.player.gainNode.gain.value") == pytest.approx(factor[1], rel=1e-4)

    x = continuous_signal()
    cut = int(RATE * HALF_S)
    # Where the boundary is in the recording, from its content (the recorder's own clock is a buffer late): an early
    # stretch of track 1 lined up with the original gives the shift, so the boundary is where `cut` lands.
    early, s0 = shift(rec, x, 8192, span=2 * RATE)
    boundary = cut - early
    handback = boundary + round((handed["at"] - armed["end"]) * RATE)
    assert 8192 < boundary - 4 * 4096 and handback + 2 * 4096 < len(rec), (boundary, handback, len(rec))
    # The recording lined up with the original signal before and after the boundary (4096 samples ending 1024
    # before it; 100 ms after it, so a gap up to that long shows as a change of shift and a longer one as no match),
    # and after the element took over from the bridge: the same shift throughout means no gap and no overlap.
    before, s1 = shift(rec, x, boundary - 5120, guess=early)
    after, s2 = shift(rec, x, boundary + RATE // 10, guess=early)
    later, s3 = shift(rec, x, handback + 4096, guess=early)
    gap_ms = (before - after) / RATE * 1000  # later audio: smaller shift
    seam_ms = (after - later) / RATE * 1000
    print(f"\n{kind}: gap at the boundary {gap_ms:+.2f} ms (correlation {s1:.3f}/{s2:.3f}); element taken back "
          f"{seam_ms:+.2f} ms off ({s3:.3f}, delay {handed['delay']:.3f} s); {events}")
    # (after the hand-back the best lag is right but scores ~0.97 at times: the element's samples are then at a
    # fraction of a sample from the decoder's, inaudible)
    assert min(s0, s1, s2) > 0.97 and s3 > 0.95
    assert abs(gap_ms) < LIMIT_MS
    assert abs(seam_ms) < LIMIT_MS
    # No dip anywhere around the boundary or the hand-back: 2 ms windows keep their level.
    span = rec[boundary - RATE // 2:handback + RATE // 4]
    rms = np.sqrt((span[:len(span) // 88 * 88].reshape(-1, 88).astype(np.float64) ** 2).mean(axis=1))
    assert rms.min() > 0.25 * np.median(rms), f"a dip to {rms.min():.4f} (median {np.median(rms):.4f})"
    # Track 2's gain from its first sample: its first 10 ms against the 10 ms before the boundary, as the gains say.
    ten = RATE // 100
    ratio = level(rec[boundary:boundary + ten]) / level(rec[boundary - ten:boundary])
    expected = level(0.5 * x[cut:cut + ten] * factor[1]) / level(x[cut - ten:cut] * factor[0])
    assert ratio == pytest.approx(expected, rel=0.15), (ratio, expected)
    page.evaluate("window.plyrd.player.audio.pause()")


def test_without_the_bridge_the_element_still_advances(page, tracks) -> None:
    """The plain path (page hidden, Web Audio suspended or unavailable: as on a locked phone) is the element's own
    swap at `ended`; here the bridge is switched off in the page (a stand-in for a hidden page, which headless
    Chromium does not have) and the gap that path leaves is measured with the same ruler."""
    one, two = tracks["flac"]
    page.evaluate("() => { const g = window.plyrd.player.gapless; if (g) g.usable = () => false; }")
    queue_and_play(page, one, two, at=1.0)  # 3 s before the end: nothing is bridged yet
    page.evaluate("() => { const g = window.plyrd.player.gapless; g.usable = () => false; g.log.length = 0; }")
    page.wait_for_function(f"() => window.plyrd.player.track.id === {two['id']} && "
                           "window.plyrd.player.audio.currentTime > 1", timeout=20_000)
    rec, _ = recording(page)
    page.evaluate("() => { const p = window.plyrd.player; p.audio.pause(); delete p.gapless.usable; }")
    x = continuous_signal()
    cut = int(RATE * HALF_S)
    loud = np.flatnonzero(np.abs(rec) > 0.02)
    start = int(loud[0]) + 2048
    before, s1 = shift(rec, x, start, span=3 * RATE)
    end1 = cut - before  # track 1's end in the recording
    after, s2 = shift(rec, x, end1 + RATE // 2, guess=before - RATE // 2, span=RATE // 2 + 4096)
    gap_ms = (before - after) / RATE * 1000  # later audio: smaller shift
    print(f"\nplain swap at ended: gap {gap_ms:+.1f} ms (correlation {s1:.3f}/{s2:.3f})")
    assert min(s1, s2) > 0.97
    assert gap_ms > 1  # the ruler sees the gap nothing bridged (the audio after it starts late)
    assert page.evaluate("window.plyrd.player.gapless.log") == []


def level(a: np.ndarray) -> float:
    return float(np.sqrt((a.astype(np.float64) ** 2).mean()))


def test_repeat_one_loops_without_a_gap(page, tracks) -> None:
    """Repeat one: the same track again, bridged the same way (its head after its own tail)."""
    one, _ = tracks["flac"]
    page.evaluate("() => { window.plyrd.player.queue.repeat = 'one'; }")
    page.evaluate("""async (a) => { const p = window.plyrd.player; p.queue.ids = [a]; p.queue.index = 0;
                      p.queue.repeat = 'one'; await p.load(0, { autoplay: false, at: 1.0 }); }""", one["id"])
    page.wait_for_function("() => window.plyrd.player.audio.readyState >= 3")
    page.click("#player [data-player=toggle]")
    page.wait_for_function("() => !window.plyrd.player.audio.paused")
    page.evaluate("() => { window.plyrd.player.gapless.log.length = 0; }")
    page.evaluate(RECORD)
    page.wait_for_function("() => window.plyrd.player.gapless.log.some(e => e.event === 'handed-back') && "
                           "window.plyrd.player.audio.currentTime > 1", timeout=20_000)
    rec, _ = recording(page)
    page.evaluate("() => { const p = window.plyrd.player; p.audio.pause(); p.queue.repeat = 'none'; }")
    log = page.evaluate("window.plyrd.player.gapless.log")
    armed = next(e for e in log if e["event"] == "armed")
    assert armed["track"] == one["id"] and "cancelled" not in [e["event"] for e in log]
    x = continuous_signal()
    cut = int(RATE * HALF_S)
    early, s0 = shift(rec, x, 8192, span=3 * RATE)
    boundary = cut - early  # where the loop comes round, in the recording
    before, s1 = shift(rec, x, boundary - 5120, guess=early)
    after, s2 = shift(rec, x, boundary + RATE // 10, guess=early - cut)  # the track's start again
    gap_ms = ((early - cut) - after) / RATE * 1000
    print(f"\nrepeat one: gap at the loop {gap_ms:+.2f} ms (correlation {s1:.3f}/{s2:.3f})")
    assert min(s0, s1, s2) > 0.97 and before == early
    assert abs(gap_ms) < LIMIT_MS


def test_a_seek_before_the_boundary_cancels_the_bridge(page, tracks) -> None:
    """Once the next track is scheduled, a seek (or pause) takes it back before it is heard: track 1 plays on from
    where the listener went, with its own gain, and nothing of track 2 mixed in."""
    one, two = tracks["flac"]
    queue_and_play(page, one, two, at=1.0)
    page.wait_for_function("id => window.plyrd.player.gapless.log.some(e => e.event === 'armed' && e.track === id)",
                           arg=two["id"], timeout=10_000)
    page.evaluate("() => window.plyrd.player.seek(0.5)")
    state = page.evaluate("""() => { const p = window.plyrd.player;
        return { bridge: p.gapless.bridge, events: p.gapless.log.map(e => e.event), gain: p.gainNode.gain.value,
                 track: p.track.id }; }""")
    assert state["bridge"] is None and state["events"][-1] == "cancelled" and state["track"] == one["id"]
    assert state["gain"] == pytest.approx(10 ** (one["track_gain_db"] / 20), rel=1e-4)
    page.wait_for_timeout(1500)  # past where track 2 would have started
    rec, _ = recording(page)
    page.evaluate("window.plyrd.player.audio.pause()")
    assert page.evaluate("window.plyrd.player.track.id") == one["id"]
    x = continuous_signal()
    _, score = shift(rec, x[:int(RATE * HALF_S)], len(rec) - 8192, guess=0, span=4 * RATE)
    assert score > 0.97  # the end of the recording is track 1 alone
