// Drag to reorder a list by its handles ([data-sort-handle]), with pointer events so a mouse, a pen and a finger
// all work (the handle has touch-action: none, so a drag on it never scrolls the page). Keyboard users focus a
// handle and press the up/down arrows. The list's DOM order is the new order; onMove(from, to) is told once per
// finished move so the caller can save it.

export function makeSortable(list, { onMove }) {
  if (!list || list.dataset.sortable) return;
  list.dataset.sortable = '1';
  let drag = null;

  const items = () => [...list.children];

  list.addEventListener('pointerdown', (e) => {
    const handle = e.target.closest('[data-sort-handle]');
    if (!handle || !list.contains(handle) || e.button > 0) return;
    const item = handle.closest('li');
    e.preventDefault();
    handle.setPointerCapture(e.pointerId);
    drag = { item, handle, from: items().indexOf(item), startY: e.clientY, top: item.getBoundingClientRect().top };
    item.classList.add('dragging');
  });

  list.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const { item } = drag;
    // Move the element in the DOM as the pointer passes a neighbour's middle; translate it to follow the pointer.
    const prev = item.previousElementSibling;
    const next = item.nextElementSibling;
    if (prev && e.clientY < prev.getBoundingClientRect().top + prev.offsetHeight / 2) list.insertBefore(item, prev);
    else if (next && e.clientY > next.getBoundingClientRect().top + next.offsetHeight / 2) list.insertBefore(next, item);
    const shift = e.clientY - drag.startY - (item.getBoundingClientRect().top - drag.top - currentShift(item));
    item.style.transform = `translateY(${shift}px)`;
  });

  const finish = () => {
    if (!drag) return;
    const { item, from, handle } = drag;
    drag = null;
    item.classList.remove('dragging');
    item.style.transform = '';
    const to = items().indexOf(item);
    handle.focus({ preventScroll: true });
    if (to !== from) onMove(from, to);
  };
  list.addEventListener('pointerup', finish);
  list.addEventListener('pointercancel', finish);

  list.addEventListener('keydown', (e) => {
    const handle = e.target.closest('[data-sort-handle]');
    if (!handle || (e.key !== 'ArrowUp' && e.key !== 'ArrowDown')) return;
    e.preventDefault();
    e.stopPropagation();
    const item = handle.closest('li');
    const from = items().indexOf(item);
    const to = e.key === 'ArrowUp' ? from - 1 : from + 1;
    if (to < 0 || to >= items().length) return;
    if (e.key === 'ArrowUp') list.insertBefore(item, item.previousElementSibling);
    else list.insertBefore(item.nextElementSibling, item);
    handle.focus();
    onMove(from, to);
  });
}

function currentShift(item) {
  const m = /translateY\((-?[\d.]+)px\)/.exec(item.style.transform);
  return m ? parseFloat(m[1]) : 0;
}
