// Sign-in with an app password without leaving the page (so playback goes on): post JSON to /auth/app-password,
// which sets the session cookie, then navigate client-side. The handle form submits to /auth/start with a full
// page load on purpose: OAuth sends the browser to the person's own PDS and back.

import { api } from '../api.js';

export function init(main, { player, go }) {
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
