// The admin console's actions (plyrd/templates/admin*.html). Each action is a button with data-post (the JSON API
// endpoint) inside a [data-act] form in a [data-row]: the typed reason goes in the body (as `resolution` when
// data-field says so), with the case it settles (data-report), the chosen flag (data-with-value) or the account
// (data-did). A button with data-needs-reason refuses an empty reason; one with data-confirm asks once more. After
// it worked, the row is read again from the server's page and swapped in place (or says it is done when it left
// the list), and the shell's live region announces what happened.

import { announce, api } from '../api.js';
import { h } from '../dom.js';

async function freshRow(id) {
  const r = await fetch(location.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
  if (!r.ok) return undefined;
  const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
  return doc.getElementById(id);
}

function bodyFor(button, form) {
  const text = form.querySelector('[data-reason]')?.value.trim() || '';
  const body = {};
  if (text) body[button.dataset.field || 'reason'] = text;
  if (button.dataset.report) body.report_id = Number(button.dataset.report);
  if (button.dataset.did) body.did = button.dataset.did;
  if (button.dataset.withValue !== undefined) body.value = form.querySelector('[data-value]')?.value;
  return { body, text };
}

function disarm(form) {
  for (const b of form.querySelectorAll('[data-armed]')) {
    delete b.dataset.armed;
    b.textContent = b.dataset.label;
  }
  form.querySelector('[data-confirm-text]')?.remove();
}

async function act(button) {
  const form = button.closest('[data-act]');
  const row = button.closest('[data-row]');
  const error = form.querySelector('[data-error]');
  error.textContent = '';
  const { body, text } = bodyFor(button, form);
  if (button.dataset.needsReason !== undefined && !text) {
    error.textContent = 'say why first: the owner reads it, and the audit log keeps it.';
    form.querySelector('[data-reason]')?.focus();
    return;
  }
  if (button.dataset.confirm && button.dataset.armed === undefined) {
    disarm(form);
    button.dataset.label = button.textContent;
    button.dataset.armed = '';
    button.textContent = `yes, ${button.dataset.label.trim()}`;
    const ask = h('p', { class: 'admin-confirm', 'data-confirm-text': true }, button.dataset.confirm);
    form.querySelector('.admin-buttons').before(ask);
    announce(`${button.dataset.confirm} press the button again to go ahead.`);
    return;
  }
  for (const b of form.querySelectorAll('button')) b.disabled = true;
  try {
    await api(button.dataset.post, { method: button.dataset.method || 'POST', body });
  } catch (err) {
    for (const b of form.querySelectorAll('button')) b.disabled = false;
    disarm(form);
    error.textContent = err.message;
    announce(`could not do it: ${err.message}`);
    return;
  }
  const done = button.dataset.done || 'done';
  let next;
  try {
    next = await freshRow(row.id);
  } catch { /* the action worked; the page is just not re-read */ }
  if (next) {
    row.replaceWith(document.adoptNode(next));
    next.setAttribute('tabindex', '-1');
    next.focus({ preventScroll: true });
  } else {
    row.replaceChildren(h('p', { class: 'admin-done', role: 'status' }, `${done}.`));
    row.setAttribute('tabindex', '-1');
    row.focus({ preventScroll: true });
  }
  announce(done);
}

export function init(main) {
  const root = main.querySelector('.admin');
  if (!root) return undefined;
  const onClick = (e) => {
    const button = e.target.closest('button[data-post]');
    if (button && root.contains(button)) act(button);
  };
  // Enter in a reason field must not act (which action would it be?): the buttons are the only way.
  const onSubmit = (e) => {
    if (e.target.matches('[data-act]')) e.preventDefault();
  };
  main.addEventListener('click', onClick);
  main.addEventListener('submit', onSubmit);
  return () => {
    main.removeEventListener('click', onClick);
    main.removeEventListener('submit', onSubmit);
  };
}
