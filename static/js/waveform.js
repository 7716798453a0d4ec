// A seek bar drawn from a track's peaks (1000 values, 0..1, computed by the server at upload).
// Canvas rather than SVG: a few hundred bars redraw cheaply on every timeupdate. It is a role=slider, so
// keyboards (arrows, page up/down, home/end) and screen readers seek as well as a mouse or a finger does.

const BAR = 3; // css px per bar, gap included

export class Waveform {
  constructor(canvas, { onSeek, step = 5 } = {}) {
    this.canvas = canvas;
    this.onSeek = onSeek;
    this.step = step;
    this.peaks = null;
    this.duration = 0;
    this.time = 0;
    this.preview = null; // time shown while dragging, before the seek happens
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', () => { this.preview = null; this.draw(); });
    canvas.addEventListener('keydown', (e) => this.key(e));
    new ResizeObserver(() => this.draw()).observe(canvas);
    // Theme and accent changes recolour the bars.
    new MutationObserver(() => this.draw()).observe(document.documentElement, { attributes: true });
    matchMedia('(prefers-color-scheme: light)').addEventListener('change', () => this.draw());
  }

  set(peaks, duration) {
    this.peaks = Array.isArray(peaks) && peaks.length ? peaks : null;
    this.duration = Number(duration) || 0;
    this.time = 0;
    this.aria();
    this.draw();
  }

  setTime(t, duration) {
    if (duration && Number.isFinite(duration)) this.duration = duration;
    this.time = t;
    this.aria();
    this.draw();
  }

  aria() {
    const fmt = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
    const t = this.preview ?? this.time;
    this.canvas.setAttribute('aria-valuemax', String(Math.floor(this.duration)));
    this.canvas.setAttribute('aria-valuenow', String(Math.floor(t)));
    this.canvas.setAttribute('aria-valuetext', `${fmt(t)} of ${fmt(this.duration)}`);
  }

  fraction(e) {
    const r = this.canvas.getBoundingClientRect();
    return Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
  }

  down(e) {
    if (!this.duration || e.button > 0) return;
    this.canvas.setPointerCapture(e.pointerId);
    this.dragging = true;
    this.preview = this.fraction(e) * this.duration;
    this.draw();
  }

  move(e) {
    if (!this.dragging) return;
    this.preview = this.fraction(e) * this.duration;
    this.aria();
    this.draw();
  }

  up(e) {
    if (!this.dragging) return;
    this.dragging = false;
    const t = this.fraction(e) * this.duration;
    this.preview = null;
    this.time = t;
    this.onSeek?.(t);
    this.draw();
  }

  key(e) {
    if (!this.duration) return;
    const moves = { ArrowLeft: -this.step, ArrowDown: -this.step, ArrowRight: this.step, ArrowUp: this.step,
      PageDown: -30, PageUp: 30 };
    let t;
    if (e.key in moves) t = this.time + moves[e.key];
    else if (e.key === 'Home') t = 0;
    else if (e.key === 'End') t = this.duration - 0.5;
    else return;
    e.preventDefault();
    e.stopPropagation(); // the page-wide arrow keys would seek a second time
    t = Math.min(Math.max(0, t), this.duration);
    this.time = t;
    this.onSeek?.(t);
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const style = getComputedStyle(c);
    const played = style.getPropertyValue('--accent').trim() || '#6a9fff';
    const rest = style.getPropertyValue('--muted').trim() || '#888';
    const at = this.duration ? (this.preview ?? this.time) / this.duration : 0;
    const bars = Math.max(1, Math.floor(w / BAR));
    for (let i = 0; i < bars; i++) {
      let v = 0.08; // without peaks: a flat line that still shows progress
      if (this.peaks) {
        const from = Math.floor((i / bars) * this.peaks.length);
        const to = Math.max(from + 1, Math.floor(((i + 1) / bars) * this.peaks.length));
        v = 0;
        for (let j = from; j < to; j++) v = Math.max(v, this.peaks[j] || 0);
        v = Math.max(0.04, Math.min(1, v));
      }
      const bh = Math.max(2, v * h);
      g.fillStyle = (i + 0.5) / bars <= at ? played : rest;
      g.globalAlpha = (i + 0.5) / bars <= at ? 1 : 0.45;
      g.fillRect(i * BAR, (h - bh) / 2, BAR - 1, bh);
    }
    g.globalAlpha = 1;
  }
}
