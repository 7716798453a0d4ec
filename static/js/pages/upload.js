// The upload page: a track, or an album of several.
// Picking a file asks the server for its tags (POST /tracks/probe-tags with the file's first and last bytes, never
// all of it) to prefill the form, never over what was typed. Each file is one POST /tracks/ by XMLHttpRequest (fetch
// cannot report upload progress), then its processing is followed by server-sent events until the track is ready.
// An album: POST /albums/, then the files one after another (a Raspberry Pi node should not take several at once),
// their processing followed one at a time, so at most one send and one stream are open; once all have settled,
// PUT /albums/{id}/tracks sets the list's order. A file that fails says why and waits for a retry; the rest go on.

import { ApiError, announce, api, clock, csrfToken } from '../api.js';
import { makeSortable } from '../sortable.js';
import { toast } from '../toast.js';

const AUDIO = /\.(mp3|wave?|flac|aif[fc]?|m4a|mp4|ogg|oga|opus|webm)$/i;
const MAX_TEXT = 256; // the server's limits on a title and on a tag
const MAX_TAG = 50;
// A small sample first (most files keep their tags in the first KiB, or at the very end); when the server says they
// are further in (a big cover ahead of them), once more with as much as it reads.
const SAMPLES = [[512 << 10, 128 << 10], [8 << 20, 1 << 20]];

export async function readTags(file) {
  if (!file.size) throw new ApiError(400, 'the file is empty (0 bytes)');
  let failure;
  for (const [head, tail] of SAMPLES) {
    const whole = file.size <= head + tail;
    const r = await fetch(`/tracks/probe-tags?${new URLSearchParams({ size: file.size, tail: whole ? 0 : tail })}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', Accept: 'application/json', 'X-CSRF-Token': csrfToken() },
      body: whole ? file : new Blob([file.slice(0, head), file.slice(-tail)]),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) return body;
    failure = new ApiError(r.status, body.detail || `could not read the tags (${r.status})`);
    if (r.status !== 422 || whole) break;
  }
  throw failure;
}

// "by the band · 3:07 · flac, lossless · track 3 · with cover art"
function describe(t) {
  return [t.artist && `by ${t.artist}`, t.duration && clock(t.duration),
    t.lossless ? `${t.container}, lossless` : t.container, t.track_number && `track ${t.track_number}`,
    t.has_cover && 'with cover art'].filter(Boolean).join(' · ');
}

const tagList = (text) => String(text || '').split(',').map((t) => t.trim()).filter(Boolean);
const isAudio = (file) => AUDIO.test(file.name) || file.type.startsWith('audio/');
const size = (n) => (n < 1 << 20 ? `${Math.max(1, Math.round(n / 1024))} kb` : `${(n / (1 << 20)).toFixed(1)} mb`);

// POST /tracks/, reporting the bytes sent (0-100); resolves to the upload id, rejects with the server's words.
// The node takes a burst of uploads, then one every few seconds (429 with Retry-After): a long album waits its turn
// and carries on by itself instead of failing its later files.
async function sendTrack(data, onBytes, onWait = () => {}) {
  for (;;) {
    try {
      return await sendOnce(data, onBytes);
    } catch (err) {
      if (!err.retryAfter) throw err;
      onWait(err.retryAfter);
      await new Promise((r) => { setTimeout(r, err.retryAfter * 1000); });
    }
  }
}

function sendOnce(data, onBytes) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/tracks/');
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => e.lengthComputable && onBytes(Math.round((e.loaded / e.total) * 100));
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch { /* not JSON */ }
      if (xhr.status === 200) resolve(body.upload_id);
      else {
        const err = new Error(body.detail || `upload failed (${xhr.status})`);
        if (xhr.status === 429) err.retryAfter = Math.min(120, Math.max(1, Number(xhr.getResponseHeader('Retry-After')) || 5));
        reject(err);
      }
    };
    xhr.onerror = () => reject(new Error('the connection dropped while sending; try again'));
    xhr.send(data);
  });
}

// Each progress event to onEvent; resolves with the last when the track is ready, rejects with why it failed.
function follow(uploadId, onEvent, sources) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/tracks/uploads/${encodeURIComponent(uploadId)}/progress`);
    sources.add(source);
    const end = (settle, value) => {
      source.close();
      sources.delete(source);
      settle(value);
    };
    source.onmessage = (ev) => {
      const p = JSON.parse(ev.data);
      onEvent(p);
      if (p.status === 'completed') end(resolve, p);
      else if (p.status === 'failed') end(reject, new Error(p.error || 'processing failed'));
    };
    source.onerror = () => { // the browser reconnects by itself unless it gave up
      if (source.readyState !== EventSource.CLOSED) return;
      end(reject, new Error('lost the progress stream; the track may still appear'));
    };
  });
}

