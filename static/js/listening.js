// Play counting by plyr.fm's rule, shared by the player bar and the embeds: a play is reported once per
// listening, after 30 s of real listening or half of a shorter track. Only time that passes while playing
// counts; seeks, jumps and restored positions do not.

import { api } from './api.js';

const COUNT_AFTER = 30; // s of real listening (or half a shorter track) before a play is reported
const MAX_STEP = 5; // s: a larger jump between timeupdates is a seek, not listening

export class Listening {
  // `report(path, body)` sends the play; the player uses the JSON API, embeds a request that also works from a
  // sandboxed iframe.
  constructor(audio, { report = (path, body) => api(path, { method: 'POST', body }) } = {}) {
    this.audio = audio;
    this.report = report;
    this.start(null);
    audio.addEventListener('seeking', () => this.jump());
    audio.addEventListener('seeked', () => { this.lastT = audio.currentTime; });
  }

  // A new listening of `track` ({id, duration}) begins: nothing heard yet, nothing reported.
  start(track) {
    this.track = track;
    this.listened = 0;
    this.counted = false;
    this.lastT = null;
  }

  // The position moved by itself (a seek the audio element has not reported yet): the next step is not listening.
  jump() {
    this.lastT = null;
  }

  // Call on every timeupdate; resolves to the server's answer when this update reported the play, else null.
  tick() {
    const a = this.audio;
    const t = a.currentTime;
    if (!a.paused && !a.seeking && this.lastT != null) {
      const step = t - this.lastT;
      if (step > 0 && step <= MAX_STEP) this.listened += step;
    }
    this.lastT = t;
    const track = this.track;
    if (!track || this.counted) return null;
    const duration = Number(track.duration) || a.duration;
    if (!duration || this.listened < Math.min(COUNT_AFTER, duration / 2)) return null;
    this.counted = true; // one report per listening; the server dedups repeats anyway
    return Promise.resolve()
      .then(() => this.report(`/tracks/${track.id}/play`, { listened_ms: Math.ceil(this.listened * 1000) }))
      .catch((e) => {
        console.warn('play not counted:', e.message);
        return null;
      });
  }
}
