// The library: reorder the liked tracks (drag with a mouse or a finger, or the arrow keys on a handle; each move
// saves the whole order, which republishes the "Liked Tracks" list record), create a playlist and open it.

import { api } from '../api.js';
import { makeSortable } from '../sortable.js';
import { toast } from '../toast.js';

export function init(main, { go }) {
  const liked = main.querySelector('section[aria-labelledby="liked-heading"] [data-tracklist]');
  const status = main.querySelector('section[aria-labelledby="liked-heading"] [data-status]');
  if (liked && liked.querySelector('[data-sort-handle]')) {
    makeSortable(liked, {
      async onMove() {
        const ids = [...liked.children].map((li) => Number(li.dataset.trackId));
        try {
          await api('/lists/liked/reorder', { method: 'PUT', body: { track_ids: ids } });
          if (status) status.textContent = 'order saved';
          toast('order saved');
        } catch (err) {
          if (status) status.textContent = `not saved: ${err.message}`;
          toast(`order not saved: ${err.message}`, { error: true });
        }
      },
    });
  }
  const form = main.querySelector('[data-new-playlist]');
  form?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const error = form.querySelector('[data-error]');
    error.textContent = '';
    try {
      const p = await api('/lists/playlists', { method: 'POST', body: { name: form.elements.name.value } });
      toast(`created ${p.name}`);
      go(`/playlist/${p.id}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
}
