// Theme (dark, light, system) and accent colour: custom properties switched by one attribute on <html>, so a
// change shows at once without a reload. This browser's choice is kept in localStorage (read before first paint
// by boot.js, a blocking script in base.html's <head>); signed in, settings.js also saves it to the account's
// preferences.

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem('plyrd.theme', theme);
}

// The listener's colour goes in --accent-choice: base.css derives --accent from it, lightened or darkened just
// enough per theme to read as text (4.5:1), so any colour may be picked.
export function setAccent(color) {
  document.documentElement.style.setProperty('--accent-choice', color);
  localStorage.setItem('plyrd.accent', color);
}