export function init(main) {
  const form = main.querySelector('[data-upload]');
  if (!form) return undefined;
  const sources = new Set(); // closed when the page is left; uploads already sent finish on the server anyway
  const undo = [];
  const on = (target, type, fn) => {
    target.addEventListener(type, fn);
    undo.push(() => target.removeEventListener(type, fn));
  };
  const single = initSingle(main, form, sources);
  const album = initAlbum(main, on, sources);

  const modes = main.querySelector('[data-mode]');
  modes.hidden = false;
  main.querySelector('[data-drop-hint]').hidden = false;
  const setMode = (mode) => {
    modes.querySelector(`input[value="${mode}"]`).checked = true;
    const isAlbum = mode === 'album';
    form.hidden = isAlbum;
    main.querySelector('[data-progress]').hidden = isAlbum || !single.started();
    album.form.hidden = !isAlbum;
    main.querySelector('h1').textContent = isAlbum ? 'upload an album' : 'upload a track';
  };
  modes.addEventListener('change', (e) => setMode(e.target.value));
  setMode(modes.querySelector('input:checked').value);

  // Files dropped anywhere on the page: one in track mode fills the file input; several make an album.
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  on(document, 'dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    main.classList.add('dropping');
  });
  on(document, 'dragleave', (e) => e.relatedTarget || main.classList.remove('dropping'));
  on(document, 'drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault(); // never let the browser open the file in place of the page
    main.classList.remove('dropping');
    const files = [...e.dataTransfer.files];
    const audio = files.filter(isAudio);
    if (!audio.length) announce('no audio files in what was dropped');
    else if (album.form.hidden && audio.length === 1) single.pick(audio[0]);
    else {
      setMode('album');
      album.add(files);
    }
  });

  return () => {
    album.stop();
    for (const s of sources) s.close();
    for (const u of undo) u();
  };
}

// ---- one track --------------------------------------------------------------------------------------------------

function initSingle(main, form, sources) {
  const box = main.querySelector('[data-progress]');
  const [bytes, processing, phase, percent, error, done] = ['bytes', 'processing', 'phase', 'percent', 'error', 'done']
    .map((name) => box.querySelector(`[data-${name}]`));
  const info = form.querySelector('[data-file-info]');
  const fileInput = form.querySelector('#file');
  const button = form.querySelector('button[type="submit"]');
  let started = false;
  let picked = 0; // which pick a tag answer belongs to: a late answer for an earlier file is dropped
  const filled = new Map(); // what the last file's tags put in each field: a new file may replace that, not typing

  const fill = (id, value) => {
    const input = form.querySelector(id);
    const now = input.value.trim();
    if (now && now !== filled.get(input)) return;
    input.value = value || '';
    filled.set(input, input.value);
  };

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files[0];
    const mine = ++picked;
    info.hidden = !file;
    info.classList.remove('error');
    if (!file) return;
    info.textContent = 'reading its tags…';
    try {
      const tags = await readTags(file);
      if (mine !== picked) return;
      fill('#title', tags.title?.slice(0, MAX_TEXT));
      fill('#album', tags.album?.slice(0, MAX_TEXT));
      fill('#tags', tags.genre?.toLowerCase().replace(/\s+/g, ' ').trim().slice(0, MAX_TAG));
      info.textContent = `from the file: ${describe(tags)}`;
    } catch (err) {
      if (mine !== picked) return;
      info.classList.add('error');
      info.textContent = err.message;
    }
    info.dataset.read = mine; // this pick's tags are in
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const tags = tagList(data.get('tags_text'));
    data.delete('tags_text');
    if (tags.length) data.set('tags', JSON.stringify(tags));
    for (const key of ['title', 'album', 'description']) if (!String(data.get(key) || '').trim()) data.delete(key);
    if (!data.get('image')?.size) data.delete('image');
    const notice = data.get('content_notice');
    data.delete('content_notice');
    if (notice) data.set('self_labels', JSON.stringify([notice]));

    started = true;
    box.hidden = false;
    error.textContent = '';
    done.hidden = true;
    phase.textContent = 'sending';
    bytes.value = 0;
    processing.value = 0;
    button.disabled = true;
    try {
      const id = await sendTrack(data, (pct) => {
        bytes.value = pct;
        percent.textContent = `${pct}%`;
      }, (s) => {
        phase.textContent = `waiting ${s} s: the node takes a few uploads a minute`;
      });
      bytes.value = 100;
      phase.textContent = 'processing';
      percent.textContent = '';
      const p = await follow(id, (ev) => {
        if (typeof ev.percent === 'number') {
          processing.value = ev.percent;
          percent.textContent = `${Math.round(ev.percent)}%`;
        }
        if (ev.phase) phase.textContent = String(ev.phase).replaceAll('_', ' ');
      }, sources);
      processing.value = 100;
      phase.textContent = 'ready';
      done.querySelector('[data-track-link]').href = `/track/${p.track_id}`;
      done.hidden = false;
      form.reset();
      filled.clear();
      picked++; // a tag answer still on its way belongs to the file just sent
      info.hidden = true;
    } catch (err) {
      error.textContent = err.message;
      phase.textContent = 'failed';
    }
    button.disabled = false;
  });

  return {
    started: () => started,
    pick(file) { // as if chosen in the file input
      const dt = new DataTransfer();
      dt.items.add(file);
      fileInput.files = dt.files;
      fileInput.dispatchEvent(new Event('change', { bubbles: true })); // bubbles, as a real pick's does
    },
  };
}

