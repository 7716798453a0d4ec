// Runs before the first paint: a classic, blocking <script src> in base.html's <head> (the Content-Security-Policy
// allows no inline script), so a page never flashes in the wrong theme. This browser's own theme and accent choice
// (theme.js keeps them in localStorage) win over the account's, which the server puts on <html> as data-theme and
// data-accent-color. The accent is set through the CSSOM, which the policy allows (a style attribute it would not).
(function () {
  var d = document.documentElement;
  var theme = null;
  var accent = null;
  try {
    theme = localStorage.getItem('plyrd.theme');
    accent = localStorage.getItem('plyrd.accent');
  } catch (e) { /* storage turned off: the server's choice stands */ }
  if (theme) d.dataset.theme = theme;
  accent = accent || d.dataset.accentColor;
  if (accent) d.style.setProperty('--accent-choice', accent);  /* base.css makes it readable per theme */
  // A chosen theme (not "system") also colours the browser's bar: theme-color follows the page's background.
  if (d.dataset.theme === 'dark' || d.dataset.theme === 'light') {
    var bg = getComputedStyle(d).getPropertyValue('--bg').trim();
    var metas = document.querySelectorAll('meta[name="theme-color"]');
    for (var i = 0; bg && i < metas.length; i++) { metas[i].removeAttribute('media'); metas[i].content = bg; }
  }
  // The installable app's service worker (/sw.js: the shell offline, never audio), once the page has loaded, where
  // browsers allow one (a secure context: https, or localhost and 127.0.0.1 over http).
  if ('serviceWorker' in navigator && window.isSecureContext) {
    window.addEventListener('load', function () { navigator.serviceWorker.register('/sw.js').catch(function () {}); });
  }
}());
