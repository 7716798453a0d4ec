// The search modal: Cmd/Ctrl+K (or the header's search button) opens it anywhere, even while typing elsewhere;
// results come grouped from GET /search/ as you type (debounced), arrows move through them, enter opens one with
// client-side navigation (the music keeps playing), escape closes. A listbox with aria-activedescendant, so a
// screen reader follows the highlighted result while focus stays in the input.

import { api } from './api.js';
import { h } from './dom.js';

const GROUPS = [['tracks', 'tracks'], ['artists', 'artists'], ['albums', 'albums'], ['playlists', 'playlists'],
  ['tags', 'tags']];
const DEBOUNCE_MS = 150;

const seg = (v) => encodeURIComponent(String(v ?? ''));

function href(kind, r) {
  if (kind === 'tracks') return `/track/${seg(r.id)}`;
  if (kind === 'artists') return `/u/${seg(r.handle || r.did)}`;
  if (kind === 'albums') return `/u/${seg(r.artist_handle || r.artist_did)}/album/${seg(r.slug)}`;
  if (kind === 'playlists') return `/playlist/${seg(r.id)}`;
  return `/tag/${seg(r.name)}`;
}

function label(kind, r) {
  if (kind === 'tracks') return [r.title, r.artist];
  if (kind === 'artists') return [r.display_name || r.handle, r.handle ? `@${r.handle}` : ''];
  if (kind === 'albums') return [r.title, r.artist_display_name];
  if (kind === 'playlists') return [r.name, r.owner_display_name];
  return [`#${r.name}`, `${r.track_count} tracks`];
}

export function startSearch(go) {
  const input = h('input', { type: 'search', name: 'q', placeholder: 'search tracks, artists, albums, tags',
    autocomplete: 'off', 'aria-label': 'search', role: 'combobox', 'aria-expanded': 'false',
    'aria-controls': 'search-results', spellcheck: 'false' });
  const list = h('div', { id: 'search-results', role: 'listbox', 'aria-label': 'results' });
  const status = h('p', { class: 'quiet', 'data-search-status': true, 'aria-live': 'polite' });
  const dialog = h('dialog', { class: 'search-modal', 'aria-label': 'search' },
    h('form', { method: 'dialog', role: 'search' }, input), list, status);
  document.body.append(dialog);
  let timer = 0;
  let asked = 0;
  let active = -1;

  const options = () => [...list.querySelectorAll('[role=option]')];
  function highlight(i) {
    const all = options();
    if (!all.length) return;
    active = (i + all.length) % all.length;
    all.forEach((o, n) => o.setAttribute('aria-selected', String(n === active)));
    input.setAttribute('aria-activedescendant', all[active].id);
    all[active].scrollIntoView({ block: 'nearest' });
  }

  function render(body) {
    list.replaceChildren();
    active = -1;
    input.removeAttribute('aria-activedescendant');
    let n = 0;
    for (const [kind, title] of GROUPS) {
      const results = body.groups?.[kind] || [];
      if (!results.length) continue;
      // The group's name is its aria-label; a heading inside a listbox is not allowed, so the title shown is plain.
      const group = h('div', { role: 'group', 'aria-label': title },
        h('div', { class: 'group-title', 'aria-hidden': 'true' }, title));
      for (const r of results) {
        const [main, sub] = label(kind, r);
        const art = r.thumbnail_url || r.avatar_url;
        // The image only with a URL that is https or the node's own: h() leaves off any other src.
        const img = art ? h('img', { src: art, alt: '', width: 32, height: 32, loading: 'lazy',
          class: r.sensitive ? 'sensitive' : null }) : null;
        group.append(h('a', { id: `search-option-${n++}`, href: href(kind, r), role: 'option',
          'aria-selected': 'false', tabindex: '-1' },
        img?.hasAttribute('src') ? img : h('span', { class: 'art' }),
        h('span', {}, h('b', {}, main ?? ''), h('small', {}, sub || ''))));
      }
      list.append(group);
    }
    input.setAttribute('aria-expanded', String(n > 0));
    status.textContent = n ? `${n} results` : 'nothing found';
    if (n) highlight(0);
  }

  async function run() {
    const q = input.value.trim();
    const mine = ++asked;
    if (q.length < 2) {
      list.replaceChildren();
      status.textContent = q ? 'type at least two characters' : '';
      return;
    }
    try {
      const body = await api(`/search/?q=${encodeURIComponent(q.slice(0, 100))}&limit=5`);
      if (mine === asked) render(body); // an older answer never overwrites a newer one
    } catch (e) {
      if (mine === asked) status.textContent = e.message;
    }
  }

  function open() {
    if (!dialog.open) dialog.showModal();
    input.select();
  }

  function choose(link) {
    dialog.close();
    go(link.getAttribute('href'));
  }

  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      highlight(active + (e.key === 'ArrowDown' ? 1 : -1));
    } else if (e.key === 'Escape') {
      e.preventDefault(); // a search field's own escape would only clear the text: escape closes the search
      dialog.close();
    } else if (e.key === 'Enter') {
      e.preventDefault();
      const link = options()[active];
      if (link) choose(link);
    }
  });
  list.addEventListener('click', (e) => {
    const link = e.target.closest('[role=option]');
    if (!link) return;
    e.preventDefault();
    choose(link);
  });
  dialog.addEventListener('click', (e) => { if (e.target === dialog) dialog.close(); }); // the backdrop
  document.addEventListener('keydown', (e) => {
    if ((e.metaKey || e.ctrlKey) && !e.altKey && e.key.toLowerCase() === 'k') {
      e.preventDefault();
      open();
    }
  });
  document.addEventListener('click', (e) => {
    if (e.target.closest('[data-search-open]')) {
      e.preventDefault();
      open();
    }
  });
  return { open };
}
