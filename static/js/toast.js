// A toast for every change a listener makes: a line at the bottom of the screen that says what happened (liked,
// added to a playlist, order saved...), with an "undo" button where reversing is cheap. The region is a polite live
// region, so screen readers hear the line without focus moving; it lives outside <main>, so a toast outlasts the
// client-side navigation that may follow it. Each toast leaves after ~5 s, but not while the pointer is over it
// or focus is in it (time to reach "undo").

const SHOW_MS = 5000;
const MAX_SHOWN = 3;

let region = null;
function host() {
  if (region?.isConnected) return region;
  region = document.createElement('div');
  region.id = 'toasts';
  region.className = 'toasts';
  region.setAttribute('aria-live', 'polite');
  region.setAttribute('aria-label', 'notifications');
  region.setAttribute('role', 'region');
  document.body.append(region);
  return region;
}
if (typeof document !== 'undefined' && document.body) host(); // present before the first toast, so it is heard

// toast('liked') or toast('like removed', {undo: async () => {...; return 'like restored'}, error: true}).
// undo runs once; what it returns (or "undone") replaces the line, its error message says why it failed.
export function toast(text, { undo = null, error = false } = {}) {
  const box = host();
  const el = document.createElement('div');
  el.className = error ? 'toast error' : 'toast';
  const line = document.createElement('span');
  line.textContent = text;
  el.append(line);
  let timer = null;
  let held = 0; // pointer over it, or focus in it: do not leave
  const leave = () => {
    clearTimeout(timer);
    el.remove();
  };
  const arm = (ms = SHOW_MS) => {
    clearTimeout(timer);
    if (!held) timer = setTimeout(leave, ms);
  };
  const hold = (on) => {
    held = Math.max(0, held + (on ? 1 : -1));
    if (held) clearTimeout(timer);
    else arm();
  };
  el.addEventListener('pointerenter', () => hold(true));
  el.addEventListener('pointerleave', () => hold(false));
  el.addEventListener('focusin', () => hold(true));
  el.addEventListener('focusout', (e) => { if (!el.contains(e.relatedTarget)) hold(false); });
  if (undo) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'toast-undo';
    b.textContent = 'undo';
    b.setAttribute('aria-label', `undo: ${text}`);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        line.textContent = (await undo()) || 'undone';
      } catch (err) {
        line.textContent = `could not undo: ${err.message}`;
        el.classList.add('error');
      }
      b.remove();
      held = 0;
      arm();
    }, { once: true });
    el.append(b);
  }
  box.append(el);
  while (box.children.length > MAX_SHOWN) box.firstElementChild.remove();
  arm();
  return el;
}
