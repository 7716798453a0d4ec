// Building DOM from data, the one way the modules do it: elements made with createElement, text as text nodes,
// attributes with setAttribute, never HTML parsed from a string. A value from the server, a person or the URL can
// then never become markup, whatever characters it holds. URLs from data pass through safeUrl before they become
// an src or href: only https and the node's own origin get through.

const SVG = 'http://www.w3.org/2000/svg';

// An https URL, or one on this page's own origin (a path such as /images/…, or the node's absolute URL); anything
// else (javascript:, data:, a protocol-relative //host, http elsewhere, something unparsable) gives null. So does
// any URL holding whitespace, control characters, quotes or angle brackets: a real one has them percent-encoded.
export function safeUrl(value) {
  if (typeof value !== 'string' || !value || /[\u0000-\u0020\u007f"'<>`]/.test(value)) return null;
  let url;
  try {
    url = new URL(value, location.href);
  } catch {
    return null;
  }
  if (value.startsWith('/')) {
    // "//host" and "/\host" are other hosts, however much they look like paths.
    if (value[1] === '/' || value[1] === '\\' || url.origin !== location.origin) return null;
    return value;
  }
  if (url.protocol === 'https:' || url.origin === location.origin) return url.href;
  return null;
}

// Set an element's src or href from data: the URL when it is safe, else `fallback` (a constant of ours), else the
// attribute is removed.
export function setUrl(el, attr, value, fallback = null) {
  const url = safeUrl(value) ?? fallback;
  if (url) el.setAttribute(attr, url);
  else el.removeAttribute(attr);
}

// h('a', { class: 'x', href: url, dataset: { id: 3 } }, 'text', child, …): an element with its attributes and
// children. Strings and numbers become text nodes; null, undefined and false are skipped (attributes and children
// alike), true gives an empty attribute. src and href go through safeUrl (left off when unsafe), and event handler
// attributes (on…) are refused: listeners are added with addEventListener.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (/^on/i.test(name)) throw new Error(`h(): no inline event handlers (${name})`);
    if (name === 'class') el.className = value;
    else if (name === 'dataset') {
      for (const [key, v] of Object.entries(value)) if (v != null) el.dataset[key] = String(v);
    } else if (name === 'src' || name === 'href') setUrl(el, name, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// An icon from the sprite (static/icons.svg), as the server's icon() macro draws it: decorative unless labelled.
export function icon(name, label = null) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'i');
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  svg.setAttribute('focusable', 'false');
  const use = document.createElementNS(SVG, 'use');
  use.setAttribute('href', `/static/icons.svg#${encodeURIComponent(name)}`);
  svg.append(use);
  return svg;
}

// Show another icon in a button (or anything holding one icon), keeping the rest of its content.
export function setIcon(el, name) {
  const use = el.querySelector('svg.i use');
  if (use) use.setAttribute('href', `/static/icons.svg#${encodeURIComponent(name)}`);
  else el.prepend(icon(name));
}
