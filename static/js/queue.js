// The play queue: track ids in play order, the current index, the repeat mode and the position in the current
// track. It is kept in localStorage always (a reload resumes even signed out) and in the server's /queue/ when
// signed in (another device resumes too). Server saves carry If-Match with the last revision; a 409 means another
// tab or device saved since, so we take its revision and save ours on top: this tab is the one playing.
// Every change is also told to this browser's other tabs (BroadcastChannel), which show the same queue at once.

import { api, signedIn } from './api.js';

const KEY = 'plyrd.queue';
const MAX = 500; // the server's limit

export class Queue {
  constructor() {
    this.ids = [];
    this.index = 0;
    this.repeat = 'none'; // none | all | one
    this.progressMs = 0;
    this.revision = null;
    this.timer = null;
    this.saving = null;
    this.onRemote = null; // set by the player: another tab changed the queue
    this.tab = Math.random().toString(36).slice(2);
    if ('BroadcastChannel' in window) {
      this.channel = new BroadcastChannel('plyrd-queue');
      this.channel.onmessage = (e) => {
        if (e.data?.tab !== this.tab && e.data?.state && this.onRemote) this.onRemote(e.data.state);
      };
    }
  }

  get current() {
    return this.ids[this.index] ?? null;
  }

  state() {
    const index = Math.min(this.index, Math.max(0, this.ids.length - 1));
    return {
      track_ids: this.ids,
      current_index: index,
      current_track_id: this.ids[index] ?? null,
      repeat_mode: this.repeat,
      progress_ms: Math.max(0, Math.round(this.progressMs)),
      shuffle: false,
      original_order_ids: [],
      auto_advance: true,
    };
  }

  apply(state, tracks = []) {
    // Other clients (plyr.fm's player) store file ids; map them to track ids through the tracks the server sent.
    const byFile = new Map();
    for (const t of tracks) {
      byFile.set(t.file_id, t.id);
      byFile.set(t.original_file_id, t.id);
    }
    const ids = (state.track_ids || []).map((e) => (typeof e === 'number' ? e : byFile.get(e))).filter(Boolean);
    this.ids = ids.slice(0, MAX);
    this.index = Math.min(state.current_index || 0, Math.max(0, this.ids.length - 1));
    this.repeat = ['none', 'all', 'one'].includes(state.repeat_mode) ? state.repeat_mode : 'none';
    this.progressMs = state.progress_ms || 0;
  }

  // Where to resume from: the server when signed in (falling back to this browser's copy), else this browser.
  async restore() {
    let local = null;
    try {
      local = JSON.parse(localStorage.getItem(KEY) || 'null');
    } catch { /* a damaged copy is as good as none */ }
    if (signedIn()) {
      try {
        const snap = await api('/queue/');
        this.revision = snap.revision;
        if (snap.state.track_ids.length || !local) {
          this.apply(snap.state, snap.tracks);
          return snap.tracks;
        }
      } catch { /* offline or signed out meanwhile: use the local copy */ }
    }
    if (local) this.apply(local);
    return [];
  }

  saveLocal() {
    try {
      localStorage.setItem(KEY, JSON.stringify(this.state()));
    } catch { /* storage full or disabled: the server copy still works */ }
  }

  // Debounced: a burst of changes (drag, several "add to queue") becomes one PUT.
  save({ soon = 600 } = {}) {
    this.saveLocal();
    this.channel?.postMessage({ tab: this.tab, state: this.state() });
    if (!signedIn()) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.push(), soon);
  }

  async push({ keepalive = false } = {}) {
    if (!signedIn()) return;
    clearTimeout(this.timer);
    if (this.saving) await this.saving.catch(() => {});
    const send = (revision) => api('/queue/', {
      method: 'PUT', body: { state: this.state() }, keepalive,
      headers: { 'If-Match': revision == null ? '*' : `"${revision}"` },
    });
    this.saving = (async () => {
      try {
        this.revision = (await send(this.revision)).revision;
      } catch (e) {
        if (e.status === 409 || e.status === 428) {
          const snap = await api('/queue/');
          this.revision = (await send(snap.revision)).revision;
        } else if (e.status !== 401) {
          console.warn('queue not saved:', e.message);
        }
      }
    })();
    return this.saving;
  }
}
