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
}());
