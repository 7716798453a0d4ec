// A track's menu (the ⋯ on every track row): play next, add to the queue, add to one of your playlists, copy the
// link, share to Bluesky, report to the node's admins. One menu element in the shell serves every row; it is a
// role=menu with arrow keys, Home/End, Escape and focus returned to the button that opened it, as the WAI-ARIA menu
// button pattern asks.

import { api, signedIn } from './api.js';
import { go } from './nav.js';
import { openReport } from './report.js';
import { toast } from './toast.js';

export function startTrackMenu(player) {
  const menu = document.getElementById('track-menu');
  let opener = null;
  let trackId = null;

  const items = () => [...menu.querySelectorAll('[role="menuitem"]:not([hidden])')];
  const focusItem = (i) => {
    const all = items();
    all[(i + all.length) % all.length]?.focus();
  };

  function close({ refocus = true } = {}) {
    if (menu.hidden) return;
    menu.hidden = true;
    opener?.setAttribute('aria-expanded', 'false');
    if (refocus) opener?.focus();
    opener = null;
  }

  function item(label, run) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'menuitem');
    b.tabIndex = -1;
    b.textContent = label;
    b.addEventListener('click', async () => {
      const id = trackId;
      close();
      await run(id);
    });
    return b;
  }

  async function open(button) {
    opener = button;
    trackId = Number(button.closest('[data-track-id]').dataset.trackId);
    const title = button.closest('[data-track-id]').querySelector('.t-title')?.textContent || 'this track';
    menu.setAttribute('aria-label', `more for ${title}`);
    menu.replaceChildren(
      item('play next', (id) => { player.unlockAudio(); player.enqueue(id, { next: true }); toast('playing next'); }),
      item('add to queue', (id) => { player.enqueue(id); toast('added to the queue'); }),
      item('copy link', async (id) => {
        await navigator.clipboard.writeText(`${location.origin}/track/${id}`).catch(() => {});
        toast('link copied');
      }),
    );
    if (signedIn()) {
      // Posting needs words and maybe a permission from the person's PDS: the track page has the form for both.
      menu.append(item('share to bluesky', (id) => go(`/track/${id}?share=1`)));
      // Not offered on one's own tracks (their artist link is the signed-in person's own page).
      const row = button.closest('[data-track-id]');
      if (row.querySelector('a.t-artist')?.getAttribute('href') !== `/u/${document.body.dataset.user}`) {
        menu.append(item('report', (id) => openReport({ type: 'track', id, name: title, from: button })));
      }
      const inList = ownPlaylistItem(row);
      if (inList) menu.append(item('remove from this playlist', () => removeFromPlaylist(row, inList)));
      const heading = document.createElement('p');
      heading.className = 'menu-label quiet small';
      heading.textContent = 'add to a playlist';
      heading.setAttribute('role', 'presentation');
      menu.append(heading);
      try {
        const lists = await api('/lists/playlists');
        if (opener !== button) return; // closed or reopened meanwhile
        for (const p of lists) {
          menu.append(item(p.name, async (id) => {
            try {
              await api(`/lists/playlists/${p.id}/tracks`, { method: 'POST', body: { track_id: id } });
              toast(`added to ${p.name}`);
            } catch (err) {
              toast(`not added: ${err.message}`, { error: true });
            }
          }));
        }
        if (!lists.length) heading.textContent = 'no playlists yet';
      } catch {
        heading.textContent = 'playlists could not be loaded';
      }
      menu.append(newPlaylistItem(title));
    }
    place(button);
  }

  // "new playlist…": the item becomes a name field in place (no page change, so playback goes on); Enter or
  // "create" makes the playlist with this track in it, Escape closes the menu.
  function newPlaylistItem(title) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'menuitem');
    b.tabIndex = -1;
    b.textContent = 'new playlist…';
    b.addEventListener('click', () => {
      const id = trackId;
      const form = document.createElement('form');
      form.className = 'menu-new';
      const input = document.createElement('input');
      input.name = 'name';
      input.required = true;
      input.maxLength = 100;
      input.autocomplete = 'off';
      input.placeholder = 'playlist name';
      input.setAttribute('aria-label', `new playlist with ${title}`);
      const create = document.createElement('button');
      create.type = 'submit';
      create.textContent = 'create';
      form.append(input, create);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const name = input.value.trim();
        if (!name) return;
        create.disabled = true;
        let p;
        try {
          p = await api('/lists/playlists', { method: 'POST', body: { name } });
        } catch (err) {
          create.disabled = false;
          toast(`no playlist made: ${err.message}`, { error: true });
          input.focus();
          return;
        }
        close();
        try {
          await api(`/lists/playlists/${p.id}/tracks`, { method: 'POST', body: { track_id: id } });
          toast(`created ${p.name} with ${title}`);
        } catch (err) {
          toast(`created ${p.name}, but ${title} was not added: ${err.message}`, { error: true });
        }
      });
      b.replaceWith(form);
      // The field may widen the menu: keep it inside the window.
      const left = parseFloat(menu.style.left) || 8;
      menu.style.left = `${Math.max(8, Math.min(left, window.innerWidth - menu.offsetWidth - 8))}px`;
      input.focus();
    });
    return b;
  }

  function place(button) {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    const r = button.getBoundingClientRect();
    const w = menu.offsetWidth;
    const h = menu.offsetHeight;
    const below = r.bottom + h + 8 < window.innerHeight - (document.getElementById('player')?.offsetHeight || 0);
    menu.style.left = `${Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8))}px`;
    menu.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - h - 4)}px`;
    focusItem(0);
  }

  document.addEventListener('click', (e) => {
    const b = e.target.closest('[data-track-menu]');
    if (b) {
      e.preventDefault();
      if (opener === b) close();
      else {
        close({ refocus: false });
        open(b);
      }
    } else if (!e.composedPath().includes(menu)) close({ refocus: false }); // (an item may have left the menu)
  });
  menu.addEventListener('keydown', (e) => {
    // In the new playlist's name field the keys edit the name; only Escape and Tab leave.
    if (e.target.closest('.menu-new') && !['Escape', 'Tab'].includes(e.key)) return;
    const i = items().indexOf(document.activeElement);
    const act = {
      ArrowDown: () => focusItem(i + 1),
      ArrowUp: () => focusItem(i - 1),
      Home: () => focusItem(0),
      End: () => focusItem(-1),
      Escape: () => close(),
      Tab: () => close({ refocus: false }),
    }[e.key];
    if (!act) return;
    if (e.key !== 'Tab') e.preventDefault();
    e.stopPropagation(); // Escape here closes the menu, not the queue panel
    act();
  });
  // A phone's keyboard opening for the name field resizes and scrolls the page: that must not close the menu.
  const typing = () => Boolean(document.activeElement?.closest('#track-menu .menu-new'));
  window.addEventListener('resize', () => { if (!typing()) close({ refocus: false }); });
  window.addEventListener('scroll', () => { if (!typing()) close({ refocus: false }); }, { passive: true });
  return { close: () => close({ refocus: false }) };
}

// The playlist this row is listed in when its owner is looking at it (its page is open): {id, uri}.
function ownPlaylistItem(row) {
  const hero = document.querySelector('#main [data-playlist-id][data-owner]');
  if (!hero || !row.dataset.itemUri || !row.closest('#main [data-tracklist]')) return null;
  return { id: hero.dataset.playlistId, uri: row.dataset.itemUri };
}

// Remove a track from one's playlist; undo puts it back where it was (added again, then the old order restored).
async function removeFromPlaylist(row, { id, uri }) {
  const list = row.parentElement;
  const at = [...list.children].indexOf(row);
  const title = row.querySelector('.t-title')?.textContent || 'the track';
  try {
    await api(`/lists/playlists/${id}/tracks/${uri}`, { method: 'DELETE' });
  } catch (err) {
    toast(`not removed: ${err.message}`, { error: true });
    return;
  }
  row.remove();
  toast(`removed ${title}`, {
    undo: async () => {
      await api(`/lists/playlists/${id}/tracks`, { method: 'POST', body: { track_id: Number(row.dataset.trackId) } });
      const now = [...list.children].map((li) => li.dataset.itemUri);
      const order = [...now.slice(0, at), uri, ...now.slice(at)];
      await api(`/lists/playlists/${id}/reorder`, { method: 'PUT', body: { items: order.map((u) => ({ uri: u })) } });
      if (list.isConnected) list.insertBefore(row, list.children[at] || null);
      return `${title} is back`;
    },
  });
}
