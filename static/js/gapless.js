// Gapless playback for the player's one <audio>. The element alone cannot do it: the next file starts only after
// `ended` has fired and the element has loaded it again (100+ ms of silence). So, while the page is visible and Web
// Audio runs, the boundary is bridged in the audio graph, sample-accurate on the context's clock:
//
// 1. Ahead of time, both files are decoded (Web Audio's decoder is the element's) and only the current track's last
//    seconds and the next one's first seconds are kept.
// 2. A few seconds before the end, the element's output (tapped by an AnalyserNode) is found in the decoded tail by
//    cross-correlation: that gives the graph time at which its last sample plays, and the next track's head is
//    scheduled to start at exactly that time, through its own gain (its own track_gain_db from its first sample).
// 3. At `ended` the element switches to the next file as before (synchronously, as phones need), starts a little
//    ahead of the bridge, muted; once it plays, it is found in the head the same way, delayed (DelayNode) to line up
//    sample for sample, and crossfaded in; the bridge stops. The element then runs that delay (~LEAD) ahead of what
//    is heard, until the next seek, pause or track.
//
// Anything unusual (page hidden, context suspended, muted, a seek or pause, a track longer than MAX_S, a correlation
// that is not clear) cancels the bridge and leaves the element's plain swap at `ended`.

const MAX_S = 20 * 60; // longer tracks are not decoded whole (memory): plain swap
const TAIL_S = 5; // s of the current track's end kept
const HEAD_S = 8; // s of the next track's start kept
const ARM_AT = 2.5; // s before the end: locate the element and schedule the next track
const LEAD = 0.2; // s the element starts ahead of the bridge, so it only ever needs delaying
const MAX_LEAD = 0.95; // s: the DelayNode holds 1 s
const FADE = 0.02; // s crossfade from the bridge to the element (identical, aligned samples)
const MIN_SCORE = 0.95; // normalised correlation below this is not a match (the same decoder gives ~1)
const MIN_MARGIN = 0.003; // nor is a best match hardly better than another alignment (a steady periodic sound)
const SPAN = 1; // s either side of where the element's clock says it is (an MP3 seek may land that far off)
const WINDOW = 2048; // samples the tap holds

export class Gapless {
  constructor(ctx, audio) {
    this.ctx = ctx;
    this.audio = audio;
    this.master = ctx.createGain(); // everything heard goes through here (the browser test records it)
    this.master.connect(ctx.destination);
    const source = ctx.createMediaElementSource(audio);
    this.delay = ctx.createDelay(1);
    this.tap = Object.assign(ctx.createAnalyser(), { fftSize: WINDOW });
    this.gain = ctx.createGain(); // the element's track gain
    source.connect(this.delay).connect(this.gain).connect(this.master);
    this.delay.connect(this.tap);
    this.level = { element: 1, volume: 1 }; // the element's track gain factor; the volume the bridge applies itself
    this.decoded = new Map(); // file id -> {head, tail, frames} (a few, most recent)
    this.prepared = null; // {from, to: track, factor} once both slices are ready
    this.bridge = null; // the scheduled/playing next-track head
    this.log = []; // what happened at each boundary (the browser test reads it)
  }

  // The element's track gain (and the volume a bridge must apply, as the element's own volume does not reach it).
  setLevel(factor, volume) {
    this.level = { element: factor, volume };
    if (this.bridge && !this.bridge.handedBack) this.bridge.gain.gain.value = this.bridge.factor * volume;
    if (!this.bridge || this.bridge.handedBack) {
      this.gain.gain.cancelScheduledValues(0);
      this.gain.gain.value = factor;
    }
  }

  usable() {
    return this.ctx.state === 'running' && document.visibilityState === 'visible' && !this.audio.muted
      && this.level.volume > 0;
  }

