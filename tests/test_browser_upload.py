"""The upload page in a real browser (Debian's Chromium through Playwright, as in test_browser.py, with its own node
and browser so neither disturbs the other): picking a file prefills the form from its tags without overwriting what
was typed; album mode sends tagged files of mixed formats one after another with progress for each, orders them by
track number, respects a reorder made before sending, and lets a bad file fail on its own while the others succeed.
Screenshots of album mode at desktop and phone sizes go to tests/output/screenshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from browsing import DESKTOP, PHONE, SHOTS, Session
from conftest import node_fixture

TEXT_AS_MP3 = b"dear diary, today I recorded nothing at all.\n" * 50
SECONDS = 3


node = node_fixture("browser-upload")


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("upload-audio")

    def song(name: str, fmt: str, frequency: float, **tags: str) -> Path:
        return make_audio(d / name, fmt, seconds=SECONDS, kind="music", frequency=frequency,
                          tags={"artist": "the band", **tags})

    return {
        "prefill": song("prefill.flac", "flac", 200, title="first light", album="harbour songs",
                        genre="Field Recording"),
        "prefill2": song("prefill2.m4a", "m4a-aac", 210, title="second light", album="other songs"),
        # The first album, picked out of order: the tags' track numbers put it right.
        "ebb": song("03 ebb.wav", "wav", 250, title="ebb", album="tide tables", track="3/3"),
        "flood": song("01 flood.flac", "flac", 260, title="flood", album="tide tables", track="1/3"),
        "slack": song("02 slack water.mp3", "mp3", 270, title="slack water", album="tide tables", track="2/3"),
        # The second album: M4A keeps its tags at the end; Ogg Opus needs an MP3 rendition made.
        "north": song("north.m4a", "m4a-aac", 280, title="north", track="1"),
        "south": song("south.ogg", "ogg-opus", 290, title="south", track="2"),
    }


@pytest.fixture(scope="module")
def s(browser, node, pds) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), pds.create_account("albummaker"))
    session.sign_in("/upload")
    yield session
    context.close()
    assert not session.errors, session.errors


def rows(s: Session) -> list[dict[str, Any]]:
    return s.js("""() => [...document.querySelectorAll('[data-album-list] > li')].map(li => ({
        title: li.querySelector('[data-af-title]').value, state: li.dataset.state,
        error: li.querySelector('[data-af-error]').textContent,
        status: li.querySelector('[data-af-status]').textContent,
        bytes: li.querySelector('[data-af-bytes]').value, processing: li.querySelector('[data-af-processing]').value,
        probed: li.hasAttribute('data-probed')}))""")


def watch_rows(s: Session) -> None:
    """Record every state the list shows, to prove files went one at a time and each showed its own progress."""
    s.js("""() => { window.__snaps = [];
        const list = document.querySelector('[data-album-list]');
        const snap = () => window.__snaps.push([...list.children].map(li => [li.querySelector('[data-af-file]')
            .textContent.split(' · ')[0], li.dataset.state, li.querySelector('[data-af-bytes]').value,
            li.querySelector('[data-af-processing]').value]));
        new MutationObserver(snap).observe(list, {subtree: true, attributes: true, childList: true,
                                                  characterData: true}); }""")


def send_album(s: Session) -> list[list[list[Any]]]:
    watch_rows(s)
    s.page.click("[data-album-send]")
    s.wait("""() => {
        const states = [...document.querySelectorAll('[data-album-list] > li')].map(li => li.dataset.state);
        return !document.querySelector('[data-album-done]').hidden
          && states.every(x => x === 'ready' || x === 'failed')
          && !document.querySelector('[data-album-send]').disabled; }""", timeout=90_000)
    snaps = s.js("window.__snaps")
    for snap in snaps:  # never two files on the wire at once
        assert sum(1 for _, state, _, _ in snap if state == "sending") <= 1, snap
    return snaps


def album_json(s: Session) -> dict[str, Any]:
    """GET /albums/{handle}/{slug} for the album the page links to."""
    handle, slug = s.page.get_attribute("[data-album-link]", "href").split("/")[2::2]
    r = s.api("GET", f"/albums/{handle}/{slug}")
    assert r["status"] == 200, r
    return r["body"]


def album_page_titles(s: Session) -> list[str]:
    href = s.page.get_attribute("[data-album-link]", "href")
    s.nav("[data-album-link]", href)
    return s.js("() => [...document.querySelectorAll('#main .tracks .t-title')].map(a => a.textContent)")


def test_picking_a_file_prefills_what_was_not_typed(s: Session, audio) -> None:
    page = s.page
    page.set_input_files("#file", str(audio["prefill"]))
    s.wait("() => document.querySelector('[data-file-info]').dataset.read === '1'")
    assert page.input_value("#title") == "first light"
    assert page.input_value("#album") == "harbour songs"
    assert page.input_value("#tags") == "field recording"
    info = page.text_content("[data-file-info]")
    assert "by the band" in info and "flac, lossless" in info and "0:03" in info, info

    # Typed text stays; a field that still holds the last file's tags follows the new file.
    page.fill("#title", "my own words")
    page.set_input_files("#file", str(audio["prefill2"]))
    s.wait("() => document.querySelector('[data-file-info]').dataset.read === '2'")
    assert page.input_value("#title") == "my own words"
    assert page.input_value("#album") == "other songs"
    assert page.input_value("#tags") == ""  # the second file names no genre

    # Not audio: said at once, before anything is sent.
    page.set_input_files("#file", files=[{"name": "notes.mp3", "mimeType": "audio/mpeg", "buffer": TEXT_AS_MP3}])
    s.wait("() => document.querySelector('[data-file-info]').dataset.read === '3'")
    assert "text file" in page.text_content("[data-file-info].error")

    page.set_input_files("#file", str(audio["prefill2"]))
    s.wait("() => document.querySelector('[data-file-info]').dataset.read === '4'")
    page.select_option("#notice", "nudity")  # a content notice and unlisted go with the upload
    page.check("[data-upload] [name=unlisted]")
    page.click("[data-upload] button[type=submit]")
    s.wait("() => !document.querySelector('[data-done]').hidden || "
           "document.querySelector('[data-progress] [data-error]').textContent", timeout=60_000)
    assert page.text_content("[data-progress] [data-error]") == ""
    track_id = page.get_attribute("[data-track-link]", "href").rsplit("/", 1)[1]
    s.nav("[data-track-link]", f"/track/{track_id}")
    assert page.text_content("#main h1") == "my own words"
    assert "sensitive" in page.get_attribute("#main .cover", "class")
    track = s.js("id => fetch('/tracks/' + id).then(r => r.json())", track_id)
    assert track["self_labels"] == ["nudity"] and track["unlisted"] is True


def test_an_album_in_track_number_order(s: Session, audio, tmp_path: Path) -> None:
    page = s.page
    page.goto(s.node.url + "/upload")
    page.check("input[name=upload_mode][value=album]")
    assert page.is_hidden("[data-upload]") and page.is_visible("[data-album-form]")
    # Picked out of order, in two goes (the second pick adds to the list).
    page.set_input_files("#album-files", [str(audio["ebb"]), str(audio["flood"])])
    page.set_input_files("#album-files", str(audio["slack"]))
    s.wait("() => [...document.querySelectorAll('[data-album-list] > li')].filter(li => li.hasAttribute("
           "'data-probed')).length === 3")
    assert [r["title"] for r in rows(s)] == ["flood", "slack water", "ebb"]
    assert page.input_value("#album-title") == "tide tables"  # from the files' album tag
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(jpeg_bytes(400, 400, (40, 90, 160)))
    page.set_input_files("#album-cover", str(cover))
    # A title typed for one file is what that track gets.
    page.fill("[data-album-list] > li:nth-child(3) [data-af-title]", "ebb (reprise)")
    page.select_option("#album-notice", "graphic-media")  # goes with every track

    snaps = send_album(s)
    final = rows(s)
    assert [r["state"] for r in final] == ["ready"] * 3, final
    assert all(r["bytes"] == 100 and r["processing"] == 100 for r in final), final
    for name in ("01 flood.flac", "02 slack water.mp3", "03 ebb.wav"):  # each file's own progress was shown
        states = {state for snap in snaps for n, state, _, _ in snap if n == name}
        assert {"sending", "processing", "ready"} <= states, (name, states)
    assert "all 3 tracks are on the album" in page.text_content("[data-album-status]")

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "upload-album-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    page.screenshot(path=str(SHOTS / "upload-album-phone.png"), full_page=True)
    assert s.js("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)

    album = album_json(s)
    assert album["metadata"]["image_url"], album["metadata"]  # the cover was sent
    assert album["metadata"]["title"] == "tide tables" and album["metadata"]["track_count"] == 3
    assert album_page_titles(s) == ["flood", "slack water", "ebb (reprise)"]
    assert [t["self_labels"] for t in album["tracks"]] == [["graphic-media"]] * 3


def test_a_reorder_is_kept_and_a_bad_file_fails_alone(s: Session, audio) -> None:
    page = s.page
    page.goto(s.node.url + "/upload")
    page.check("input[name=upload_mode][value=album]")
    page.fill("#album-title", "low water")
    page.fill("#album-tags", "Tape, drone")
    page.set_input_files("#album-files", [str(audio["south"]), str(audio["north"])])
    # The bad file arrives by drag and drop onto the page.
    s.js("""(bytes) => { const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'notes.mp3', {type: 'audio/mpeg'}));
        document.querySelector('main h1').dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true,
                                                                                   cancelable: true}));
        document.querySelector('main h1').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                                               cancelable: true})); }""",
         list(TEXT_AS_MP3))
    s.wait("() => [...document.querySelectorAll('[data-album-list] > li')].filter(li => li.hasAttribute("
           "'data-probed')).length === 3")
    listed = rows(s)
    assert [r["title"] for r in listed] == ["north", "south", ""], listed  # no track number: after the others
    assert "text file" in listed[2]["error"]  # said before sending
    assert page.input_value("#album-title") == "low water"  # typed, so not replaced by a tag

    # Move "north" down twice with the keyboard: south, the bad file, north.
    handle = page.locator("[data-album-list] > li:nth-child(1) [data-sort-handle]")
    handle.focus()
    page.keyboard.press("ArrowDown")
    page.locator("[data-album-list] > li:nth-child(2) [data-sort-handle]").focus()
    page.keyboard.press("ArrowDown")
    assert [r["title"] for r in rows(s)] == ["south", "", "north"]
    assert page.text_content("[data-album-list] > li:nth-child(3) [data-af-num]") == "3"

    send_album(s)
    final = rows(s)
    assert [r["state"] for r in final] == ["ready", "failed", "ready"], final
    assert "text file" in final[1]["error"] and final[0]["error"] == final[2]["error"] == ""
    assert page.is_visible("[data-album-list] > li:nth-child(2) [data-af-retry]")
    assert page.is_hidden("[data-album-list] > li:nth-child(1) [data-af-retry]")
    assert "2 of 3 files on the album" in page.text_content("[data-album-status]")

    # Retry: it is sent again, fails again for the same reason, and the album is untouched.
    watch_rows(s)
    page.click("[data-album-list] > li:nth-child(2) [data-af-retry]")
    s.wait("() => window.__snaps.some(snap => snap[1][1] === 'sending') && "
           "document.querySelector('[data-album-list] > li:nth-child(2)').dataset.state === 'failed' && "
           "!document.querySelector('[data-album-send]').disabled", timeout=30_000)
    assert "text file" in rows(s)[1]["error"]

    tracks = album_json(s)["tracks"]
    assert [t["title"] for t in tracks] == ["south", "north"]
    assert all(t["album"]["title"] == "low water" and sorted(t["tags"]) == ["drone", "tape"] for t in tracks), tracks
    assert page.get_attribute("[data-album-list] > li:nth-child(1) [data-af-title]", "readonly") is not None

    # Reordering once the album exists saves the new order at once.
    page.locator("[data-album-list] > li:nth-child(3) [data-sort-handle]").focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert [r["title"] for r in rows(s)] == ["north", "south", ""]
    for _ in range(50):
        if [t["title"] for t in album_json(s)["tracks"]] == ["north", "south"]:
            break
        page.wait_for_timeout(100)
    assert album_page_titles(s) == ["north", "south"]


def test_an_album_waits_for_the_upload_limit_and_carries_on(s: Session, tmp_path: Path) -> None:
    """The node takes 20 uploads a minute per person (a burst, then one every 3 s). An album that runs into the
    limit waits as long as the node says, shows that it waits, and carries on by itself."""
    page = s.page
    tune = make_audio(tmp_path / "late.mp3", "mp3", seconds=SECONDS, kind="music", frequency=310,
                      tags={"title": "late tide", "track": "1"})
    page.goto(s.node.url + "/upload")
    page.check("input[name=upload_mode][value=album]")
    page.fill("#album-title", "after the limit")
    page.set_input_files("#album-files", str(tune))
    s.wait("() => document.querySelector('[data-album-list] > li').hasAttribute('data-probed')")
    # Spend the rest of this minute's budget (every attempt counts, even one refused for having no file).
    refused = s.js("""async () => {
        const csrf = document.cookie.split('; ').find(c => c.startsWith('plyrd_csrf=')).slice(11);
        for (let i = 0; i < 40; i++) {
          const r = await fetch('/tracks/', {method: 'POST', headers: {'X-CSRF-Token': csrf}, body: new FormData()});
          if (r.status === 429) return Number(r.headers.get('Retry-After'));
        }
        return null; }""")
    assert refused and 1 <= refused <= 5, refused
    s.js("""() => { window.__said = [];
        const status = document.querySelector('[data-album-list] > li [data-af-status]');
        new MutationObserver(() => window.__said.push(status.textContent))
          .observe(status, {childList: true, characterData: true, subtree: true}); }""")
    send_album(s)
    assert [r["state"] for r in rows(s)] == ["ready"]
    assert any(said.startswith("waiting ") for said in s.js("window.__said")), s.js("window.__said")
