// Styled file pickers (the file_picker macro): the native input is visually hidden but keeps its place in the Tab
// order, a label styled as a button opens it, and the chosen file's name is shown next to it. Delegated, so pickers
// on swapped-in pages and files set by script (a drop on the upload page dispatches change) need no wiring.

function show(input) {
  const out = input.closest('.file-pick')?.querySelector('[data-file-name]');
  if (!out) return;
  const files = [...(input.files || [])];
  out.textContent = files.length === 0 ? out.dataset.none || 'no file chosen'
    : files.length === 1 ? files[0].name : `${files.length} files`;
}

document.addEventListener('change', (e) => {
  if (e.target instanceof HTMLInputElement && e.target.type === 'file') show(e.target);
});
document.addEventListener('reset', (e) => {
  // after the reset has emptied the inputs
  setTimeout(() => e.target.querySelectorAll?.('.file-pick input[type=file]').forEach(show));
});
