// A track's menu (the ⋯ on every track row): play next, add to the queue, add to one of your playlists, copy the
// link, share to Bluesky, report to the node's admins. One menu element in the shell serves every row; it is a
// role=menu with arrow keys, Home/End, Escape and focus returned to the button that opened it, as the WAI-ARIA menu
// button pattern asks.

import { announce, api, signedIn } from './api.js';
import { go } from './nav.js';
import { openReport } from './report.js';

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
      item('play next', (id) => { player.unlockAudio(); player.enqueue(id, { next: true }); }),
      item('add to queue', (id) => player.enqueue(id)),
      item('copy link', async (id) => {
        await navigator.clipboard.writeText(`${location.origin}/track/${id}`).catch(() => {});
        announce('link copied');
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
              announce(`added to ${p.name}`);
            } catch (err) {
              announce(`not added: ${err.message}`);
            }
          }));
        }
        if (!lists.length) heading.textContent = 'no playlists yet: make one in your library';
      } catch {
        heading.textContent = 'playlists could not be loaded';
      }
    }
    place(button);
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
    } else if (!menu.contains(e.target)) close({ refocus: false });
  });
  menu.addEventListener('keydown', (e) => {
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
  window.addEventListener('resize', () => close({ refocus: false }));
  window.addEventListener('scroll', () => close({ refocus: false }), { passive: true });
  return { close: () => close({ refocus: false }) };
}
