// The track page: the like button, the big waveform (seeks when this track is the one playing, starts it
// otherwise), timed comments you click to jump to, and a comment form stamped with the current position.

import { ApiError, api, clock, csrfToken } from '../api.js';
import { toast } from '../toast.js';
import { h } from '../dom.js';
import { reportButtons } from '../report.js';
import { Waveform } from '../waveform.js';

export function init(main, { player, go }) {
  const page = main.querySelector('[data-track-id]');
  const id = Number(page.dataset.trackId);
  const duration = Number(page.dataset.duration) || 0;
  const mine = () => player.track?.id === id;
  const at = () => (mine() ? player.audio.currentTime : 0);

  // The page carries the track's JSON (peaks included): the big waveform draws from it and the player starts
  // from it without another request.
  const track = JSON.parse(main.querySelector('script[data-track]').textContent);
  if (track.peaks) player.cache.set(id, track);
  const canvas = main.querySelector('[data-track-wave]');
  const wave = new Waveform(canvas, { onSeek: (t) => player.playAt(id, t) });
  wave.set(track.peaks, duration);

  // "share from 1:15": once this track has played a little, the share link can start where the listener is.
  const shareAt = main.querySelector('[data-share-at]');
  const share = main.querySelector('[data-action="share"]');
  const shareUrl = () => {
    const t = Math.floor(at());
    share.dataset.url = shareAt.querySelector('input').checked && t > 0
      ? `${share.dataset.pageUrl}?t=${t}` : share.dataset.pageUrl;
  };
  shareAt?.querySelector('input').addEventListener('change', shareUrl);

  const stampLabel = main.querySelector('[data-comment-at]');
  const comments = main.querySelector('[data-comments]');
  const onTime = (e) => {
    if (e.detail.id !== id) return;
    wave.setTime(e.detail.time);
    if (stampLabel) stampLabel.textContent = clock(e.detail.time);
    if (shareAt) {
      shareAt.hidden = e.detail.time < 1;
      shareAt.querySelector('[data-share-at-label]').textContent = clock(e.detail.time);
      shareUrl();
    }
    // The comment for this moment lights up as playback passes it.
    for (const li of comments?.children || []) {
      const ms = Number(li.dataset.ms);
      li.classList.toggle('here', e.detail.time * 1000 >= ms && e.detail.time * 1000 < ms + 4000);
    }
  };
  document.addEventListener('plyrd:time', onTime);
  if (mine()) onTime({ detail: { id, time: player.audio.currentTime } });

  const onClick = async (e) => {
    const b = e.target.closest('[data-action]');
    if (!b) return;
    if (b.dataset.action === 'seek-comment') {
      player.unlockAudio();
      player.playAt(id, Number(b.dataset.ms) / 1000);
    } else if (b.dataset.action === 'like') {
      if (b.hasAttribute('data-needs-sign-in')) {
        go(`/login?next=/track/${id}`);
        return;
      }
      const liked = b.getAttribute('aria-pressed') === 'true';
      const show = (r) => {
        b.setAttribute('aria-pressed', String(r.liked));
        b.querySelector('[data-like-label]').textContent = r.liked ? 'liked' : 'like';
        b.querySelector('[data-like-count]').textContent = String(r.like_count);
      };
      b.disabled = true;
      try {
        const r = await api(`/tracks/${id}/like`, { method: liked ? 'DELETE' : 'POST' });
        show(r);
        // An unlike is undone by liking again (the like goes back in front of the liked list, as a new like).
        toast(r.liked ? 'liked' : 'like removed', r.liked ? {} : {
          undo: async () => {
            show(await api(`/tracks/${id}/like`, { method: 'POST' }));
            return 'liked again';
          },
        });
      } catch (err) {
        toast(err.message, { error: true });
      } finally {
        b.disabled = false;
      }
    }
  };
  main.addEventListener('click', onClick);

  const form = main.querySelector('[data-comment-form]');
  form?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = form.elements.text;
    const error = form.querySelector('[data-error]');
    error.textContent = '';
    const ms = Math.min(Math.round(at() * 1000), Math.floor(duration * 1000));
    try {
      const c = await api(`/tracks/${id}/comments`, { method: 'POST', body: { text: input.value, timestamp_ms: ms } });
      comments.append(commentItem(c));
      [...comments.children].sort((a, b) => a.dataset.ms - b.dataset.ms).forEach((li) => comments.append(li));
      const count = main.querySelector('[data-comment-count]');
      count.textContent = String(comments.children.length);
      input.value = '';
      toast(`comment posted at ${clock(ms / 1000)}`);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? 'sign in again to comment' : err.message;
    }
  });

  const add = main.querySelector('[data-add-to-playlist]');
  add?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const status = add.querySelector('[data-status]');
    try {
      await api(`/lists/playlists/${add.elements.playlist.value}/tracks`, { method: 'POST', body: { track_id: id } });
      status.textContent = 'added';
      toast(`added to ${add.elements.playlist.selectedOptions[0]?.textContent || 'the playlist'}`);
    } catch (err) {
      status.textContent = err.message;
      toast(`not added: ${err.message}`, { error: true });
    }
  });

  startShareToBluesky(main, id);
  reportButtons(main); // the track's and each comment's "report" (signed-in people, not on their own)

  return () => document.removeEventListener('plyrd:time', onTime);
}

