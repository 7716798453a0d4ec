// The web player's entry point: start the player in the shell, client-side navigation, keyboard shortcuts, the
// actions any page's buttons trigger (delegated, so swapped-in pages need no wiring), and each page's own module.

import { api, signedIn } from './api.js';
import { go, startNavigation } from './nav.js';
import { Player } from './player.js';
import { startKeys } from './keys.js';
import { startTrackMenu } from './menu.js';
import { startSearch } from './search.js';
import { toast } from './toast.js';
import './filepick.js';

const player = new Player(document.getElementById('player'), document.getElementById('queue-panel'));

// Page modules by <main data-page>; each init(main, ctx) may return a cleanup run when the page is left.
const PAGES = {
  home: () => import('./pages/feed.js'),
  tag: () => import('./pages/feed.js'),
  artist: () => import('./pages/feed.js'),
  network: () => import('./pages/feed.js'),
  track: () => import('./pages/track.js'),
  login: () => import('./pages/login.js'),
  upload: () => import('./pages/upload.js'),
  library: () => import('./pages/library.js'),
  playlist: () => import('./pages/playlist.js'),
  settings: () => import('./pages/settings.js'),
  portal: () => import('./pages/portal.js'),
  'library-admin': () => import('./pages/library-admin.js'),
  admin: () => import('./pages/admin.js'),
};
let cleanup = null;
const trackMenu = startTrackMenu(player);

async function pageReady(main) {
  if (typeof cleanup === 'function') cleanup();
  trackMenu.close();
  cleanup = null;
  player.markCurrent();
  const load = PAGES[main.dataset.page];
  if (!load) return;
  const mod = await load();
  if (document.getElementById('main') !== main) return;
  cleanup = mod.init(main, { player, go });
  main.dataset.ready = ''; // the page's script is wired (tests wait for this before pressing its buttons)
}

function listIds(button) {
  const list = button.closest('[data-tracklist]');
  const nodes = list ? list.querySelectorAll(':scope > [data-track-id]') : [];
  const ids = [...new Set([...nodes].map((n) => Number(n.dataset.trackId)))];
  return ids.length ? ids : [Number(button.closest('[data-track-id]').dataset.trackId)];
}

const ACTIONS = {
  play(b) {
    const id = Number(b.closest('[data-track-id]').dataset.trackId);
    if (b.dataset.at) { // a share link's ?t=: this track from that moment, once; then a plain play/pause
      const at = Number(b.dataset.at);
      delete b.dataset.at;
      b.dataset.label = 'play';
      if (player.track?.id !== id) {
        player.playAt(id, at);
        return;
      }
    }
    const ids = listIds(b);
    player.playList(ids, Math.max(0, ids.indexOf(id)));
  },
  'play-all'() {
    const list = document.querySelector('#main [data-tracklist]');
    const ids = list ? [...list.children].map((n) => Number(n.dataset.trackId)).filter(Boolean) : [];
    if (ids.length) player.playList(ids, 0);
  },
  'queue-add'(b) {
    player.enqueue(Number(b.closest('[data-track-id]').dataset.trackId));
    toast('added to the queue');
  },
  async share(b) {
    try {
      if (navigator.share) await navigator.share({ url: b.dataset.url, title: document.title });
      else {
        await navigator.clipboard.writeText(b.dataset.url);
        toast('link copied');
        b.querySelector('span').textContent = 'copied';
      }
    } catch { /* dismissed */ }
  },
  reveal(b) {
    b.parentElement.querySelector('img.sensitive')?.classList.add('revealed');
  },
  async logout() {
    await api('/auth/logout', { method: 'POST' }).catch(() => {});
    go('/');
  },
};

document.addEventListener('click', (e) => {
  const b = e.target.closest('[data-action]');
  if (!b || !ACTIONS[b.dataset.action]) return;
  e.preventDefault();
  player.unlockAudio(); // inside the click: the only moment Web Audio may start
  ACTIONS[b.dataset.action](b);
});
document.addEventListener('plyrd:track', () => player.markCurrent());

startNavigation(pageReady);
startKeys(player);
startSearch(go);
player.init().catch((e) => console.warn('could not resume the queue:', e));
pageReady(document.getElementById('main'));

// For tests and the curious: the running player and navigation.
window.plyrd = { player, go, signedIn };