  // Decode `from` (the playing track) and `to` (the one after it) ahead of the boundary. `factor`: `to`'s gain.
  async prepare(from, to, factor) {
    if (!from || !to || !(from.duration <= MAX_S) || !(to.duration <= MAX_S)) return;
    const key = `${from.file_id}>${to.file_id}`;
    if (this.prepared?.key === key) {
      this.prepared.factor = factor;
      return;
    }
    this.preparing = key;
    try {
      const [a, b] = await Promise.all([this.slices(from), this.slices(to)]);
      if (this.preparing === key) this.prepared = { key, from: from.file_id, to, tail: a.tail, frames: a.frames, head: b.head, factor };
    } catch (e) {
      console.warn('gapless: could not decode', e);
    }
  }

  async slices(track) {
    const id = track.file_id;
    if (!this.decoded.has(id)) {
      this.decoded.set(id, (async () => {
        const r = await fetch(`/audio/${id}`, { credentials: 'same-origin' });
        if (!r.ok) throw new Error(`audio ${r.status}`);
        const whole = await this.ctx.decodeAudioData(await r.arrayBuffer());
        const rate = whole.sampleRate;
        return { frames: whole.length, head: cut(this.ctx, whole, 0, HEAD_S * rate),
          tail: cut(this.ctx, whole, Math.max(0, whole.length - TAIL_S * rate), whole.length) };
      })());
      while (this.decoded.size > 4) this.decoded.delete(this.decoded.keys().next().value);
    }
    return this.decoded.get(id).catch((e) => {
      this.decoded.delete(id);
      throw e;
    });
  }

  // On every timeupdate of `track` (playing): close to the end, schedule the next track's head. `nextId` is the track
  // the queue would play next; a bridge to anything else is not made.
  maybeArm(track, nextId) {
    const a = this.audio;
    const p = this.prepared;
    if (this.bridge || !p || p.from !== track.file_id || p.to.id !== nextId || a.paused || a.seeking) return;
    const left = a.duration - a.currentTime;
    if (!(left < ARM_AT) || left < 0.4 || !this.usable()) return;
    const rate = this.ctx.sampleRate;
    // where the element is in the tail by its own clock (it may run `delay` ahead of the graph)
    const expected = (a.currentTime - this.delay.delayTime.value) * rate - (p.frames - p.tail.length);
    const found = this.locate(p.tail, expected);
    if (!found) return this.note({ event: 'no-match-tail' }); // tried again at the next timeupdate
    const end = found.time + (p.tail.length - found.index) / rate; // graph time just after the element's last sample
    if (end < this.ctx.currentTime + 0.05) return this.note({ event: 'too-late' });
    const src = Object.assign(this.ctx.createBufferSource(), { buffer: p.head });
    const gain = this.ctx.createGain();
    gain.gain.value = p.factor * this.level.volume;
    src.connect(gain).connect(this.master);
    src.start(end);
    this.gain.gain.setValueAtTime(this.level.element, this.ctx.currentTime);
    this.gain.gain.setValueAtTime(0, end); // nothing of the element overlaps the next track
    this.bridge = { src, gain, start: end, track: p.to, factor: p.factor, handedBack: false };
    src.onended = () => { if (this.bridge?.src === src) this.finish(); };
    this.note({ event: 'armed', track: p.to.id, end, score: found.score, elementGain: this.level.element,
      bridgeGain: gain.gain.value });
  }

  // The graph time the element's latest sample played and its index in `buffer` (mono mix), found by normalised
  // cross-correlation near `expected` (an index); null when the match is not clear. Two looks that must agree to
  // the sample: a render quantum landing while the tap is read would otherwise go unnoticed.
  locate(buffer, expected) {
    const rate = this.ctx.sampleRate;
    const first = this.look(buffer, expected);
    const second = first && this.look(buffer, first.index + (this.ctx.currentTime - first.time) * this.ctx.sampleRate, 0.1);
    if (!second) return null;
    const drift = (second.time - first.time) * rate - (second.index - first.index);
    if (Math.abs(drift) > 0.5) {
      this.note({ event: 'inconsistent', drift, a: [first.time, first.index], b: [second.time, second.index] });
      return null;
    }
    return second;
  }

