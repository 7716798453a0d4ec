// One fetch wrapper for the JSON API: same-origin cookies, the X-CSRF-Token header that cookie-authenticated
// writes need (copied from the readable plyrd_csrf cookie), and failures as errors carrying the server's
// {"detail"} so the UI shows words a person can act on rather than a status code.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function csrfToken() {
  const hit = document.cookie.split('; ').find((c) => c.startsWith('plyrd_csrf='));
  return hit ? decodeURIComponent(hit.slice('plyrd_csrf='.length)) : '';
}

export function signedIn() {
  return Boolean(document.body.dataset.user);
}

export async function api(path, { method = 'GET', body, headers = {}, keepalive = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (!['GET', 'HEAD'].includes(method)) h['X-CSRF-Token'] = csrfToken();
  let payload = body;
  if (body !== undefined && !(body instanceof FormData) && typeof body !== 'string') {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers: h, body: payload, credentials: 'same-origin', keepalive });
  if (!r.ok && r.status !== 304) {
    let detail = `${r.status} ${r.statusText}`;
    try {
      detail = (await r.json()).detail || detail;
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(r.status, detail);
  }
  if (r.status === 204 || r.status === 304) return null;
  return r.json();
}

// "3:07" / "1:02:07": the same clock the server's templates print.
export function clock(seconds) {
  const t = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

// Screen readers hear what changed without focus moving (one polite live region in the shell).
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  setTimeout(() => { el.textContent = text; }, 30);
}
