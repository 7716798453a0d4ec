// Sign-in with an app password without leaving the page (so playback goes on): post JSON to /auth/app-password,
// which sets the session cookie, then navigate client-side. The handle form goes to /auth/start with a full page
// load on purpose: OAuth sends the browser to the person's own PDS and back. It is followed as a navigation
// (location.assign), not submitted: /auth/start answers a redirect to the PDS, and the Content-Security-Policy's
// form-action 'self' applies to a form submission's redirects too, but not to a navigation.

import { api } from '../api.js';

export function init(main, { player, go }) {
  const start = main.querySelector('form[action="/auth/start"]');
  start?.addEventListener('submit', (e) => {
    e.preventDefault();
    const url = new URL(start.getAttribute('action'), location.href);
    url.search = new URLSearchParams(new FormData(start, e.submitter)).toString();
    location.assign(url.href);
  });
  const form = main.querySelector('[data-app-password]');
  form?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const error = form.querySelector('[data-error]');
    const button = form.querySelector('button[type="submit"]');
    error.textContent = '';
    button.disabled = true;
    try {
      await api('/auth/app-password', { method: 'POST',
        body: { handle: form.elements.handle.value.trim().replace(/^@/, ''), app_password: form.elements.app_password.value } });
      document.body.dataset.user = form.elements.handle.value;
      // What was queued while signed out becomes this account's queue.
      if (player.queue.ids.length) player.queue.push();
      await go(form.elements.next.value || '/');
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}
