// The embed player (/embed/track/{id} in an iframe): its own small <audio> and waveform, no navigation, no
// account. Loudness gain is applied by volume (a cut only), which needs no Web Audio and works in sandboxes.

import { clock } from './api.js';
import { Waveform } from './waveform.js';

const root = document.querySelector('[data-embed]');
const audio = root.querySelector('[data-e="audio"]');
const button = root.querySelector('[data-e="toggle"]');
const current = root.querySelector('[data-e="current"]');
const duration = Number(root.dataset.duration) || 0;
const gain = Number(root.dataset.gain) || 0;
const wave = new Waveform(root.querySelector('[data-e="wave"]'), {
  onSeek: (t) => {
    if (!audio.src) audio.src = root.dataset.src;
    audio.currentTime = t;
  },
});
wave.set(JSON.parse(root.querySelector('[data-peaks]').textContent || '[]'), duration);
audio.volume = Math.min(1, 10 ** (Math.max(-12, Math.min(6, gain)) / 20));

button.addEventListener('click', () => {
  if (!audio.src) audio.src = root.dataset.src;
  if (audio.paused) audio.play().catch(() => {});
  else audio.pause();
});
const icon = (name, label) => {
  button.querySelector('use').setAttribute('href', `/static/icons.svg#${name}`);
  button.setAttribute('aria-label', label);
};
audio.addEventListener('play', () => icon('pause', 'pause'));
audio.addEventListener('pause', () => icon('play', 'play'));
audio.addEventListener('timeupdate', () => {
  wave.setTime(audio.currentTime);
  current.textContent = clock(audio.currentTime);
});
if (new URLSearchParams(location.search).get('autoplay') === '1') button.click();
