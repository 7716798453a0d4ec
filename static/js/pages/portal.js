// The artist portal: profile, your tracks (inline edit, delete), albums, export and account deletion. Every change
// goes through the JSON API and updates the page in place. Lists that gain or lose rows wholesale (a filter, a new
// album) are re-rendered by the server and swapped in, so every row keeps one template: portal.html.

import { announce, api, clock } from '../api.js';
import { setUrl } from '../dom.js';
import { toast } from '../toast.js';

const COVER = '/static/img/cover.svg';
const FILTER_DELAY_MS = 250;
const NOTICES = ['nudity', 'sexual', 'porn', 'graphic-media']; // the content notices the edit form offers

export function init(main) {
  const root = main.querySelector('.portal');
  if (!root) return undefined;
  let filterTimer = 0;
  let filterSeq = 0;

  // One delegated listener per event type: rows swapped in later need no wiring.
  main.addEventListener('submit', (e) => {
    const form = e.target;
    const handler = [
      ['[data-profile]', saveProfile],
      ['[data-edit]', saveTrack],
      ['[data-track-filter]', filter],
      ['[data-new-album]', createAlbum],
      ['[data-album-rename]', renameAlbum],
      ['[data-album-cover]', setCover],
      ['[data-delete-account]', deleteAccount],
    ].find(([sel]) => form.matches(sel));
    if (!handler) return;
    e.preventDefault(); // also keeps nav.js from treating the filter's GET form as a page change
    handler[1](form);
  });

  main.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b || !root.contains(b)) return;
    if (b.matches('[data-edit-toggle]')) togglePanel(b);
    else if (b.matches('[data-edit-cancel]')) closePanel(b.closest('[data-edit]'));
    else if (b.matches('[data-delete-ask]')) askDelete(b.closest('[data-track-id]'));
    else if (b.matches('[data-delete-no]')) cancelDelete(b.closest('[data-track-id]'));
    else if (b.matches('[data-delete-yes]')) deleteTrack(b.closest('[data-track-id]'), b);
    else if (b.matches('[data-album-delete-ask]')) askAlbumDelete(b.closest('[data-album-id]'), true);
    else if (b.matches('[data-album-delete-no]')) askAlbumDelete(b.closest('[data-album-id]'), false);
    else if (b.matches('[data-album-delete-yes]')) deleteAlbum(b.closest('[data-album-id]'), b);
  });

  // Escape closes the edit panel or the delete question the focus is in, and gives focus back to its button.
  main.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    const confirm = e.target.closest?.('[data-delete-confirm]');
    const panel = e.target.closest?.('[data-edit], [data-album-edit]');
    if (confirm) cancelDelete(confirm.closest('[data-track-id]'));
    else if (panel) closePanel(panel);
    else return;
    e.stopPropagation();
  });

  main.querySelector('#track-q')?.addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => filter(), FILTER_DELAY_MS);
  });

  // ---- profile ---------------------------------------------------------------------------------------------------

  async function saveProfile(form) {
    const { status, error } = feedback(form);
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    status.textContent = 'saving…';
    try {
      // Empty fields are sent as "" and stored as nothing (the server trims and turns "" into null).
      const p = await api('/artists/me', {
        method: 'PATCH',
        body: { display_name: form.elements.display_name.value, bio: form.elements.bio.value,
          avatar_url: form.elements.avatar_url.value },
      });
      setField(form.elements.display_name, p.display_name || '');
      setField(form.elements.bio, p.bio || '');
      setField(form.elements.avatar_url, p.avatar_url || '');
      setUrl(form.querySelector('[data-avatar-preview]'), 'src', p.avatar_url, COVER);
      status.textContent = 'saved';
      toast('profile saved');
    } catch (err) {
      status.textContent = '';
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // ---- tracks ----------------------------------------------------------------------------------------------------

  async function saveTrack(form) {
    const li = form.closest('[data-track-id]');
    const { status, error } = feedback(form);
    const changes = trackChanges(form);
    if (![...changes.keys()].length) {
      status.textContent = 'nothing changed';
      return;
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    status.textContent = 'saving…';
    try {
      // PATCH /tracks/{id} takes a multipart form of only the fields that change (plus an optional new image).
      const t = await api(`/tracks/${li.dataset.trackId}`, { method: 'PATCH', body: changes });
      showTrack(li, t);
      status.textContent = 'saved';
      toast(`saved ${t.title}`);
    } catch (err) {
      status.textContent = '';
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  function askDelete(li) {
    const box = li.querySelector('[data-delete-confirm]');
    box.hidden = false;
    box.querySelector('[data-error]').textContent = '';
    box.querySelector('[data-delete-no]').focus(); // the safe choice has focus; deleting is one deliberate step away
  }

  function cancelDelete(li) {
    li.querySelector('[data-delete-confirm]').hidden = true;
    li.querySelector('[data-delete-ask]').focus();
  }

  async function deleteTrack(li, button) {
    const error = li.querySelector('[data-delete-confirm] [data-error]');
    const title = li.querySelector('[data-t-title]').textContent;
    button.disabled = true;
    try {
      await api(`/tracks/${li.dataset.trackId}`, { method: 'DELETE' });
      removeRow(li, '#track-q');
      toast(`deleted ${title}`);
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
    }
  }

  // The filter re-renders the list on the server (the same template as the first paint) and swaps it in.
  async function filter() {
    clearTimeout(filterTimer);
    const q = main.querySelector('#track-q').value.trim();
    const url = new URL('/portal', location.href);
    if (q) url.searchParams.set('q', q);
    const mine = ++filterSeq;
    try {
      const doc = await fetchPage(url);
      if (mine !== filterSeq || !document.contains(root)) return; // a newer filter or another page won
      swapPart(doc, '[data-own-tracks]');
      history.replaceState({ ...history.state }, '', url.pathname + url.search);
      const count = main.querySelectorAll('[data-own-tracks] [data-track-id]').length;
      announce(`${count} track${count === 1 ? '' : 's'}`);
    } catch (err) {
      announce(`could not filter: ${err.message}`);
    }
  }

  // ---- albums ----------------------------------------------------------------------------------------------------

  async function createAlbum(form) {
    const error = main.querySelector('[data-new-album-error]');
    error.textContent = '';
    try {
      const a = await api('/albums/', { method: 'POST', body: { title: form.elements.title.value } });
      swapPart(await fetchPage(new URL(location.href)), '[data-albums]');
      form.reset();
      toast(`created the album ${a.title}`);
      main.querySelector(`[data-album-id="${a.id}"] [data-edit-toggle]`)?.focus();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function renameAlbum(form) {
    const li = form.closest('[data-album-id]');
    const { status, error } = feedback(li.querySelector('[data-album-edit]'));
    try {
      const a = await api(`/albums/${li.dataset.albumId}`, { method: 'PATCH', body: { title: form.elements.title.value } });
      li.querySelector('[data-a-title]').textContent = a.title;
      li.querySelector('[data-edit-toggle] .sr-only').textContent = ` ${a.title}`;
      setField(form.elements.title, a.title);
      status.textContent = 'renamed';
      toast(`renamed to ${a.title}`);
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function setCover(form) {
    const li = form.closest('[data-album-id]');
    const { status, error } = feedback(li.querySelector('[data-album-edit]'));
    const data = new FormData();
    data.set('image', form.elements.image.files[0]);
    status.textContent = 'uploading…';
    try {
      const c = await api(`/albums/${li.dataset.albumId}/cover`, { method: 'POST', body: data });
      setUrl(li.querySelector('[data-a-cover]'), 'src', c.thumbnail_url, COVER);
      form.reset();
      status.textContent = 'cover set';
      toast('cover set');
    } catch (err) {
      status.textContent = '';
      error.textContent = err.message;
    }
  }

  function askAlbumDelete(li, ask) {
    const confirm = li.querySelector('[data-album-delete-confirm]');
    confirm.hidden = !ask;
    li.querySelector('[data-album-delete-ask]').hidden = ask;
    (ask ? confirm.querySelector('[data-album-delete-no]') : li.querySelector('[data-album-delete-ask]')).focus();
  }

  async function deleteAlbum(li, button) {
    const { error } = feedback(li.querySelector('[data-album-edit]'));
    const cascade = li.querySelector('input[type="radio"]:checked')?.value === 'true';
    const title = li.querySelector('[data-a-title]').textContent;
    button.disabled = true;
    try {
      const r = await api(`/albums/${li.dataset.albumId}?cascade=${cascade}`, { method: 'DELETE' });
      for (const id of r.deleted_track_ids || []) {
        const row = main.querySelector(`[data-own-tracks] [data-track-id="${id}"]`);
        if (row) removeRow(row, '#track-q');
      }
      removeRow(li, '#album-title');
      toast(`deleted the album ${title}${r.deleted_track_ids?.length ? ' and its tracks' : ''}`);
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
    }
  }

  // ---- account ---------------------------------------------------------------------------------------------------

  async function deleteAccount(form) {
    const { error } = feedback(form);
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    button.textContent = 'deleting…';
    try {
      await api('/account/', {
        method: 'DELETE',
        body: { confirmation: form.elements.confirmation.value,
          delete_atproto_records: form.elements.delete_atproto_records.checked },
      });
      // A full load, not client-side navigation: the signed-out shell starts clean (player, queue, header).
      location.assign('/');
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
      button.textContent = 'delete my account';
      form.elements.confirmation.focus();
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------------------------

  function togglePanel(button) {
    const panel = main.querySelector(`#${CSS.escape(button.getAttribute('aria-controls'))}`);
    if (button.getAttribute('aria-expanded') === 'true') {
      closePanel(panel);
      return;
    }
    button.setAttribute('aria-expanded', 'true');
    panel.hidden = false;
    panel.querySelector('input, textarea')?.focus();
  }

  function closePanel(panel) {
    const button = main.querySelector(`[aria-controls="${CSS.escape(panel.id)}"]`);
    panel.hidden = true;
    for (const form of panel.matches('form') ? [panel] : panel.querySelectorAll('form')) form.reset();
    for (const el of panel.querySelectorAll('[data-status], [data-error]')) el.textContent = '';
    const albumConfirm = panel.querySelector('[data-album-delete-confirm]');
    if (albumConfirm) { // reopened later, the panel asks afresh
      albumConfirm.hidden = true;
      panel.querySelector('[data-album-delete-ask]').hidden = false;
    }
    button?.setAttribute('aria-expanded', 'false');
    button?.focus();
  }

  root.dataset.ready = 'true'; // the controls are live (tests wait for this before clicking)
  return () => clearTimeout(filterTimer);
}

// What an edit form changes, as the multipart body PATCH /tracks/{id} takes (see plyrd/catalog/editing.py).
function trackChanges(form) {
  const data = new FormData();
  const el = form.elements;
  for (const name of ['title', 'album', 'description']) {
    if (el[name].value.trim() !== el[name].defaultValue.trim()) data.set(name, el[name].value.trim());
  }
  // Lyrics keep their line breaks and blank lines; the node trims them.
  if (el.lyrics.value !== el.lyrics.defaultValue) data.set('lyrics', el.lyrics.value);
  const tags = splitTags(el.tags.value);
  if (JSON.stringify(tags) !== JSON.stringify(splitTags(el.tags.defaultValue))) data.set('tags', JSON.stringify(tags));
  if (el.unlisted.checked !== el.unlisted.defaultChecked) data.set('unlisted', String(el.unlisted.checked));
  const notice = el.content_notice;
  if (notice.value !== [...notice.options].find((o) => o.defaultSelected)?.value) {
    // Replace only the content notice; any other self-labels the track carries stay as they are.
    const others = JSON.parse(notice.dataset.labels || '[]').filter((l) => !NOTICES.includes(l));
    data.set('self_labels', JSON.stringify(notice.value ? [...others, notice.value] : others));
  }
  const image = el.image.files[0];
  if (image) data.set('image', image);
  else if (el.remove_image.checked) data.set('remove_image', 'true');
  return data;
}

function splitTags(text) {
  return text.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

// Show a saved track in its row and make the form's saved values the new baseline (reset() returns to them).
function showTrack(li, t) {
  const { unlisted } = t;
  const link = li.querySelector('[data-t-title]');
  link.textContent = t.title;
  const parts = [t.album?.title || t.album_name, (t.tags || []).join(', ')].filter(Boolean);
  li.querySelector('[data-t-sub]').textContent = parts.length ? parts.join(' · ') : clock(t.duration);
  setUrl(li.querySelector('[data-t-art]'), 'src', t.thumbnail_url, COVER);
  li.querySelector('[data-t-unlisted]').hidden = !unlisted;
  li.querySelector('[data-t-name]').textContent = t.title;
  for (const sr of li.querySelectorAll('button > .sr-only')) sr.textContent = ` ${t.title}`;
  li.querySelector('[data-action="play"]')?.setAttribute('aria-label', `play ${t.title}`);
  const form = li.querySelector('[data-edit]');
  form.setAttribute('aria-label', `edit ${t.title}`);
  li.querySelector('[data-delete-confirm]').setAttribute('aria-label', `confirm deleting ${t.title}`);
  const el = form.elements;
  setField(el.title, t.title);
  setField(el.album, t.album_name || t.album?.title || ''); // the album name on the track's record
  setField(el.tags, (t.tags || []).join(', '));
  setField(el.description, t.description || '');
  // The track JSON carries no lyrics: what was just saved is the new baseline.
  setField(el.lyrics, 'lyrics' in t ? t.lyrics || '' : el.lyrics.value);
  el.unlisted.checked = el.unlisted.defaultChecked = unlisted;
  el.image.value = '';
  el.image.dispatchEvent(new Event('change', { bubbles: true })); // its picker says no file chosen again
  el.remove_image.checked = false;
  const current = (t.self_labels || []).find((l) => NOTICES.includes(l)) || '';
  el.content_notice.dataset.labels = JSON.stringify(t.self_labels || []);
  for (const o of el.content_notice.options) o.selected = o.defaultSelected = o.value === current;
  li.querySelector('[data-t-art]').classList.toggle('sensitive', Boolean(t.sensitive));
  form.querySelector('[data-remove-image-label]').hidden = !t.image_url;
}

function setField(input, value) {
  input.value = value;
  input.defaultValue = value; // for a <textarea> this is its text content, which reset() returns to
}

// A form's status and error lines, both cleared for a new attempt.
function feedback(scope) {
  const status = scope.querySelector('[data-status]') || document.createElement('span');
  const error = scope.querySelector('[data-error]') || document.createElement('p');
  status.textContent = '';
  error.textContent = '';
  return { status, error };
}

// Take a row out of its list; the focus goes to the next row (or the previous, or `fallback`), and an emptied list
// says so instead of leaving an empty box.
function removeRow(li, fallback) {
  const list = li.parentElement;
  const next = li.nextElementSibling || li.previousElementSibling;
  const hadFocus = li.contains(document.activeElement);
  li.remove();
  if (!list.children.length) {
    const p = document.createElement('p');
    p.className = 'quiet empty';
    p.textContent = list.matches('.portal-albums') ? 'no albums yet.' : 'no tracks here any more.';
    list.replaceWith(p);
  }
  if (hadFocus) (next?.querySelector('a, button') || document.querySelector(fallback))?.focus();
}

async function fetchPage(url) {
  const r = await fetch(url.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
  return new DOMParser().parseFromString(await r.text(), 'text/html');
}

function swapPart(doc, selector) {
  const fresh = doc.querySelector(selector);
  const here = document.querySelector(`#main ${selector}`);
  if (fresh && here) here.replaceWith(document.adoptNode(fresh));
}
