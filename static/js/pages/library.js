// The library: create a playlist and open it.

import { api } from '../api.js';

export function init(main, { go }) {
  const form = main.querySelector('[data-new-playlist]');
  form?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const error = form.querySelector('[data-error]');
    error.textContent = '';
    try {
      const p = await api('/lists/playlists', { method: 'POST', body: { name: form.elements.name.value } });
      go(`/playlist/${p.id}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
}
