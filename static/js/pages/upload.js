// Upload with two progress bars: bytes sent (XMLHttpRequest, because fetch cannot report upload progress), then
// the server's processing (server-sent events from /tracks/uploads/{id}/progress) until the track is ready.

import { csrfToken } from '../api.js';

export function init(main) {
  const form = main.querySelector('[data-upload]');
  if (!form) return undefined;
  const box = main.querySelector('[data-progress]');
  const bytes = box.querySelector('[data-bytes]');
  const processing = box.querySelector('[data-processing]');
  const phase = box.querySelector('[data-phase]');
  const percent = box.querySelector('[data-percent]');
  const error = box.querySelector('[data-error]');
  let source = null;
  let xhr = null;

  const fail = (text) => {
    error.textContent = text;
    phase.textContent = 'failed';
    form.querySelector('button[type="submit"]').disabled = false;
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const tags = String(data.get('tags_text') || '').split(',').map((t) => t.trim()).filter(Boolean);
    data.delete('tags_text');
    if (tags.length) data.set('tags', JSON.stringify(tags));
    for (const key of ['title', 'album', 'description']) if (!String(data.get(key) || '').trim()) data.delete(key);
    const image = data.get('image');
    if (!image || !image.size) data.delete('image');

    box.hidden = false;
    error.textContent = '';
    box.querySelector('[data-done]').hidden = true;
    phase.textContent = 'sending';
    bytes.value = 0;
    processing.value = 0;
    form.querySelector('button[type="submit"]').disabled = true;

    xhr = new XMLHttpRequest();
    xhr.open('POST', '/tracks/');
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (ev) => {
      if (!ev.lengthComputable) return;
      bytes.value = Math.round((ev.loaded / ev.total) * 100);
      percent.textContent = `${bytes.value}%`;
    });
    xhr.addEventListener('load', () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch { /* not JSON */ }
      if (xhr.status !== 200) {
        fail(body.detail || `upload failed (${xhr.status})`);
        return;
      }
      bytes.value = 100;
      follow(body.upload_id);
    });
    xhr.addEventListener('error', () => fail('the connection dropped while sending; try again'));
    xhr.send(data);
  });

  function follow(uploadId) {
    phase.textContent = 'processing';
    percent.textContent = '';
    source = new EventSource(`/tracks/uploads/${encodeURIComponent(uploadId)}/progress`);
    source.onmessage = (ev) => {
      const p = JSON.parse(ev.data);
      if (typeof p.percent === 'number') {
        processing.value = p.percent;
        percent.textContent = `${Math.round(p.percent)}%`;
      }
      if (p.phase) phase.textContent = String(p.phase).replaceAll('_', ' ');
      if (p.status === 'completed') {
        source.close();
        processing.value = 100;
        phase.textContent = 'ready';
        const done = box.querySelector('[data-done]');
        done.querySelector('[data-track-link]').href = `/track/${p.track_id}`;
        done.hidden = false;
        form.reset();
        form.querySelector('button[type="submit"]').disabled = false;
      } else if (p.status === 'failed') {
        source.close();
        fail(p.error || 'processing failed');
      }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) fail('lost the progress stream; the track may still appear');
    };
  }

  return () => {
    source?.close(); // the upload itself finishes even if you leave; only the progress view stops
  };
}
