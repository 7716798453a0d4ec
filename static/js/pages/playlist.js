// A playlist page: its owner reorders by drag (mouse or touch) or arrow keys, and renames it. Each move is saved
// with the whole new order (the server refuses an order built from a stale copy).

import { announce, api } from '../api.js';
import { makeSortable } from '../sortable.js';

export function init(main) {
  const hero = main.querySelector('[data-playlist-id]');
  if (!hero || !hero.hasAttribute('data-owner')) return;
  const id = hero.dataset.playlistId;
  const list = main.querySelector('[data-tracklist]');
  const status = main.querySelector('[data-status]');
  makeSortable(list, {
    async onMove() {
      const items = [...list.children].map((li) => ({ uri: li.dataset.itemUri }));
      try {
        await api(`/lists/playlists/${id}/reorder`, { method: 'PUT', body: { items } });
        if (status) status.textContent = 'order saved';
        announce('order saved');
      } catch (err) {
        if (status) status.textContent = `not saved: ${err.message}`;
      }
    },
  });
  const rename = main.querySelector('[data-rename]');
  rename?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const p = await api(`/lists/playlists/${id}`, { method: 'PATCH', body: { name: rename.elements.name.value } });
    main.querySelector('[data-playlist-name]').textContent = p.name;
    document.title = `${p.name} · plyrd`;
    announce('renamed');
  });
}