// ---- an album ---------------------------------------------------------------------------------------------------

function initAlbum(main, on, sources) {
  const form = main.querySelector('[data-album-form]');
  const list = form.querySelector('[data-album-list]');
  const template = main.querySelector('template[data-album-item]');
  const $ = (sel) => form.querySelector(sel);
  const [titleInput, tagsInput, coverInput, filesInput] = ['title', 'tags', 'cover', 'files']
    .map((n) => $(`#album-${n}`));
  const [sendButton, statusLine, errorLine, done] = ['send', 'status', 'error', 'done']
    .map((n) => $(`[data-album-${n}]`));
  const part = (it, name) => it.li.querySelector(`[data-af-${name}]`);

  const items = new Map(); // <li> -> {li, file, n, tags, state, trackId, tried}
  let added = 0;
  let alive = true;
  let running = false;
  let userOrdered = false; // once reordered by hand, tags no longer reorder the list
  let album = null; // the album's JSON once made; the tracks carry its title, so the title is then fixed
  let coverSent = false;
  let probing = Promise.resolve(); // tag reads go one at a time too

  const ordered = () => [...list.children].map((li) => items.get(li));
  const ofState = (...states) => ordered().filter((it) => states.includes(it.state));
  const open = (it) => ['waiting', 'failed'].includes(it.state); // not on its way: can be edited or removed

  function refresh() {
    ordered().forEach((it, i) => { part(it, 'num').textContent = i + 1; });
    const n = items.size;
    if (!running && !album) statusLine.textContent = n ? `${n} file${n === 1 ? '' : 's'}` : '';
    // Once the album exists the button sends only what is new or retried; with nothing to send it goes away.
    sendButton.textContent = album ? 'send the new files' : 'upload album';
    sendButton.hidden = Boolean(album) && !running && !ofState('waiting').length;
  }

  function setState(it, state, text = state) {
    it.state = state;
    it.li.dataset.state = state;
    part(it, 'status').textContent = text;
    part(it, 'bars').hidden = (state === 'waiting' && !it.tried) || state === 'ready';
    part(it, 'retry').hidden = state !== 'failed';
    part(it, 'remove').hidden = !open(it);
    part(it, 'title').readOnly = !open(it); // once sent, the track's own page is where to rename it
    refresh();
  }

  function fail(it, text) {
    part(it, 'error').textContent = text;
    setState(it, 'failed');
  }

  function add(files) {
    const skipped = files.filter((f) => !isAudio(f)).map((f) => f.name);
    for (const file of files.filter(isAudio)) {
      const f = (x) => [x.name, x.size, x.lastModified].join();
      if (ordered().some((it) => f(it.file) === f(file))) continue; // the same file picked twice
      const li = template.content.firstElementChild.cloneNode(true);
      const it = { li, file, n: ++added, tags: null, trackId: null, tried: false };
      items.set(li, it);
      const title = part(it, 'title');
      title.id = `af-title-${it.n}`;
      title.placeholder = file.name.replace(/\.[^.]+$/, '').replaceAll('_', ' ').trim() || 'untitled'; // as the server
      part(it, 'label').htmlFor = title.id;
      part(it, 'label').textContent = `title of ${file.name}`;
      for (const [el, label] of [[li.querySelector('[data-sort-handle]'), `move ${file.name} (arrow keys)`],
        [part(it, 'remove'), `remove ${file.name}`], [part(it, 'retry'), `retry ${file.name}`],
        [part(it, 'bytes'), `bytes sent of ${file.name}`], [part(it, 'processing'), `processing of ${file.name}`]]) {
        el.setAttribute('aria-label', label);
      }
      part(it, 'file').textContent = `${file.name} · ${size(file.size)}`;
      list.append(li);
      setState(it, 'waiting', 'reading tags…');
      probing = probing.then(() => readFileTags(it));
    }
    done.hidden = true;
    if (skipped.length) errorLine.textContent = `left out, not audio: ${skipped.join(', ')}`;
    refresh();
  }

  async function readFileTags(it) {
    if (!alive || !it.li.isConnected) return;
    try {
      it.tags = await readTags(it.file);
      const title = part(it, 'title');
      if (!title.value.trim() && it.tags.title) title.value = it.tags.title.slice(0, MAX_TEXT);
      part(it, 'info').textContent = `· ${describe(it.tags)}`;
      // The album's title from the first file that names one, unless one is there already.
      if (it.tags.album && !album && !titleInput.value.trim()) titleInput.value = it.tags.album.slice(0, MAX_TEXT);
    } catch (err) {
      part(it, 'error').textContent = err.message; // said before sending; the server has the last word
    }
    it.li.dataset.probed = '';
    if (it.state === 'waiting') setState(it, 'waiting');
    if (!userOrdered) autoOrder();
  }

  // Track numbers from the tags first, in order; files without one after them, in the order they were added.
  function autoOrder() {
    const key = (li) => items.get(li).tags?.track_number ?? Infinity;
    const before = [...list.children];
    const after = [...before].sort((a, b) => (key(a) - key(b)) || (items.get(a).n - items.get(b).n));
    if (after.every((li, i) => li === before[i])) return;
    const focused = document.activeElement;
    list.append(...after);
    if (list.contains(focused)) focused.focus({ preventScroll: true });
    refresh();
  }

  makeSortable(list, {
    onMove() {
      userOrdered = true;
      refresh();
      if (album && !running && ofState('ready').length) saveOrder();
    },
  });

  on(filesInput, 'change', () => {
    add([...filesInput.files]);
    filesInput.value = ''; // picking more, or the same again, adds to the list
  });

  on(list, 'click', (e) => {
    const it = items.get(e.target.closest('li'));
    if (!it || !open(it)) return;
    if (e.target.closest('[data-af-remove]')) {
      const next = it.li.nextElementSibling || it.li.previousElementSibling;
      items.delete(it.li);
      it.li.remove();
      (next?.querySelector('[data-af-title]') || filesInput).focus();
      refresh();
      toast(`removed ${it.file.name}`);
    } else if (e.target.closest('[data-af-retry]')) {
      part(it, 'error').textContent = '';
      setState(it, 'waiting', 'waiting to send again');
      if (!running) run();
    }
  });

  on(form, 'submit', (e) => {
    e.preventDefault();
    if (running) return;
    errorLine.textContent = '';
    if (!titleInput.value.trim()) {
      errorLine.textContent = 'give the album a title';
      titleInput.focus();
    } else if (!items.size) {
      errorLine.textContent = 'add the album\'s audio files first';
      filesInput.focus();
    } else if (ofState('waiting').length) run();
  });

  async function run() {
    running = true;
    sendButton.disabled = true;
    done.hidden = true;
    statusLine.textContent = 'reading tags…';
    await probing; // the order from the tags must be settled before the first file goes
    try {
      if (!album) {
        statusLine.textContent = 'making the album…';
        album = await api('/albums/', { method: 'POST', body: { title: titleInput.value.trim() } });
        titleInput.readOnly = true;
      }
    } catch (err) {
      errorLine.textContent = err.message;
      running = false;
      sendButton.disabled = false;
      refresh();
      return;
    }
    if (coverInput.files[0] && !coverSent) {
      statusLine.textContent = 'sending the cover…';
      const data = new FormData();
      data.set('image', coverInput.files[0]);
      try {
        await api(`/albums/${album.id}/cover`, { method: 'POST', body: data });
        coverSent = true;
        coverInput.disabled = true;
      } catch (err) {
        errorLine.textContent = `the cover was not saved: ${err.message}`; // the music matters more: carry on
      }
    }

    let watching = Promise.resolve();
    while (alive) {
      const it = ofState('waiting')[0]; // in list order, so a reorder while sending still counts
      if (it) {
        const id = await send(it);
        if (id) watching = watching.then(() => process(it, id));
        continue;
      }
      await watching; // then look again: a retry may have been asked for meanwhile
      if (!ofState('waiting').length) break;
    }
    if (!alive) return;
    await saveOrder();
    running = false;
    sendButton.disabled = false;
    refresh();
    const failed = ofState('failed').length;
    const ready = ofState('ready').length;
    statusLine.textContent = failed
      ? `${ready} of ${ready + failed} files on the album; retry what failed, or remove it`
      : `all ${ready} tracks are on the album`;
    announce(statusLine.textContent);
  }

  const progressLine = () => {
    statusLine.textContent = `one file at a time: ${ofState('ready', 'failed').length} of ${items.size} done`;
  };

  async function send(it) {
    it.tried = true;
    part(it, 'error').textContent = '';
    part(it, 'bytes').value = 0;
    part(it, 'processing').value = 0;
    setState(it, 'sending');
    progressLine();
    const data = new FormData();
    data.set('file', it.file, it.file.name);
    const title = part(it, 'title').value.trim();
    if (title) data.set('title', title);
    data.set('album', album.title);
    const tags = tagList(tagsInput.value);
    if (tags.length) data.set('tags', JSON.stringify(tags));
    const notice = form.elements.content_notice.value;
    if (notice) data.set('self_labels', JSON.stringify([notice]));
    if (form.elements.album_unlisted.checked) data.set('unlisted', 'true');
    try {
      const id = await sendTrack(data, (pct) => {
        part(it, 'bytes').value = pct;
        setState(it, 'sending', `sending ${pct}%`);
      }, (s) => setState(it, 'sending', `waiting ${s} s: the node takes a few uploads a minute`));
      part(it, 'bytes').value = 100;
      setState(it, 'sent', 'sent; waiting its turn to be processed');
      return id;
    } catch (err) {
      fail(it, err.message);
      return null;
    }
  }

  async function process(it, uploadId) {
    if (!alive) return;
    const bar = part(it, 'processing');
    setState(it, 'processing');
    try {
      const p = await follow(uploadId, (ev) => {
        if (typeof ev.percent === 'number') bar.value = ev.percent;
        const phase = ev.phase ? ` · ${String(ev.phase).replaceAll('_', ' ')}` : '';
        const text = `processing ${Math.round(bar.value)}%${phase}`;
        if (ev.status !== 'completed' && ev.status !== 'failed') setState(it, 'processing', text);
      }, sources);
      bar.value = 100;
      it.trackId = p.track_id;
      setState(it, 'ready', 'ready · ');
      const link = document.createElement('a');
      link.href = `/track/${p.track_id}`;
      link.textContent = 'open the track';
      part(it, 'status').append(link);
    } catch (err) {
      fail(it, err.message);
    }
    progressLine();
  }

  async function saveOrder() {
    const ids = ofState('ready').map((it) => it.trackId);
    if (!ids.length) return;
    try {
      await api(`/albums/${album.id}/tracks`, { method: 'PUT', body: { track_ids: ids } });
    } catch (err) {
      errorLine.textContent = `the album's order was not saved: ${err.message}`;
      return;
    }
    const link = done.querySelector('[data-album-link]');
    const who = encodeURIComponent(album.artist_handle || album.artist_did);
    link.href = `/u/${who}/album/${encodeURIComponent(album.slug)}`;
    link.textContent = `open ${album.title}`;
    done.hidden = false;
    if (!running) toast('album order saved');
  }

  return {
    form,
    add,
    stop() {
      alive = false; // files not yet sent stay unsent; those sent finish on the server
    },
  };
}
