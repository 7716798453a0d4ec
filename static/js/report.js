// Reporting a track, comment, playlist or artist to the node's admins (POST /moderation/reports): one small modal
// dialog with plyr.fm's reasons, an optional note, send and cancel. Escape or cancel closes it and focus goes back
// to what opened it. Only signed-in people are offered it (pages and the track menu check); a session that ended
// meanwhile is told to sign in. Names from the page (titles, handles) reach the dialog as text only.

import { ApiError, announce, api } from './api.js';
import { h } from './dom.js';

// plyr.fm's reasons, in its words, with a few of ours saying when each fits.
const REASONS = [
  ['copyright', 'copyright', 'someone else\'s work'],
  ['abuse', 'abuse', 'harassment, hate, threats'],
  ['spam', 'spam', 'ads, scams, floods'],
  ['explicit', 'explicit', 'unmarked sexual or graphic content'],
  ['other', 'other', 'say what in the note'],
];
const NOTE_MAX = 1000;
const WHAT = { track: 'track', comment: 'comment', playlist: 'playlist', artist: 'artist' };

let dialog = null;
let opener = null;
let subject = null;

function build() {
  const select = h('select', { id: 'report-reason', name: 'reason', required: true },
    REASONS.map(([value, label, hint]) => h('option', { value }, `${label}: ${hint}`)));
  const note = h('textarea', { id: 'report-note', name: 'description', rows: 3, maxlength: NOTE_MAX,
    placeholder: 'anything the admins should know (optional)', 'aria-describedby': 'report-count' });
  const form = h('form', { class: 'report-form', method: 'dialog', 'data-report-form': true },
    h('label', { for: 'report-reason' }, 'reason'), select,
    h('label', { for: 'report-note' }, 'note ', h('span', { class: 'quiet small' }, '(optional)')), note,
    h('p', { class: 'error', role: 'alert', 'data-error': true }),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'button primary' }, 'send'),
      h('button', { type: 'button', class: 'button', 'data-report-cancel': true }, 'cancel'),
      h('span', { class: 'quiet small', id: 'report-count', 'data-count': true }, `0 / ${NOTE_MAX}`)));
  const done = h('div', { class: 'report-done', 'data-report-done': true, hidden: true },
    h('p', { role: 'status' }, 'thanks, the node\'s admins will look at it.'),
    h('button', { type: 'button', class: 'button', 'data-report-cancel': true }, 'close'));
  const el = h('dialog', { id: 'report-dialog', class: 'report-dialog', 'aria-labelledby': 'report-heading' },
    h('h2', { id: 'report-heading' }, 'report'),
    h('p', { class: 'quiet small report-subject', 'data-report-subject': true }),
    form, done);

  note.addEventListener('input', () => {
    const count = form.querySelector('[data-count]');
    count.textContent = `${note.value.length} / ${NOTE_MAX}`;
  });
  el.addEventListener('click', (e) => {
    if (e.target.closest('[data-report-cancel]')) close();
  });
  // The dialog owns the keyboard while open: the player's shortcuts (space, q, j, l...) stay out of it.
  el.addEventListener('keydown', (e) => {
    e.stopPropagation();
    if (e.key === 'Escape') {
      e.preventDefault();
      close();
    }
  });
  el.addEventListener('cancel', (e) => { // Escape as the browser reports it: close our way, focus back
    e.preventDefault();
    close();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send(form);
  });
  window.addEventListener('popstate', close); // back or forward leaves the page it was about
  document.body.append(el);
  return el;
}

async function send(form) {
  const error = form.querySelector('[data-error]');
  const submit = form.querySelector('button[type="submit"]');
  error.textContent = '';
  submit.disabled = true;
  const description = form.elements.description.value.trim();
  try {
    await api('/moderation/reports', { method: 'POST', body: {
      target_type: subject.type, target_id: subject.id, reason: form.elements.reason.value,
      ...(description ? { description } : {}),
    } });
    form.hidden = true;
    const done = dialog.querySelector('[data-report-done]');
    done.hidden = false;
    done.querySelector('button').focus();
    announce('report sent');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      error.replaceChildren(h('a', { href: `/login?next=${encodeURIComponent(location.pathname)}` }, 'sign in'),
        ' to report');
    } else {
      error.textContent = err.message;
    }
  } finally {
    submit.disabled = false;
  }
}

function close() {
  if (!dialog?.open) return;
  dialog.close();
  const back = opener;
  opener = null;
  // The menu item that opened it is gone: its ⋯ button, or the page, takes focus back.
  (back?.isConnected ? back : document.getElementById('main'))?.focus();
}

// Open the dialog for one subject: `type` track|comment|playlist|artist, `id` what the API names it by (a track or
// comment id, a playlist id, an artist's DID), `name` how the page shows it, `from` the control to refocus.
export function openReport({ type, id, name, from }) {
  dialog ??= build();
  if (dialog.open) close();
  opener = from || document.activeElement;
  subject = { type, id: String(id) };
  dialog.querySelector('#report-heading').textContent = `report this ${WHAT[type] || type}`;
  dialog.querySelector('[data-report-subject]').textContent = name || '';
  const form = dialog.querySelector('[data-report-form]');
  form.reset();
  form.hidden = false;
  form.querySelector('[data-error]').textContent = '';
  form.querySelector('[data-count]').textContent = `0 / ${NOTE_MAX}`;
  dialog.querySelector('[data-report-done]').hidden = true;
  dialog.showModal();
  form.elements.reason.focus();
}

// A page's report buttons: <button data-report="track" data-report-id="3" data-report-name="…">report</button>.
export function reportButtons(main) {
  const onClick = (e) => {
    const b = e.target.closest('[data-report]');
    if (!b || !main.contains(b)) return;
    e.preventDefault();
    openReport({ type: b.dataset.report, id: b.dataset.reportId, name: b.dataset.reportName, from: b });
  };
  main.addEventListener('click', onClick);
  return () => main.removeEventListener('click', onClick);
}