  look(buffer, expected, span = SPAN) {
    const n = WINDOW;
    const got = new Float32Array(n);
    let time = -1;
    for (let i = 0; i < 5 && time < 0; i++) {
      const before = this.ctx.currentTime;
      this.tap.getFloatTimeDomainData(got);
      if (this.ctx.currentTime === before) time = before; // no render quantum in between: they match
    }
    if (time < 0) return null;
    const ref = mono(buffer);
    const rate = this.ctx.sampleRate;
    const reach = Math.round(span * rate);
    const lo = Math.max(0, Math.round(expected) - n - reach);
    const hi = Math.min(ref.length - n, Math.round(expected) - n + reach);
    if (hi <= lo) return null;
    let energy = 0;
    for (let i = 0; i < n; i++) energy += got[i] * got[i];
    if (energy < 1e-6) return null; // silence (or muted): nothing to find
    // Every lag, exactly (a periodic sound matches well one period off too; only the right lag matches fully).
    const dots = correlate(got, ref.subarray(lo, hi + n));
    let acc = 0;
    for (let i = 0; i < n; i++) acc += ref[lo + i] * ref[lo + i];
    let best = -1;
    let bestScore = -2;
    const scores = new Float32Array(hi - lo + 1);
    for (let k = 0; k <= hi - lo; k++) {
      if (k > 0) acc += ref[lo + k + n - 1] ** 2 - ref[lo + k - 1] ** 2;
      scores[k] = acc > 1e-9 ? dots[k] / Math.sqrt(acc * energy) : 0;
      if (scores[k] > bestScore) [best, bestScore] = [k, scores[k]];
    }
    let runnerUp = -2; // the best match that is not the same alignment
    for (let k = 0; k < scores.length; k++) if (Math.abs(k - best) > 2 && scores[k] > runnerUp) runnerUp = scores[k];
    if (bestScore < MIN_SCORE || bestScore - runnerUp < MIN_MARGIN) {
      this.note({ event: 'weak-match', score: bestScore, runnerUp });
      return null;
    }
    // got[n - 1] is buffer[lo + best + n - 1], played in the last render quantum, which ended at `time`
    return { index: lo + best + n - 1, time: time - 1 / rate, score: bestScore };
  }

  // The element reached its end: is a bridge carrying `track` on? Then the caller starts the element `at` seconds in
  // (ahead of the bridge), and calls handBack once it plays.
  takeOver(track) {
    const b = this.bridge;
    if (!b || b.track.id !== track.id || b.handedBack) {
      this.cancel();
      return null;
    }
    const now = this.ctx.currentTime;
    this.gain.gain.cancelScheduledValues(0);
    this.gain.gain.value = 0;
    this.delay.delayTime.value = 0;
    const at = Math.max(0, now - b.start) + LEAD;
    b.notBefore = at + 0.1; // the tap must hold the element's own samples before it is looked for
    return { at };
  }

  // The element plays the bridged track (muted), at or past b.notBefore: line it up with the bridge and crossfade
  // to it. Not found yet, or behind the bridge (it started late): look again later, moving it on if behind; once
  // the bridge is nearly over, hand back as it is.
  handBack() {
    const b = this.bridge;
    if (!b || b.handedBack) return;
    const a = this.audio;
    const rate = this.ctx.sampleRate;
    const found = this.locate(b.src.buffer, a.currentTime * rate);
    const now = this.ctx.currentTime;
    // how far the element is ahead, in whole samples (a fractional delay would be interpolated: not the same samples)
    let lead = found ? Math.round(((b.start + found.index / rate) - found.time) * rate) / rate : null;
    const left = b.start + b.src.buffer.duration - now; // s of bridge still to play
    if (left > 1.5 && (lead == null || lead < 0 || lead > MAX_LEAD)) {
      if (lead != null) { // started late (or an MP3 seek landed far off): move it to LEAD ahead and look again
        a.currentTime += LEAD - lead;
        b.notBefore = a.currentTime + 0.1;
      }
      this.note({ event: 'not-yet', lead });
      return;
    }
    if (lead != null && (lead < 0 || lead > MAX_LEAD)) lead = null;
    const at = now + 0.05;
    if (lead == null) this.note({ event: 'unaligned-handback' });
    this.delay.delayTime.setValueAtTime(lead ?? 0, now);
    const g = this.gain.gain;
    g.cancelScheduledValues(0);
    g.setValueAtTime(0, at);
    g.linearRampToValueAtTime(this.level.element, at + FADE);
    b.gain.gain.setValueAtTime(b.gain.gain.value, at);
    b.gain.gain.linearRampToValueAtTime(0, at + FADE);
    b.src.stop(at + FADE + 0.01);
    b.handedBack = true;
    this.note({ event: 'handed-back', track: b.track.id, delay: lead, at, score: found?.score });
  }

