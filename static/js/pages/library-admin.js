// The music folder's admin page: the running scan with its progress, the last scan's result, the counts and the
// files that are not tracks (paged), from GET /library/ and /library/errors; "scan now" is POST /library/scan.
// Polls every 2 s while a scan runs (every 15 s otherwise) and stops when the page is left.

import { api } from '../api.js';
import { h } from '../dom.js';

const ERRORS_PAGE = 50;

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function seconds(s) {
  if (s == null || !Number.isFinite(Number(s))) return '';
  const t = Math.round(Number(s));
  if (t < 60) return `${t} s`;
  const m = Math.floor(t / 60);
  return m < 60 ? `${m} min ${t % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function when(epoch) {
  if (!epoch) return '';
  return new Date(Number(epoch) * 1000).toLocaleString();
}

function runningView(run) {
  if (!run) return h('p', { class: 'quiet' }, 'no scan running.');
  const p = run.progress || run;
  const seen = Number(p.seen || 0);
  const total = Number(p.total_estimate || 0);
  const bits = [plural(seen, 'file'), total ? `of about ${total}` : null,
    p.per_second ? `${Number(p.per_second).toFixed(1)} files/s` : null,
    p.eta_seconds != null ? `about ${seconds(p.eta_seconds)} left` : null].filter(Boolean);
  return h('div', {},
    h('p', {}, `scanning (${run.trigger || 'scan'}): ${bits.join(', ')}`),
    h('progress', { max: total > 0 ? total : null, value: total > 0 ? Math.min(seen, total) : null,
      'aria-label': 'scan progress' }));
}

function lastView(last) {
  if (!last) return h('p', { class: 'quiet small' }, 'no scan has finished yet.');
  const words = { added: 'added', updated: 'updated', moved: 'moved', removed: 'removed', unchanged: 'unchanged',
    errors: 'not tracks' };
  const parts = Object.keys(words).filter((k) => last[k]).map((k) => `${last[k]} ${words[k]}`);
  const elapsed = last.elapsed ?? (last.finished_at && last.started_at ? last.finished_at - last.started_at : null);
  return h('p', { class: 'small' },
    `last scan (${last.trigger || 'scan'}${last.state && last.state !== 'done' ? `, ${last.state}` : ''}): `,
    `${plural(Number(last.seen || 0), 'file')} seen${parts.length ? `; ${parts.join(', ')}` : ''}`,
    elapsed != null ? ` in ${seconds(elapsed)}` : '', last.finished_at ? `, ${when(last.finished_at)}` : '',
    ...noteList(last.detail));
}

// The scan's notes (a folder left alone because it is missing...) and its error, each on a line of its own.
function noteList(detail) {
  const notes = [...(detail?.notes || []), ...(detail?.error ? [`failed: ${detail.error}`] : [])];
  return notes.map((n) => h('span', { class: 'quiet' }, h('br'), String(n)));
}

export function init(main) {
  const running = main.querySelector('[data-running]');
  const last = main.querySelector('[data-last]');
  const counts = main.querySelector('[data-counts]');
  const analysis = main.querySelector('[data-analysis]');
  const folders = main.querySelector('[data-folders]');
  const status = main.querySelector('[data-status]');
  const errorsList = main.querySelector('[data-errors]');
  const pages = main.querySelector('[data-errors-pages]');
  const scanButton = main.querySelector('[data-scan]');
  let timer = null;
  let gone = false;
  let offset = 0;

  async function loadErrors() {
    let page;
    try {
      page = await api(`/library/errors?limit=${ERRORS_PAGE}&offset=${offset}`);
    } catch (err) {
      errorsList.replaceChildren(h('li', { class: 'quiet' }, `could not load: ${err.message}`));
      return;
    }
    const items = page.items || [];
    errorsList.replaceChildren(...(items.length ? items.map((e) => h('li', {},
      h('code', {}, e.file || e.path || e.rel_path || ''), ' ', h('span', { class: 'quiet' }, e.why || e.error || '')))
      : [h('li', { class: 'quiet' }, offset ? 'no more.' : 'none: every file is a track.')]));
    const buttons = [];
    if (offset > 0) buttons.push(h('button', { type: 'button', class: 'button', dataset: { page: -1 } }, 'previous'));
    if (items.length === ERRORS_PAGE) buttons.push(h('button', { type: 'button', class: 'button', dataset: { page: 1 } }, 'next'));
    pages.replaceChildren(...buttons);
  }

  pages.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-page]');
    if (!b) return;
    offset = Math.max(0, offset + Number(b.dataset.page) * ERRORS_PAGE);
    loadErrors();
  });

  let wasRunning = false;
  async function refresh() {
    let s;
    try {
      s = await api('/library/');
    } catch (err) {
      status.textContent = `could not load the status: ${err.message}`;
      schedule(15000);
      return;
    }
    if (gone) return;
    status.textContent = '';
    running.replaceChildren(runningView(s.running));
    last.replaceChildren(lastView(s.last));
    const c = s.counts || {};
    counts.replaceChildren(...Object.entries(c).flatMap(([k, v]) => [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, String(v))]));
    if (Array.isArray(s.folders) && s.folders.length) {
      folders.replaceChildren(...s.folders.map((f) => h('li', {}, h('code', {}, typeof f === 'string' ? f : f.path),
        f.exists === false ? h('span', { class: 'quiet' }, ' (missing)') : null)));
    }
    const a = s.analysis || {};
    analysis.textContent = a.pending ? `waveforms and loudness: ${a.pending} to go, in the background.`
      : 'waveforms and loudness: all done.';
    scanButton.disabled = Boolean(s.running);
    if (wasRunning && !s.running) loadErrors();
    wasRunning = Boolean(s.running);
    schedule(s.running ? 2000 : 15000);
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (!gone) timer = setTimeout(refresh, ms);
  }

  scanButton.addEventListener('click', async () => {
    scanButton.disabled = true;
    status.textContent = 'starting a scan…';
    try {
      await api('/library/scan', { method: 'POST' });
      status.textContent = 'scan started';
    } catch (err) {
      status.textContent = `could not start: ${err.message}`;
      scanButton.disabled = false;
    }
    schedule(500);
  });

  refresh();
  loadErrors();
  return () => {
    gone = true;
    clearTimeout(timer);
  };
}
