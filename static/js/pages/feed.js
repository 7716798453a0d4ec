// Feeds (home, tag, artist): "more" appends the next page's rows in place instead of leaving the page, so the
// list grows and the player's queue can be built from everything loaded. Without JS, "more" is a plain link.

import { reportButtons } from '../report.js';

export function init(main) {
  reportButtons(main); // an artist's page: "report this artist", for signed-in people other than them
  const onClick = async (e) => {
    const more = e.target.closest('a[data-more]');
    if (!more || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    more.setAttribute('aria-busy', 'true');
    try {
      const r = await fetch(more.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      const section = more.closest('[data-feed]');
      const list = section.querySelector('[data-tracklist]');
      const incoming = doc.querySelector('[data-feed] [data-tracklist]');
      const have = new Set([...list.children].map((li) => li.dataset.trackId));
      for (const li of incoming ? [...incoming.children] : []) {
        if (!have.has(li.dataset.trackId)) list.append(document.adoptNode(li));
      }
      const nextMore = doc.querySelector('[data-feed] a[data-more]');
      if (nextMore) more.href = nextMore.href;
      else more.closest('p').remove();
      window.plyrd?.player.markCurrent();
    } catch {
      location.assign(more.href);
    } finally {
      more.removeAttribute('aria-busy');
    }
  };
  main.addEventListener('click', onClick);
}
