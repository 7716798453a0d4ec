// plyrd's service worker (served at /sw.js by plyrd/web/pwa.py, which fills in the cache name and the shell).
// It keeps the shell (the scripts, styles and icons every page loads, and the offline page) in one cache per node
// version, serves /static/ from that cache, and shows the offline page when a page cannot be reached.
// Everything else goes straight to the network, untouched: audio and any request with a Range header (Safari
// plays nothing that a worker answered with a redirect or a whole file for a range), the JSON API, Subsonic,
// XRPC, sign-in, the admin console, other origins. For those the worker never calls respondWith, and where the
// browser supports static routes they do not even wake the worker.

const CACHE = {{ cache|tojson }};
const SHELL = {{ precache|tojson }};
const OFFLINE = '/offline';
// Paths that are not pages of the player (plyrd/static/js/nav.js keeps the same list for client-side navigation).
const NOT_PAGES = /^\/(audio|images|rest|xrpc|auth|admin|oauth|oembed|embed|lists|tracks|queue|preferences|now-playing|artists|albums|account|sync|health|config|stats|users|\.well-known|oauth-client-metadata\.json)(\/|$)/;
// Pathnames only (any query, any fragment): a pattern string would also pin the query and the fragment to none.
const BYPASS = ['/audio/*', '/rest/*', '/xrpc/*', '/auth/*', '/admin', '/admin/*'];

self.addEventListener('install', (event) => {
  if (event.addRoutes) {
    // Chromium's static routing: these requests skip the worker entirely (no start-up, no fetch event). Two calls,
    // so a browser that knows the basic conditions but not `not`/`or` still gets the first set.
    const network = (condition) => ({ condition, source: 'network' });
    event.waitUntil(Promise.all([
      [...BYPASS.map((pathname) => network({ urlPattern: { pathname } })), network({ requestDestination: 'audio' }),
        network({ requestDestination: 'video' })],
      // Only /static/ files and page loads are the worker's business: the API's requests need not wake it either.
      [network({ not: { or: [{ urlPattern: { pathname: '/static/*' } }, { requestMode: 'navigate' }] } })],
    ].map((routes) => Promise.resolve().then(() => event.addRoutes(routes)).catch(() => {}))));
  }
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // cache: 'no-cache' revalidates what the HTTP cache holds (static files are fresh there for 12 hours, maybe from
    // the previous version): a file the page just loaded costs a 304, a changed one comes whole.
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: 'no-cache' })));
    await self.skipWaiting(); // an open tab moves to the new version at once, as it would without a worker
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

function bypass(request, url) {
  return request.method !== 'GET' || url.origin !== self.location.origin || request.headers.has('range')
    || request.destination === 'audio' || request.destination === 'video'
    || /^\/(audio|rest|xrpc|auth)\//.test(url.pathname) || /^\/admin(\/|$)/.test(url.pathname);
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (bypass(request, url)) return; // no respondWith: the browser fetches it as if there were no worker
  if (url.pathname.startsWith('/static/')) {
    event.respondWith(fromCache(request));
  } else if (request.mode === 'navigate' && !NOT_PAGES.test(url.pathname)) {
    event.respondWith(page(event));
  }
});

// Static files: this version's cache first; a file not in the shell (a page's module) is cached on first use.
async function fromCache(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  if (hit) return hit;
  const response = await fetch(request.url, { cache: 'no-cache' });
  if (response.ok && response.type === 'basic') await cache.put(request.url, response.clone());
  return response;
}

// Pages: always the network (they differ per listener and are never stored); the offline page when it fails.
async function page(event) {
  try {
    // No navigation preload: it would fetch twice any page load the worker leaves alone (a sign-in callback).
    return await fetch(event.request);
  } catch (e) {
    const offline = await caches.match(OFFLINE);
    if (offline) return offline;
    throw e;
  }
}
