// Settings apply at once: theme and accent in this browser (and in the account when signed in), the rest in
// the account's preferences (POST /preferences/ with only what changed).

import { api, signedIn } from '../api.js';
import { setAccent, setTheme } from '../theme.js';

export function init(main) {
  const status = main.querySelector('[data-status]');
  const save = async (changes) => {
    if (!signedIn()) {
      status.textContent = 'saved in this browser';
      return;
    }
    try {
      await api('/preferences/', { method: 'POST', body: changes });
      status.textContent = 'saved';
    } catch (err) {
      status.textContent = `not saved: ${err.message}`;
    }
  };
  for (const radio of main.querySelectorAll('[data-theme-choice] input')) {
    radio.addEventListener('change', () => {
      setTheme(radio.value);
      save({ theme: radio.value });
    });
  }
  const stored = localStorage.getItem('plyrd.theme');
  if (stored) {
    const radio = main.querySelector(`[data-theme-choice] input[value="${stored}"]`);
    if (radio) radio.checked = true;
  }
  const accent = main.querySelector('[data-accent]');
  const storedAccent = localStorage.getItem('plyrd.accent');
  if (storedAccent) accent.value = storedAccent;
  accent.addEventListener('input', () => setAccent(accent.value));
  accent.addEventListener('change', () => save({ accent_color: accent.value }));
  for (const box of main.querySelectorAll('[data-pref]')) {
    box.addEventListener('change', () => save({ [box.dataset.pref]: box.checked }));
  }
  const hidden = main.querySelector('[data-hidden-tags]');
  main.querySelector('[data-save-hidden]')?.addEventListener('click', () => {
    save({ hidden_tags: hidden.value.split(',').map((t) => t.trim()).filter(Boolean) });
  });
}