  finish() {
    const b = this.bridge;
    if (!b) return;
    this.bridge = null;
    if (!b.handedBack) { // the bridge ran out before the element took over: hear the element as it is
      this.gain.gain.cancelScheduledValues(0);
      this.gain.gain.value = this.level.element;
    }
  }

  // A seek, pause or jump elsewhere: stop any bridge and hear the element plainly (from what was heard last: the
  // element ran `delay` ahead of it).
  cancel() {
    const b = this.bridge;
    const ahead = this.delay.delayTime.value;
    if (ahead > 0 && !this.audio.ended && this.audio.readyState > 0) {
      this.audio.currentTime = Math.max(0, this.audio.currentTime - ahead);
    }
    this.bridge = null;
    if (b) {
      try { b.src.stop(); } catch { /* not started */ }
      b.src.disconnect();
      this.note({ event: 'cancelled', track: b.track.id });
    }
    this.gain.gain.cancelScheduledValues(0);
    this.gain.gain.value = this.level.element;
    this.delay.delayTime.cancelScheduledValues(0);
    this.delay.delayTime.value = 0;
  }

  note(entry) {
    this.log.push({ ...entry, t: this.ctx.currentTime });
    if (this.log.length > 50) this.log.shift();
  }
}

// c[k] = sum_i a[i] * b[k + i] for every k in 0..b.length - a.length, by FFT.
function correlate(a, b) {
  let size = 1;
  while (size < b.length + a.length) size *= 2;
  const ar = new Float64Array(size);
  const ai = new Float64Array(size);
  const br = new Float64Array(size);
  const bi = new Float64Array(size);
  ar.set(a);
  br.set(b);
  fft(ar, ai, false);
  fft(br, bi, false);
  for (let i = 0; i < size; i++) { // B * conj(A)
    const r = br[i] * ar[i] + bi[i] * ai[i];
    const im = bi[i] * ar[i] - br[i] * ai[i];
    br[i] = r;
    bi[i] = im;
  }
  fft(br, bi, true);
  return br.subarray(0, b.length - a.length + 1);
}

// In-place iterative radix-2 FFT; the inverse is scaled by 1/size.
function fft(re, im, inverse) {
  const size = re.length;
  for (let i = 1, j = 0; i < size; i++) {
    let bit = size >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = re[i];
      re[i] = re[j];
      re[j] = t;
      t = im[i];
      im[i] = im[j];
      im[j] = t;
    }
  }
  for (let len = 2; len <= size; len *= 2) {
    const ang = (inverse ? 2 : -2) * Math.PI / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < size; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const p = i + k;
        const q = p + len / 2;
        const tr = re[q] * cr - im[q] * ci;
        const ti = re[q] * ci + im[q] * cr;
        re[q] = re[p] - tr;
        im[q] = im[p] - ti;
        re[p] += tr;
        im[p] += ti;
        const nr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = nr;
      }
    }
  }
  if (inverse) for (let i = 0; i < size; i++) { re[i] /= size; im[i] /= size; }
}

function cut(ctx, whole, from, to) {
  const out = ctx.createBuffer(whole.numberOfChannels, Math.max(1, Math.min(to, whole.length) - from), whole.sampleRate);
  for (let c = 0; c < whole.numberOfChannels; c++) out.copyToChannel(whole.getChannelData(c).subarray(from, from + out.length), c);
  return out;
}

// The analyser down-mixes to mono (average of the channels); compare with the same. Cached on the buffer.
function mono(buffer) {
  if (buffer.__mono) return buffer.__mono;
  const m = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const d = buffer.getChannelData(c);
    for (let i = 0; i < m.length; i++) m[i] += d[i] / buffer.numberOfChannels;
  }
  buffer.__mono = m;
  return m;
}
