// The embeds (/embed/track/{id}, /embed/playlist/{id}, /embed/album/{handle}/{slug}) in an iframe: their own small
// <audio> and waveform, no navigation, no account. A list embed plays its tracks in order and moves on by itself.
// Loudness gain is applied by volume (a cut only), which needs no Web Audio and works in sandboxes. Plays count by
// the player's rule; the report is a simple request, so a sandboxed (opaque-origin) iframe can send it too.

import { clock, csrfToken } from './api.js';
import { safeUrl, setIcon, setUrl } from './dom.js';
import { Listening } from './listening.js';
import { Waveform } from './waveform.js';

const root = document.querySelector('[data-embed]');
const $ = (name) => root.querySelector(`[data-e="${name}"]`);
const audio = $('audio');
const button = $('toggle');
const items = [...root.querySelectorAll('[data-e-index]')];
let current = -1;
let duration = 0;

function report(path, body) {
  let csrf = '';
  try { csrf = csrfToken(); } catch { /* sandboxed: no cookies, an anonymous listener */ }
  // A string body is text/plain: no CORS preflight. The CSRF header is only there when a session cookie may be.
  return fetch(path, { method: 'POST', body: JSON.stringify(body), credentials: 'same-origin',
    headers: csrf ? { 'X-CSRF-Token': csrf } : {} }).then((r) => (r.ok ? r.json() : null));
}

const listening = new Listening(audio, { report });
const wave = new Waveform($('wave'), {
  onSeek: (t) => {
    if (!audio.src) choose(Math.max(0, current));
    audio.currentTime = t;
    listening.jump();
  },
});

// Choose which track the card shows and plays: the page's one track, or item i of the list.
function choose(i) {
  const data = items.length ? items[i].dataset : root.dataset;
  current = i;
  duration = Number(data.duration) || 0;
  audio.src = data.src;
  const gain = Math.max(-12, Math.min(6, Number(data.gain) || 0));
  audio.volume = Math.min(1, 10 ** (gain / 20));
  listening.start({ id: Number(data.trackId), duration });
  if (items.length) {
    const peaks = data.peaks ? data.peaks.split(',').map((p) => Number(p) / 100) : [];
    wave.set(peaks, duration);
    $('title').textContent = data.title;
    $('by').textContent = data.artist;
    const art = $('art');
    setUrl(art, 'src', data.art, safeUrl(art.dataset.cover) || '/static/img/cover.svg'); // or the list's cover
    art.classList.toggle('sensitive', 'sensitive' in data);
    $('duration').textContent = clock(duration);
    items.forEach((b, n) => b.toggleAttribute('aria-current', n === i));
  }
}

if (!items.length) wave.set(JSON.parse(root.querySelector('[data-peaks]').textContent || '[]'), Number(root.dataset.duration));

button.addEventListener('click', () => {
  if (!audio.src) choose(0);
  if (audio.paused) audio.play().catch(() => {});
  else audio.pause();
});
for (const item of items) {
  item.addEventListener('click', () => {
    choose(Number(item.dataset.eIndex));
    audio.play().catch(() => {});
  });
}
const icon = (name, label) => {
  setIcon(button, name);
  button.setAttribute('aria-label', label);
};
audio.addEventListener('play', () => icon('pause', 'pause'));
audio.addEventListener('pause', () => icon('play', 'play'));
audio.addEventListener('timeupdate', () => {
  wave.setTime(audio.currentTime, audio.duration);
  $('current').textContent = clock(audio.currentTime);
  listening.tick()?.then((r) => { if (r) window.dispatchEvent(new CustomEvent('plyrd:played', { detail: r })); });
});
audio.addEventListener('ended', () => {
  if (current + 1 < items.length) {
    choose(current + 1);
    audio.play().catch(() => {});
  }
});
if (new URLSearchParams(location.search).get('autoplay') === '1') button.click();
