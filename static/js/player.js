// The player: one <audio> in the shell (never replaced by navigation), the bar's controls, the waveform seek
// bar, the queue panel, play counting, loudness normalisation, Media Session, next-track preloading and gapless
// playback (gapless.js bridges each boundary in Web Audio while the page is visible).

import { announce, api, clock, signedIn } from './api.js';
import { h, icon, safeUrl, setUrl } from './dom.js';
import { Gapless } from './gapless.js';
import { Listening } from './listening.js';
import { Queue } from './queue.js';
import { makeSortable } from './sortable.js';
import { Waveform } from './waveform.js';

const VOLUME_KEY = 'plyrd.volume';
const MUTED_KEY = 'plyrd.muted';
const RESTART_AFTER = 3; // s: "previous" past this point restarts the track instead
const GAIN_DB = [-12, 6]; // clamp the stored gain: never deafening, never boosting into hard clipping
const NOW_PLAYING_MS = 10000;
const SAVE_EVERY = 15; // s of playback between position saves

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
// Every track plays from the node's own /audio/ (another node's track with only an audio URL too: the node relays it,
// as Web Audio's loudness gain would play a cross-origin file without CORS as silence).
const audioSource = (t) => `/audio/${t.file_id}`;

export class Player {
  constructor(root, panel) {
    this.root = root;
    this.panel = panel;
    this.audio = root.querySelector('audio');
    this.queue = new Queue();
    this.cache = new Map(); // track id -> the track's JSON (with peaks)
    this.track = null;
    this.loadToken = 0;
    this.listening = new Listening(this.audio);
    this.savedT = 0;
    this.pendingSeek = null;
    const stored = parseFloat(localStorage.getItem(VOLUME_KEY) ?? '1');
    this.volume = Number.isFinite(stored) ? clamp(stored, 0, 1) : 1;
    this.muted = localStorage.getItem(MUTED_KEY) === '1';
    this.wave = new Waveform(this.$('wave'), { onSeek: (t) => this.seek(t) });
    this.bind();
  }

  $(name) {
    return this.root.querySelector(`[data-player="${name}"]`);
  }

  all(name) {
    return document.querySelectorAll(`[data-player="${name}"]`);
  }

  // ---- setup

