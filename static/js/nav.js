// Client-side navigation: same-origin links and GET forms fetch the next page and swap only <main> (plus the
// header, title and link-preview tags), so the shell with the one <audio> stays in the document and music never
// stops between pages. Anything unusual (another origin, a download, a modifier key, a non-HTML answer, a
// network error) falls back to an ordinary page load, which is always correct, only slower.

import { announce } from './api.js';

// Paths that are not pages of the player: files, the JSON API and sign-in redirects.
const NOT_PAGES = /^\/(audio|images|static|auth|oembed|lists|tracks|queue|preferences|now-playing|artists|albums|account|sync|health|config|stats|users|xrpc|\.well-known|oauth-client-metadata\.json)(\/|$)/;

let onPage = () => {};
let seq = 0;

export function startNavigation(callback) {
  onPage = callback;
  history.replaceState({ ...(history.state || {}), plyrd: true, scroll: window.scrollY }, '');
  if ('scrollRestoration' in history) history.scrollRestoration = 'manual';
  document.addEventListener('click', onClick);
  document.addEventListener('submit', onSubmit);
  window.addEventListener('popstate', (e) => {
    if (e.state?.plyrd) go(location.href, { push: false, scroll: e.state.scroll || 0 });
  });
}

export function isPage(url) {
  return url.origin === location.origin && !NOT_PAGES.test(url.pathname) && !url.pathname.startsWith('/embed/');
}

function onClick(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.hasAttribute('download') || (a.target && a.target !== '_self') || a.dataset.reload !== undefined) return;
  const url = new URL(a.href, location.href);
  if (!isPage(url)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return; // in-page anchor
  e.preventDefault();
  go(url.href);
}

function onSubmit(e) {
  const form = e.target;
  if (e.defaultPrevented || (form.method || 'get').toLowerCase() !== 'get') return;
  const url = new URL(form.action || location.href, location.href);
  if (!isPage(url)) return;
  e.preventDefault();
  url.search = new URLSearchParams(new FormData(form, e.submitter)).toString();
  go(url.href);
}

export async function go(href, { push = true, scroll = 0 } = {}) {
  const url = new URL(href, location.href);
  if (!isPage(url)) {
    location.assign(url.href);
    return;
  }
  const mine = ++seq;
  if (push) history.replaceState({ ...history.state, plyrd: true, scroll: window.scrollY }, '');
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  let r;
  let html;
  try {
    r = await fetch(url.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
    html = await r.text();
  } catch {
    location.assign(url.href);
    return;
  }
  if (mine !== seq) return; // a newer navigation won
  const type = r.headers.get('content-type') || '';
  const doc = type.includes('text/html') ? new DOMParser().parseFromString(html, 'text/html') : null;
  const next = doc?.getElementById('main');
  if (!next) {
    location.assign(url.href);
    return;
  }
  const final = new URL(r.url || url.href); // after redirects (a page that needs sign-in sends you to /login)
  final.hash = url.hash;
  swap(doc, next);
  if (push) history.pushState({ plyrd: true, scroll: 0 }, '', final.href);
  else if (final.href !== location.href) history.replaceState({ plyrd: true, scroll }, '', final.href);
  const target = final.hash && document.getElementById(decodeURIComponent(final.hash.slice(1)));
  if (target) target.scrollIntoView();
  else window.scrollTo(0, push ? 0 : scroll);
  // Move focus to the new content so keyboard and screen reader users start at the top of the page.
  const heading = document.querySelector('#main h1');
  (heading || document.getElementById('main')).setAttribute('tabindex', '-1');
  (heading || document.getElementById('main')).focus({ preventScroll: true });
  announce(document.title);
}

function swap(doc, next) {
  document.getElementById('main').replaceWith(document.adoptNode(next));
  document.getElementById('top').replaceWith(document.adoptNode(doc.getElementById('top')));
  document.title = doc.title;
  document.body.dataset.user = doc.body.dataset.user || '';
  // Link-preview and description tags follow the page (crawlers read the server's copy; this keeps them honest).
  const sel = 'meta[name="description"], meta[property^="og:"], meta[property^="music:"], meta[property^="profile:"], '
    + 'meta[name^="twitter:"], meta[name="robots"], link[rel="canonical"], link[rel="alternate"]';
  for (const el of document.head.querySelectorAll(sel)) el.remove();
  for (const el of doc.head.querySelectorAll(sel)) document.head.append(document.adoptNode(el));
  // The server's theme for this viewer (it changes on sign-in) applies unless this browser chose its own.
  if (!localStorage.getItem('plyrd.theme')) document.documentElement.dataset.theme = doc.documentElement.dataset.theme;
  if (!localStorage.getItem('plyrd.accent')) {
    const accent = doc.documentElement.dataset.accentColor;
    if (accent) document.documentElement.style.setProperty('--accent-choice', accent);
    else document.documentElement.style.removeProperty('--accent-choice');
  }
  onPage(document.getElementById('main'));
}
