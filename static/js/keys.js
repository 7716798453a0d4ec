// Keyboard shortcuts, as plyr.fm has them: space play/pause, left/right seek 10 s, j/l previous/next, m mute,
// q queue. None fire while typing in a field, with a modifier held (browser and OS shortcuts stay theirs), or
// when the focused control owns the key (space presses a focused button; arrows move a slider or a list item).

const TYPING = 'input, textarea, select, [contenteditable=""], [contenteditable="true"]';

export function startKeys(player) {
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target instanceof Element ? e.target : document.body;
    if (t.closest(TYPING)) return;
    const owns = t.closest('button, a, summary, [role="slider"], [data-sort-handle]');
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const act = {
      ' ': () => !owns && (player.unlockAudio(), player.toggle(), true),
      ArrowLeft: () => !owns?.matches('[role="slider"]') && (player.seek(player.audio.currentTime - 10), true),
      ArrowRight: () => !owns?.matches('[role="slider"]') && (player.seek(player.audio.currentTime + 10), true),
      j: () => (player.unlockAudio(), player.previous(), true),
      l: () => (player.unlockAudio(), player.next(), true),
      m: () => (player.toggleMute(), true),
      q: () => (player.toggleQueue(), true),
      Escape: () => !player.panel.hidden && (player.toggleQueue(false), true),
    }[key];
    if (act && act()) e.preventDefault();
  });
}
