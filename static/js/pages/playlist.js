// A playlist page: its owner reorders by drag (mouse or touch) or arrow keys, renames it, makes it private or
// public, shows it on their profile or not, sets or removes its cover, and deletes it. Each move is saved with the
// whole new order (the server refuses an order built from a stale copy).

import { api } from '../api.js';
import { setUrl } from '../dom.js';
import { reportButtons } from '../report.js';
import { makeSortable } from '../sortable.js';
import { toast } from '../toast.js';

export function init(main, { go }) {
  reportButtons(main); // "report this playlist", for signed-in people who do not own it
  const hero = main.querySelector('[data-playlist-id]');
  if (!hero || !hero.hasAttribute('data-owner')) return;
  const id = hero.dataset.playlistId;
  const list = main.querySelector('[data-tracklist]');
  const status = main.querySelector('[data-status]');
  const editStatus = main.querySelector('[data-edit-status]');
  const said = (text) => {
    editStatus.textContent = text;
    toast(text);
  };
  if (list) {
    makeSortable(list, {
      async onMove() {
        const items = [...list.children].map((li) => ({ uri: li.dataset.itemUri }));
        try {
          await api(`/lists/playlists/${id}/reorder`, { method: 'PUT', body: { items } });
          if (status) status.textContent = 'order saved';
          toast('order saved');
        } catch (err) {
          if (status) status.textContent = `not saved: ${err.message}`;
          toast(`order not saved: ${err.message}`, { error: true });
        }
      },
    });
  }
  const rename = main.querySelector('[data-rename]');
  rename?.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const p = await api(`/lists/playlists/${id}`, { method: 'PATCH', body: { name: rename.elements.name.value } });
      main.querySelector('[data-playlist-name]').textContent = p.name;
      document.title = `${p.name} · plyrd`;
      said('renamed');
    } catch (err) {
      said(`not renamed: ${err.message}`);
    }
  });
  for (const box of main.querySelectorAll('[data-flag]')) {
    box.addEventListener('change', async () => {
      try {
        const p = await api(`/lists/playlists/${id}`, { method: 'PATCH', body: { [box.dataset.flag]: box.checked } });
        main.querySelector('[data-private-note]').textContent = p.is_private ? ' · private' : '';
        said(box.dataset.flag === 'is_private' ? (p.is_private ? 'now private' : 'now public') : 'saved');
      } catch (err) {
        box.checked = !box.checked;
        said(`not saved: ${err.message}`);
      }
    });
  }
  const cover = main.querySelector('[data-cover]');
  const remove = main.querySelector('[data-cover-remove]');
  main.querySelector('[data-cover-input]')?.addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.set('image', file);
    said('uploading cover…');
    try {
      const r = await api(`/lists/playlists/${id}/cover`, { method: 'POST', body: form });
      setUrl(cover, 'src', r.image_url, '/static/img/cover.svg');
      remove.hidden = false;
      said('cover saved');
    } catch (err) {
      said(`cover not saved: ${err.message}`);
    }
    e.target.value = '';
  });
  remove?.addEventListener('click', async () => {
    try {
      await api(`/lists/playlists/${id}/cover`, { method: 'DELETE' });
      cover.src = '/static/img/cover.svg';
      remove.hidden = true;
      said('cover removed');
    } catch (err) {
      said(`cover not removed: ${err.message}`);
    }
  });
  main.querySelector('[data-delete]')?.addEventListener('click', async (e) => {
    const b = e.currentTarget;
    if (b.dataset.armed !== '1') { // a second press confirms: no modal dialog to trap focus
      b.dataset.armed = '1';
      b.textContent = 'press again to delete';
      return;
    }
    try {
      await api(`/lists/playlists/${id}`, { method: 'DELETE' });
      toast('playlist deleted');
      go('/library');
    } catch (err) {
      said(`not deleted: ${err.message}`);
    }
  });
}
