// Theme (dark, light, system) and accent colour: custom properties switched by one attribute on <html>, so a
// change shows at once without a reload. This browser's choice is kept in localStorage (read before first paint
// by boot.js, a blocking script in base.html's <head>); signed in, settings.js also saves it to the account's
// preferences.

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem('plyrd.theme', theme);
}

export function setAccent(color) {
  document.documentElement.style.setProperty('--accent', color);
  localStorage.setItem('plyrd.accent', color);
}
