// Settings apply at once: theme and accent in this browser (and in the account when signed in), the rest in
// the account's preferences (POST /preferences/ with only what changed).

import { api, signedIn } from '../api.js';
import { h } from '../dom.js';
import { setAccent, setTheme } from '../theme.js';
import { toast } from '../toast.js';

// The page's status line, also said in a toast (the toast region is the one that speaks).
function toasting(el) {
  return {
    get textContent() { return el.textContent; },
    set textContent(text) {
      el.textContent = text;
      toast(text, { error: /^(not |no |could not)/.test(text) });
    },
  };
}

export function init(main) {
  const status = toasting(main.querySelector('[data-status]'));
  const save = async (changes) => {
    if (!signedIn()) {
      status.textContent = 'saved in this browser';
      return;
    }
    try {
      await api('/preferences/', { method: 'POST', body: changes });
      status.textContent = 'saved';
    } catch (err) {
      status.textContent = `not saved: ${err.message}`;
    }
  };
  for (const radio of main.querySelectorAll('[data-theme-choice] input')) {
    radio.addEventListener('change', () => {
      setTheme(radio.value);
      save({ theme: radio.value });
    });
  }
  const stored = localStorage.getItem('plyrd.theme');
  if (stored) {
    const radio = main.querySelector(`[data-theme-choice] input[value="${stored}"]`);
    if (radio) radio.checked = true;
  }
  const accent = main.querySelector('[data-accent]');
  const storedAccent = localStorage.getItem('plyrd.accent');
  if (storedAccent) accent.value = storedAccent;
  accent.addEventListener('input', () => setAccent(accent.value));
  accent.addEventListener('change', () => save({ accent_color: accent.value }));
  for (const box of main.querySelectorAll('[data-pref]')) {
    box.addEventListener('change', () => {
      if (box.dataset.pref === 'show_sensitive_artwork') document.body.toggleAttribute('data-show-sensitive', box.checked);
      save({ [box.dataset.pref]: box.checked });
    });
  }
  const hidden = main.querySelector('[data-hidden-tags]');
  main.querySelector('[data-save-hidden]')?.addEventListener('click', () => {
    save({ hidden_tags: hidden.value.split(',').map((t) => t.trim()).filter(Boolean) });
  });

  const teal = main.querySelector('[data-teal]');
  teal?.addEventListener('change', async () => {
    try {
      const prefs = await api('/preferences/', { method: 'POST', body: { enable_teal_scrobbling: teal.checked } });
      if (teal.checked && prefs.teal_needs_reauth) {
        // The session lacks teal.fm's scopes: the PDS must approve them (the session is kept).
        status.textContent = 'asking your PDS to approve teal.fm scrobbling...';
        const { auth_url: url } = await api('/auth/scope-upgrade/start', { method: 'POST', body: { include_teal: true } });
        window.location.assign(url);
        return;
      }
      status.textContent = 'saved';
    } catch (err) {
      status.textContent = `not saved: ${err.message}`;
    }
  });
  if (new URLSearchParams(location.search).has('scope_upgraded')) {
    status.textContent = 'your PDS approved teal.fm scrobbling: plays now go to teal.fm too';
    history.replaceState(history.state, '', '/settings'); // a reload should not say it again
  }
  if (main.querySelector('[data-tokens-section]')) startTokens(main, status);
  if (main.querySelector('[data-subsonic-section]')) startSubsonic(main, status);
}

// Developer tokens: listed by prefix, revoked one by one; creating one runs its own OAuth grant at the PDS,
// whose callback page shows the token once.
async function startTokens(main, status) {
  const list = main.querySelector('[data-tokens]');
  const render = async () => {
    const { tokens } = await api('/auth/developer-tokens');
    list.replaceChildren(...tokens.map((t) => {
      const expires = t.expires_at ? new Date(t.expires_at).toISOString().slice(0, 10) : 'never'; // ISO 8601
      const revoke = h('button', { type: 'button', class: 'button' }, 'revoke');
      revoke.addEventListener('click', async () => {
        await api(`/auth/developer-tokens/${encodeURIComponent(t.prefix)}`, { method: 'DELETE' });
        status.textContent = `revoked ${t.name}`;
        render();
      });
      return h('li', { class: 'row' },
        h('span', {}, h('b', {}, t.name), ' ', h('code', {}, `${t.prefix}...`), ' ',
          h('small', { class: 'quiet' }, `expires ${expires}`)),
        revoke);
    }));
    if (!tokens.length) list.replaceChildren(h('li', { class: 'quiet small' }, 'no tokens yet'));
  };
  main.querySelector('[data-token-form]').addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    try {
      const { auth_url: url } = await api('/auth/developer-token/start', {
        method: 'POST', body: { name: form.querySelector('#token-name').value, expires_in_days: Number(form.querySelector('#token-days').value) },
      });
      window.location.assign(url);
    } catch (err) {
      status.textContent = `not created: ${err.message}`;
    }
  });
  try {
    await render();
  } catch (err) {
    list.replaceChildren();
    status.textContent = err.message;
  }
}

// The Subsonic password: whether there is one and when it was made and last used; making one (or a new one, which
// ends the old) shows it here once, with a copy button; it is never shown again.
async function startSubsonic(main, status) {
  const shown = main.querySelector('[data-subsonic-password]');
  const actions = main.querySelector('[data-subsonic-actions]');
  const day = (iso) => (iso ? new Date(iso).toISOString().slice(0, 10) : null);
  const button = (label, act) => {
    const b = h('button', { type: 'button', class: 'button' }, label);
    b.addEventListener('click', act);
    return b;
  };
  const render = async () => {
    const info = await api('/auth/subsonic-password');
    main.querySelector('[data-subsonic-server]').textContent = info.server;
    main.querySelector('[data-subsonic-username]').textContent = info.username;
    const about = info.exists
      ? `password made ${day(info.created_at)}, ${info.last_used_at ? `last used ${day(info.last_used_at)}` : 'not used yet'}`
      : 'no password yet';
    actions.replaceChildren(
      h('span', { class: 'quiet small', 'data-subsonic-about': true }, about),
      button(info.exists ? 'make a new password' : 'make a password', create),
      ...(info.exists ? [button('revoke', revoke)] : []),
    );
  };
  const create = async () => {
    try {
      const { password } = await api('/auth/subsonic-password', { method: 'POST' });
      const copy = button('copy', async () => {
        try {
          await navigator.clipboard.writeText(password);
          status.textContent = 'password copied';
        } catch {
          status.textContent = 'could not copy: select the password and copy it yourself';
        }
      });
      shown.replaceChildren(
        h('p', { class: 'row' }, h('code', { 'data-subsonic-new': true }, password), copy),
        h('p', { class: 'quiet small' }, 'copy it now: it is shown this once. any earlier password no longer works.'),
      );
      status.textContent = 'new subsonic password made';
      await render();
    } catch (err) {
      status.textContent = `no password made: ${err.message}`;
    }
  };
  const revoke = async () => {
    try {
      await api('/auth/subsonic-password', { method: 'DELETE' });
      shown.replaceChildren();
      status.textContent = 'subsonic password revoked: apps signed in with it stop working';
      await render();
    } catch (err) {
      status.textContent = `not revoked: ${err.message}`;
    }
  };
  try {
    await render();
  } catch (err) {
    status.textContent = err.message;
  }
}