  bind() {
    document.addEventListener('click', (e) => {
      const b = e.target.closest('[data-player]');
      if (!b || b.tagName !== 'BUTTON') return;
      this.unlockAudio();
      const acts = { toggle: () => this.toggle(), prev: () => this.previous(), next: () => this.next(),
        shuffle: () => this.shuffle(), repeat: () => this.cycleRepeat(), mute: () => this.toggleMute(),
        queue: () => this.toggleQueue() };
      acts[b.dataset.player]?.();
    });
    const vol = this.$('volume');
    vol.value = String(this.volume);
    vol.addEventListener('input', () => this.setVolume(parseFloat(vol.value)));
    this.panel.addEventListener('click', (e) => this.queueClick(e));
    makeSortable(this.panel.querySelector('[data-queue="list"]'), {
      onMove: (from, to) => this.move(from, to),
    });

    const a = this.audio;
    a.addEventListener('timeupdate', () => this.onTime());
    a.addEventListener('seeked', () => this.positionState());
    a.addEventListener('loadedmetadata', () => this.onMetadata());
    a.addEventListener('durationchange', () => this.$('duration').textContent = clock(this.duration()));
    a.addEventListener('playing', () => this.setState('playing'));
    a.addEventListener('waiting', () => this.setState('loading'));
    a.addEventListener('pause', () => {
      if (!a.ended) this.gapless?.cancel(); // paused by the listener: no bridge into the next track
      this.setState(a.ended ? 'ended' : 'paused');
      if (this.gaveWay) this.gaveWay = false;
      else this.savePosition();
    });
    a.addEventListener('ended', () => this.onEnded());
    a.addEventListener('canplaythrough', () => this.preloadNext());
    a.addEventListener('error', () => {
      if (!this.track) return;
      this.setState('paused');
      announce(`could not play ${this.track.title}`);
    });

    // Only one tab plays: a tab that starts playing says so, and any other tab that is playing pauses.
    if ('BroadcastChannel' in window) {
      const tab = Math.random().toString(36).slice(2);
      const channel = new BroadcastChannel('plyrd-player');
      channel.onmessage = (e) => {
        if (e.data?.type === 'playing' && e.data.tab !== tab && !a.paused) {
          this.gaveWay = true; // the playing tab owns the queue now: this pause saves nothing over it
          a.pause();
        }
      };
      a.addEventListener('play', () => channel.postMessage({ type: 'playing', tab }));
    }

    if ('mediaSession' in navigator) {
      const ms = navigator.mediaSession;
      const on = (action, fn) => { try { ms.setActionHandler(action, fn); } catch { /* unsupported action */ } };
      on('play', () => this.play());
      on('pause', () => this.audio.pause());
      on('previoustrack', () => this.previous());
      on('nexttrack', () => this.next());
      on('seekto', (d) => this.seek(d.seekTime));
      // seekbackward/seekforward left out on purpose: iOS would show them instead of previous/next.
    }
    window.addEventListener('pagehide', () => this.savePosition({ leaving: true }));
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.savePosition({ leaving: true });
    });
    setInterval(() => this.reportNowPlaying(), NOW_PLAYING_MS);
    this.applyGain();
    this.renderVolume();
  }

  // Another tab of this browser changed the queue: show the same one. The tab that plays keeps its track (found
  // again in the new order); a paused tab follows the other tab's current track, paused. Nothing is saved back:
  // the other tab already did, and an echo would bounce between tabs.
  adoptRemote(state) {
    const keep = this.track?.id;
    const playing = this.track && !this.audio.paused;
    this.queue.apply(state);
    if (playing) {
      const i = this.queue.ids.indexOf(keep);
      if (i >= 0) this.queue.index = i;
      this.queue.progressMs = this.audio.currentTime * 1000;
    } else if (this.queue.current != null && this.queue.current !== keep) {
      this.load(this.queue.index, { autoplay: false, at: this.queue.progressMs / 1000, remote: true });
    }
    this.queue.saveLocal();
    this.renderQueue();
    this.renderRepeat();
  }

  // Resume whatever was queued before the reload, paused at the saved position (browsers refuse autoplay anyway).
  async init() {
    this.queue.onRemote = (state) => this.adoptRemote(state);
    const tracks = await this.queue.restore();
    for (const t of tracks) this.cache.set(t.id, t);
    if (this.queue.current != null) await this.load(this.queue.index, { autoplay: false, at: this.queue.progressMs / 1000 });
    this.renderQueue();
  }

  // Web Audio carries the loudness gain (which may boost a quiet track); it can only start inside a user gesture,
  // so every click and key that may lead to playback calls this first. Without it, gain falls back to volume.
  unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx) {
      try {
        this.ctx = new Ctx();
        this.gapless = new Gapless(this.ctx, this.audio);
        this.gainNode = this.gapless.gain;
      } catch {
        this.ctx = null;
        this.gapless = null;
        this.gainNode = null;
      }
      this.applyGain();
      if (this.track) this.preloadNext(); // decode for the gapless bridge now that there is a graph
    }
    if (this.ctx?.state === 'suspended') this.ctx.resume().catch(() => {});
  }

  // ---- loading and transport

  // A track's JSON with its peaks (lists and the queue answer without them, so those are fetched again once).
  async get(id) {
    if (this.cache.get(id)?.peaks) return this.cache.get(id);
    const t = await api(`/tracks/${id}`);
    this.cache.set(id, t);
    return t;
  }

  // Play a list (a page's tracks) from one of them: the queue becomes that list.
  playList(ids, index, { at = 0 } = {}) {
    const id = ids[index];
    if (this.track && this.track.id === id && at === 0) {
      this.toggle();
      return;
    }
    this.queue.ids = ids.slice(0, 500);
    this.queue.index = index;
    this.load(index, { autoplay: true, at });
  }

  // Play one track from a position (a timed comment): a seek if it is already loaded.
  playAt(id, seconds) {
    if (this.track && this.track.id === id) {
      this.seek(seconds);
      if (this.audio.paused) this.play();
      return;
    }
    this.playList([id], 0, { at: seconds });
  }

  async load(index, { autoplay = true, at = 0, remote = false } = {}) {
    const id = this.queue.ids[index];
    if (id == null) return;
    this.queue.index = index;
    const token = ++this.loadToken;
    this.setState('loading');
    let track;
    try {
      track = await this.get(id);
    } catch (e) {
      if (token === this.loadToken) {
        this.setState('paused');
        announce(`could not load the track: ${e.message}`);
      }
      return;
    }
    if (token !== this.loadToken) return;
    if (!track.playable) {
      // another node's track whose record is gone (or one still processing): say so and move on
      announce(`${track.title} is ${track.status === 'unavailable' ? 'unavailable' : 'not ready yet'}`);
      if (autoplay && index + 1 < this.queue.ids.length) this.load(index + 1, { autoplay });
      else this.setState('paused');
      return;
    }
    this.begin(track, { autoplay, at, remote });
  }

  // Synchronous on purpose: auto-advance with a prefetched track swaps the source inside the `ended` event,
  // which is what keeps lock-screen playback going on phones. `auto`: that advance, which a gapless bridge may be
  // carrying already: the element then starts a little ahead of it, muted, and takes over once lined up.
  begin(track, { autoplay, at = 0, remote = false, auto = false }) {
    if (this.gapless) {
      const bridged = auto ? this.gapless.takeOver(track) : (this.gapless.cancel(), null);
      if (bridged) at = bridged.at;
    }
    this.track = track;
    this.listening.start(track);
    this.savedT = at;
    this.pendingSeek = at > 0 ? at : null;
    this.audio.src = audioSource(track);
    this.applyGain();
    this.renderTrack();
    this.renderQueue();
    this.mediaSession();
    this.queue.progressMs = at * 1000;
    if (!remote) this.queue.save();
    if (autoplay) this.play();
    else this.setState('paused');
    document.dispatchEvent(new CustomEvent('plyrd:track', { detail: track }));
  }

  async play() {
    if (!this.track) {
      if (this.queue.ids.length) await this.load(this.queue.index, { autoplay: true });
      return;
    }
    if (this.ctx?.state === 'suspended') this.ctx.resume().catch(() => {});
    try {
      await this.audio.play();
    } catch (e) {
      if (e.name !== 'AbortError') this.setState('paused'); // NotAllowedError: wait for a click
    }
  }

  toggle() {
    if (this.track && !this.audio.paused) this.audio.pause();
    else this.play();
  }

  // The element's duration, or the track's while the element has none: a music-folder file browsers cannot play
  // comes as an MP3 encoded live on its first play, a stream without a length (Infinity) until it is cached.
  duration() {
    return Number.isFinite(this.audio.duration) ? this.audio.duration : (this.track?.duration ?? 0);
  }

  seek(t) {
    if (!this.track) return;
    const dur = this.duration();
    const to = clamp(t, 0, Math.max(0, (dur || 0) - 0.05));
    this.gapless?.cancel();
    if (this.audio.readyState === 0) this.pendingSeek = to;
    else this.audio.currentTime = to;
    this.listening.jump();
    this.wave.setTime(to);
    this.$('current').textContent = clock(to);
    document.dispatchEvent(new CustomEvent('plyrd:time', { detail: { id: this.track.id, time: to } }));
  }

  // The index auto-advance plays after the current track (repeat one: itself), or -1 at the end of the queue.
  upNext() {
    const q = this.queue;
    if (q.repeat === 'one' && q.ids.length) return q.index;
    if (q.index + 1 < q.ids.length) return q.index + 1;
    return q.repeat === 'all' && q.ids.length > 1 ? 0 : -1;
  }

  next({ auto = false } = {}) {
    const q = this.queue;
    let i = q.index + 1;
    if (i >= q.ids.length) {
      if (q.repeat === 'all' && q.ids.length) i = 0;
      else {
        if (!auto) announce('end of the queue');
        this.gapless?.cancel();
        return;
      }
    }
    const cached = this.cache.get(q.ids[i]);
    if (cached?.peaks) {
      q.index = i;
      this.loadToken++;
      this.begin(cached, { autoplay: true, auto });
    } else {
      this.load(i, { autoplay: true });
    }
  }

  previous() {
    const q = this.queue;
    if (this.audio.currentTime > RESTART_AFTER || (q.index === 0 && q.repeat !== 'all') || q.ids.length < 2) {
      this.seek(0);
      return;
    }
    this.load(q.index === 0 ? q.ids.length - 1 : q.index - 1, { autoplay: true });
  }

  onEnded() {
    // A bridge starts the next track on the graph's clock; the element may report its end a moment early, and
    // switching it now would cut its last samples.
    const wait = this.gapless?.bridge ? this.gapless.bridge.start - this.ctx.currentTime : 0;
    if (wait > 0.002) {
      // Only while timers and the graph run on time; hidden (timers throttled, the graph maybe suspended: a locked
      // phone) the plain swap goes on now, as it always did.
      if (wait < 0.5 && this.ctx.state === 'running' && document.visibilityState === 'visible') {
        setTimeout(() => this.audio.ended && this.onEnded(), wait * 1000 + 2);
        return;
      }
      this.gapless.cancel();
    }
    if (this.queue.repeat === 'one' && this.gapless?.bridge) {
      this.loadToken++;
      this.begin(this.track, { autoplay: true, auto: true }); // the same file again, carried by the bridge
      return;
    }
    if (this.queue.repeat === 'one') {
      this.listening.start(this.track); // each time round is a new listening
      this.audio.currentTime = 0;
      this.play();
      return;
    }
    this.next({ auto: true });
  }

  onMetadata() {
    if (this.pendingSeek != null) {
      this.audio.currentTime = Math.min(this.pendingSeek, Math.max(0, this.audio.duration - 0.25));
      this.pendingSeek = null;
    }
    this.$('duration').textContent = clock(this.duration());
    this.positionState();
  }

  // ---- listening: position, play counting, persistence

  onTime() {
    const t = this.audio.currentTime;
    this.gapless && this.track && this.keepGapless(t);
    const reported = this.listening.tick();
    const id = this.track?.id;
    reported?.then((r) => r && document.dispatchEvent(new CustomEvent('plyrd:played', { detail: { id, ...r } })));
    this.wave.setTime(t, this.audio.duration);
    this.$('current').textContent = clock(t);
    this.queue.progressMs = t * 1000;
    if (Math.abs(t - this.savedT) >= SAVE_EVERY) this.savePosition();
    if (this.track) document.dispatchEvent(new CustomEvent('plyrd:time', { detail: { id: this.track.id, time: t } }));
  }

  // Close to the end, bridge to the next track; just after a bridged boundary, hand the sound back to the element.
  keepGapless(t) {
    const g = this.gapless;
    const b = g.bridge;
    const a = this.audio;
    if (b && !b.handedBack && b.track.id === this.track.id) {
      if (!a.paused && !a.seeking && a.readyState >= 3 && t >= b.notBefore) g.handBack();
      return;
    }
    const i = this.upNext();
    if (i >= 0) g.maybeArm(this.track, this.queue.ids[i]);
  }

  savePosition({ leaving = false } = {}) {
    if (!this.track) return;
    this.savedT = this.audio.currentTime;
    this.queue.progressMs = this.audio.currentTime * 1000;
    this.queue.saveLocal();
    if (leaving) this.queue.push({ keepalive: true });
    else this.queue.save();
  }

  reportNowPlaying() {
    if (!signedIn() || !this.track) return;
    const playing = !this.audio.paused;
    if (!playing && this.reportedPaused) return;
    this.reportedPaused = !playing;
    api('/now-playing/', { method: 'POST', body: { track_id: this.track.id,
      progress_ms: Math.round(this.audio.currentTime * 1000), is_playing: playing } }).catch(() => {});
  }

  // ---- volume and loudness

  gainFactor(track) {
    return 10 ** (clamp(Number(track?.track_gain_db) || 0, GAIN_DB[0], GAIN_DB[1]) / 20);
  }

  applyGain() {
    const factor = this.gainFactor(this.track);
    this.audio.muted = this.muted;
    if (this.gapless) {
      this.gapless.setLevel(factor, this.muted ? 0 : this.volume);
      this.audio.volume = this.volume;
    } else {
      this.audio.volume = this.volume * Math.min(1, factor); // without Web Audio, a gain can only cut
    }
  }

  setVolume(v) {
    this.volume = clamp(Number.isFinite(v) ? v : 1, 0, 1);
    if (this.volume > 0 && this.muted) this.muted = false;
    localStorage.setItem(VOLUME_KEY, String(this.volume));
    localStorage.setItem(MUTED_KEY, this.muted ? '1' : '0');
    this.applyGain();
    this.renderVolume();
  }

  toggleMute() {
    this.muted = !this.muted;
    localStorage.setItem(MUTED_KEY, this.muted ? '1' : '0');
    this.applyGain();
    this.renderVolume();
    announce(this.muted ? 'muted' : 'unmuted');
  }

  renderVolume() {
    this.$('volume').value = String(this.muted ? 0 : this.volume);
    for (const b of this.all('mute')) {
      b.setAttribute('aria-pressed', String(this.muted));
      b.setAttribute('aria-label', this.muted ? 'unmute (m)' : 'mute (m)');
      b.replaceChildren(icon(this.muted ? 'mute' : 'volume'));
    }
  }

  // ---- queue actions

  enqueue(id, { next = false } = {}) {
    const q = this.queue;
    if (!q.ids.length) {
      this.playList([id], 0);
      return;
    }
    if (next) q.ids.splice(q.index + 1, 0, id);
    else q.ids.push(id);
    q.save();
    this.renderQueue();
    this.preloadNext();  // the menu and the + button say "added to the queue" in a toast
  }

  remove(i) {
    const q = this.queue;
    if (i === q.index) return; // the playing track stays; skip it with next instead
    q.ids.splice(i, 1);
    if (i < q.index) q.index--;
    q.save();
    this.renderQueue();
  }

  clearUpNext() {
    const q = this.queue;
    q.ids = q.ids.slice(0, q.index + 1);
    q.save();
    this.renderQueue();
    announce('cleared up next');
  }

  move(from, to) {
    const q = this.queue;
    const [id] = q.ids.splice(from, 1);
    q.ids.splice(to, 0, id);
    if (q.index === from) q.index = to;
    else if (from < q.index && to >= q.index) q.index--;
    else if (from > q.index && to <= q.index) q.index++;
    q.save();
    const hadFocus = this.panel.contains(document.activeElement);
    this.renderQueue();
    if (hadFocus) this.panel.querySelector(`[data-index="${to}"] [data-sort-handle]`)?.focus();
  }

  // Shuffle is an action, as in plyr.fm: it reshuffles what comes next (never the same order twice in a row).
  shuffle() {
    const q = this.queue;
    const rest = q.ids.slice(q.index + 1);
    if (rest.length < 2) {
      announce('nothing to shuffle');
      return;
    }
    const before = rest.join();
    do {
      for (let i = rest.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [rest[i], rest[j]] = [rest[j], rest[i]];
      }
    } while (rest.join() === before);
    q.ids = [...q.ids.slice(0, q.index + 1), ...rest];
    q.save();
    this.renderQueue();
    this.preloadNext();
    announce('shuffled up next');
  }

  cycleRepeat() {
    const order = ['none', 'all', 'one'];
    this.queue.repeat = order[(order.indexOf(this.queue.repeat) + 1) % order.length];
    this.queue.save();
    this.renderRepeat();
    this.preloadNext(); // with repeat all, the first track is now the next one
    announce(`repeat ${this.queue.repeat === 'none' ? 'off' : this.queue.repeat}`);
  }

  renderRepeat() {
    const mode = this.queue.repeat;
    for (const b of this.all('repeat')) {
      const label = `repeat: ${mode === 'none' ? 'off' : mode}`;
      b.setAttribute('aria-label', label);
      b.title = label;
      b.setAttribute('aria-pressed', String(mode !== 'none'));
      b.replaceChildren(icon(mode === 'one' ? 'repeat-one' : 'repeat'));
    }
  }

  // Warm the browser's cache with the next track (its JSON now, its audio through a detached element), so the
  // switch at the end of this one is as close to gapless as a plain <audio> allows.
  // With Web Audio, both tracks are decoded for the gapless bridge too.
  preloadNext() {
    const i = this.upNext();
    if (i < 0) return;
    this.get(this.queue.ids[i]).then((t) => {
      if (this.gapless && this.track) this.gapless.prepare(this.track, t, this.gainFactor(t));
      if (this.preloadedFile === t.file_id || t.file_id === this.track?.file_id) return;
      this.preloadedFile = t.file_id;
      this.preloader ??= Object.assign(new Audio(), { preload: 'auto', muted: true });
      this.preloader.src = audioSource(t);
    }).catch(() => {});
  }

  // ---- rendering

  setState(state) {
    this.root.dataset.state = this.track ? state : 'empty';
    const playing = state === 'playing' || (state === 'loading' && !this.audio.paused);
    for (const b of this.all('toggle')) {
      b.setAttribute('aria-label', playing ? 'pause (space)' : 'play (space)');
      b.title = playing ? 'pause (space)' : 'play (space)';
      b.replaceChildren(icon(playing ? 'pause' : 'play'));
    }
    if ('mediaSession' in navigator) navigator.mediaSession.playbackState = playing ? 'playing' : 'paused';
    this.markCurrent();
    if (state === 'paused') this.reportNowPlaying();
  }

  renderTrack() {
    const t = this.track;
    const title = this.$('title');
    title.textContent = t.title;
    title.href = `/track/${encodeURIComponent(t.id)}`;
    const artist = this.$('artist');
    artist.textContent = t.artist;
    // A library track's artist is its file's tag, nobody's profile: no link.
    if (t.source === 'library') artist.removeAttribute('href');
    else artist.href = `/u/${encodeURIComponent(t.artist_handle || t.artist_did)}`;
    const art = this.root.querySelector('.p-art');
    setUrl(art, 'src', t.thumbnail_url, '/static/img/cover.svg');
    art.classList.toggle('sensitive', Boolean(t.sensitive));
    this.$('duration').textContent = clock(t.duration);
    this.$('current').textContent = clock(this.pendingSeek || 0);
    this.wave.set(t.peaks, t.duration);
    if (this.pendingSeek) this.wave.setTime(this.pendingSeek);
    this.renderRepeat();
  }

  // Rows for the playing track, on whatever page is showing, say so (called after every navigation too).
  markCurrent() {
    const id = this.track?.id;
    const playing = Boolean(this.track) && !this.audio.paused;
    for (const row of document.querySelectorAll('#main [data-track-id]')) {
      const here = Number(row.dataset.trackId) === id;
      if (row.classList.contains('track')) row.classList.toggle('current', here);
      const btn = row.matches('[data-action="play"]') ? row : row.querySelector(':scope > [data-action="play"]');
      if (!btn) continue;
      const now = here && playing;
      if (btn.dataset.playing === String(now)) continue;
      btn.dataset.playing = String(now);
      const label = btn.querySelector('span');
      if (label) {
        btn.dataset.label ??= label.textContent; // "play", or "play from 0:40" on a link with a time
        label.textContent = now ? 'pause' : btn.dataset.label;
      }
      else btn.setAttribute('aria-label', btn.getAttribute('aria-label').replace(/^(play|pause) /, now ? 'pause ' : 'play '));
      btn.querySelector('use')?.setAttribute('href', `/static/icons.svg#${now ? 'pause' : 'play'}`);
    }
  }

  mediaSession() {
    if (!('mediaSession' in navigator) || !window.MediaMetadata) return;
    const t = this.track;
    const artwork = [];
    // The lock screen cannot blur: sensitive artwork is left off unless this viewer opted in.
    const showArt = !t.sensitive || document.body.hasAttribute('data-show-sensitive');
    const thumb = showArt && safeUrl(t.thumbnail_url);
    const image = showArt && safeUrl(t.image_url);
    if (thumb) artwork.push({ src: thumb, sizes: '96x96', type: 'image/webp' });
    if (image) artwork.push({ src: image, sizes: '1000x1000', type: 'image/webp' });
    navigator.mediaSession.metadata = new MediaMetadata({ title: t.title, artist: t.artist, album: t.album?.title || t.album_name || '', artwork });
  }

  positionState() {
    const a = this.audio;
    if (!('mediaSession' in navigator) || !navigator.mediaSession.setPositionState) return;
    if (!Number.isFinite(a.duration) || a.duration <= 0) return;
    try {
      navigator.mediaSession.setPositionState({ duration: a.duration, playbackRate: a.playbackRate || 1,
        position: clamp(a.currentTime, 0, a.duration) });
    } catch { /* some browsers refuse while loading */ }
  }

  // ---- the queue panel

  toggleQueue(open) {
    const show = open ?? this.panel.hidden;
    this.panel.hidden = !show;
    for (const b of this.all('queue')) b.setAttribute('aria-expanded', String(show));
    if (show) {
      this.renderQueue();
      this.panel.querySelector('h2').setAttribute('tabindex', '-1');
      this.panel.querySelector('h2').focus();
    } else {
      this.$('queue').focus();
    }
  }

  renderQueue() {
    this.renderRepeat();
    // The queue changed: a bridge into a track that no longer comes next is stopped before it is heard.
    const b = this.gapless?.bridge;
    if (b && !b.handedBack && b.track.id !== this.track?.id && b.track.id !== this.queue.ids[this.upNext()]) {
      this.gapless.cancel();
    }
    if (this.panel.hidden) return; // drawn when opened
    const list = this.panel.querySelector('[data-queue="list"]');
    const q = this.queue;
    this.panel.querySelector('[data-queue="empty"]').hidden = q.ids.length > 0;
    const missing = [];
    list.replaceChildren(...q.ids.map((id, i) => {
      const t = this.cache.get(id);
      if (!t) missing.push(id);
      const title = t ? t.title : `track ${id}`;
      const li = h('li', { class: `track${i < q.index ? ' played' : ''}`, dataset: { index: i },
        'aria-current': i === q.index ? 'true' : null },
      h('button', { type: 'button', class: 'icon handle', 'data-sort-handle': true,
        'aria-label': `move ${title} (arrow keys)` }, icon('grip')),
      h('span', { class: 't-meta' },
        h('button', { type: 'button', class: 't-title', 'data-queue': 'jump' }, title),
        h('span', { class: 't-artist' }, t ? t.artist : '')),
      h('button', { type: 'button', class: 'icon', 'data-queue': 'remove',
        'aria-label': `remove ${title} from the queue`, disabled: i === q.index }, icon('close')));
      return li;
    }));
    // Tracks restored from this browser's copy are fetched when the panel first needs their names.
    if (missing.length) {
      Promise.allSettled(missing.slice(0, 50).map((id) => this.get(id))).then(() => {
        if (missing.slice(0, 50).some((id) => this.cache.has(id))) this.renderQueue();
      });
    }
  }

  queueClick(e) {
    const b = e.target.closest('[data-queue]');
    if (!b) return;
    const li = b.closest('li');
    const i = li ? Number(li.dataset.index) : -1;
    if (b.dataset.queue === 'jump') {
      this.unlockAudio();
      this.load(i, { autoplay: true });
    } else if (b.dataset.queue === 'remove') this.remove(i);
    else if (b.dataset.queue === 'clear') this.clearUpNext();
    else if (b.dataset.queue === 'close') this.toggleQueue(false);
  }
}