function commentItem(c) {
  const at = clock(c.timestamp_ms / 1000);
  return h('li', { class: 'comment', dataset: { ms: c.timestamp_ms } },
    h('button', { type: 'button', class: 'stamp', 'data-action': 'seek-comment', dataset: { ms: c.timestamp_ms },
      'aria-label': `play from ${at}` }, at),
    h('span', { class: 'who' }, h('a', { href: `/u/${encodeURIComponent(c.user_handle || c.user_did)}` },
      c.user_display_name || c.user_handle || c.user_did)),
    h('span', { class: 'text' }, c.text));
}

// "share to bluesky": a post from the listener's own account with a card linking to this page. A session that may
// not post yet is sent to its PDS to allow it; the words wait in sessionStorage and, back here (?share=granted), the
// post is made. ?share=1 (the track menu's "share to bluesky") just opens the form.
const SHARE_DRAFT_TTL = 15 * 60 * 1000;
const SHARE_MAX = 300;

function graphemes(text) {
  return window.Intl?.Segmenter ? [...new Intl.Segmenter().segment(text)].length : [...text].length;
}

function startShareToBluesky(main, id) {
  const opener = main.querySelector('[data-share-bsky-open]');
  const form = main.querySelector('[data-share-bsky]');
  if (!opener || !form) return;
  const text = form.elements.text;
  const count = form.querySelector('[data-count]');
  const error = form.querySelector('[data-error]');
  const status = form.querySelector('[data-status]');
  const submit = form.querySelector('button[type="submit"]');
  const key = `plyrd:share:${id}`;

  const recount = () => {
    const n = graphemes(text.value.trim());
    count.textContent = `${n} / ${SHARE_MAX}`;
    count.classList.toggle('over', n > SHARE_MAX);
  };
  const show = (open) => {
    form.hidden = !open;
    opener.setAttribute('aria-expanded', String(open));
    (open ? text : opener).focus();
  };
  opener.addEventListener('click', () => show(form.hidden));
  form.querySelector('[data-share-bsky-close]').addEventListener('click', () => show(false));
  form.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    e.stopPropagation();
    show(false);
  });
  text.addEventListener('input', recount);

  async function send() {
    error.textContent = '';
    status.textContent = 'posting…';
    submit.disabled = true;
    try {
      // fetch rather than api(): a refusal's body may carry where to grant the permission (auth_url).
      const r = await fetch(`/tracks/${id}/share`, {
        method: 'POST', credentials: 'same-origin',
        headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
        body: JSON.stringify({ text: text.value }),
      });
      const body = await r.json().catch(() => ({}));
      if (r.status === 403 && body.code === 'needs_permission' && body.auth_url) {
        sessionStorage.setItem(key, JSON.stringify({ text: text.value, at: Date.now() }));
        status.textContent = 'asking your account\'s server for permission to post…';
        window.location.assign(body.auth_url);
        return;
      }
      if (!r.ok) throw new ApiError(r.status, body.detail || `${r.status} ${r.statusText}`);
      text.value = '';
      recount();
      status.replaceChildren('posted. ', h('a', { href: body.url, target: '_blank', rel: 'noopener' }, 'see it on bluesky'));
      toast('posted to bluesky');
    } catch (err) {
      status.textContent = '';
      error.textContent = err instanceof ApiError && err.status === 401 ? 'sign in again to post' : err.message;
    } finally {
      submit.disabled = false;
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });

  const params = new URLSearchParams(location.search);
  const asked = params.get('share');
  if (asked === null) return;
  params.delete('share');
  history.replaceState(history.state, '', location.pathname + (params.size ? `?${params}` : ''));
  show(true);
  let draft = null;
  try {
    draft = JSON.parse(sessionStorage.getItem(key) || 'null');
  } catch { /* not ours: ignore it */ }
  sessionStorage.removeItem(key); // used once, whatever happens next: a reload must not post twice
  if (asked === 'granted' && draft && Date.now() - draft.at < SHARE_DRAFT_TTL) {
    text.value = String(draft.text || '');
    recount();
    send();
  }
}
