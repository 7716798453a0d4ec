"""The web player in a real browser: Debian's Chromium (/usr/bin/chromium, headless) driven by Playwright against
a node started here, with real audio made by audio_samples. One listening session, step by step, in order:
sign in, upload twice and watch the progress, play and keep playing through six page changes (the same <audio>,
never paused, currentTime always rising), seek on the waveform, like, post a timed comment and click it to seek,
switch the theme, reorder a playlist by dragging, auto-advance with repeat, play counting, the keyboard, a reload
that resumes, the embed; then screenshots of the main pages at desktop and phone sizes in tests/output/screenshots.

Chromium missing is a failure with the command that fixes it, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from browsing import DESKTOP, PHONE, SHOTS, Session, full_shot, upload
from conftest import node_env, start_node

LONG_S, SHORT_S = 60, 8


@pytest.fixture(scope="module")
def account(pds) -> Any:
    return pds.create_account("listener")


@pytest.fixture(scope="module")
def node(pds, account, tmp_path_factory) -> Iterator[Any]:
    """The module's node; its one account is also an admin, so the admin console's pages are looked at too."""
    served = start_node([], cwd=tmp_path_factory.mktemp("browser"), env=node_env(pds, PLYRD_AUTH_ADMINS=account.handle))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("browser-audio")
    return {
        "long": make_audio(d / "long.mp3", "mp3", seconds=LONG_S, kind="music", frequency=220,
                           cover=jpeg_bytes(500, 500)),
        "short": make_audio(d / "short.wav", "wav", seconds=SHORT_S, kind="music", frequency=330,
                            tags={"title": "short wave", "artist": "the band"}),
    }


@pytest.fixture(scope="module")
def s(browser, node, account) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), account)
    yield session
    context.close()


def test_sign_in_with_an_app_password(s: Session) -> None:
    page = s.page
    page.goto(s.node.url + "/login?next=/upload")
    page.click("text=use an app password instead")
    page.fill("#ap-handle", s.account.handle)
    page.fill("#ap-password", "not-the-password")
    page.click("[data-app-password] button[type=submit]")
    s.wait("() => document.querySelector('[data-app-password] [data-error]').textContent.length > 0")
    page.fill("#ap-password", s.account.password)
    page.click("[data-app-password] button[type=submit]")
    s.wait("() => location.pathname === '/upload'")
    assert page.text_content("header .me") == f"@{s.account.handle}"
    # Everything from here on happens in this one document: a full page load would reset this.
    s.js("window.__alive = true")


def test_upload_and_watch_progress(s: Session, audio) -> None:
    s.ids["long"] = upload(s, audio["long"], title="long tide", tags="Dusk, tape", description="waves on the pier")
    s.nav("text=upload another", "/upload")
    s.ids["short"] = upload(s, audio["short"])  # no title: the server takes it from the file's tags
    s.nav("[data-track-link]", f"/track/{s.ids['short']}")
    assert s.page.text_content("#main h1") == "short wave"


def test_play_and_navigate_without_interruption(s: Session) -> None:
    page = s.page
    s.nav("header .brand", "/")
    s.js("""() => { window.__audio = document.getElementById('audio'); window.__pauses = 0; window.__played = [];
        window.__audio.addEventListener('pause', () => window.__pauses++);
        document.addEventListener('plyrd:played', e => window.__played.push(e.detail)); }""")
    page.click("#main li.track:has-text('long tide') [data-action=play]")
    s.wait("() => document.getElementById('audio').currentTime > 1")
    assert page.text_content("#player [data-player=title]") == "long tide"
    steps = [
        ("#main li.track:has-text('long tide') a.t-title", f"/track/{s.ids['long']}"),
        ("#main a.chip:has-text('dusk')", "/tag/dusk"),
        ("#main li.track:has-text('long tide') a.t-artist", f"/u/{s.account.handle}"),
        ("header a[href='/library']", "/library"),
        ("header a[href='/settings']", "/settings"),
        ("#player [data-player=title]", f"/track/{s.ids['long']}"),
    ]
    last = s.time()
    for selector, path in steps:
        s.nav(selector, path)
        page.wait_for_timeout(150)
        state = s.js("""() => ({same: document.getElementById('audio') === window.__audio,
            count: document.querySelectorAll('audio').length, alive: window.__alive === true,
            paused: window.__audio.paused, pauses: window.__pauses, t: window.__audio.currentTime})""")
        assert state["same"] and state["count"] == 1 and state["alive"], (path, state)
        assert not state["paused"] and state["pauses"] == 0, (path, state)
        assert state["t"] > last, (path, state, last)
        last = state["t"]
        if path == "/settings":  # on the way: let listeners comment on my tracks
            page.check("[data-pref=allow_comments]")
            s.wait("() => document.querySelector('[data-status]').textContent === 'saved'")
    page.go_back()  # popstate: back to the settings page, still the same audio
    s.wait("() => location.pathname === '/settings'")
    assert s.js("document.getElementById('audio') === window.__audio && !window.__audio.paused")
    page.go_forward()
    s.wait(f"() => location.pathname === '/track/{s.ids['long']}' && document.querySelector('[data-comment-form]')")


def test_seek_by_clicking_the_waveform(s: Session) -> None:
    wave = s.page.locator("#player [data-player=wave]")
    box = wave.bounding_box()
    wave.click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    s.page.wait_for_timeout(200)
    assert abs(s.time() - LONG_S * 0.25) < 1.5, s.time()
    big = s.page.locator("#main [data-track-wave]")
    box = big.bounding_box()
    big.click(position={"x": box["width"] * 0.3, "y": box["height"] / 2})
    s.page.wait_for_timeout(200)
    assert abs(s.time() - LONG_S * 0.3) < 1.5, s.time()
    assert s.page.get_attribute("#player [data-player=wave]", "aria-valuenow") in {"17", "18", "19"}


def test_like(s: Session) -> None:
    like = s.page.locator("#main [data-action=like]")
    assert like.get_attribute("aria-pressed") == "false"
    like.click()
    s.wait("() => document.querySelector('#main [data-action=like]').getAttribute('aria-pressed') === 'true'")
    assert s.page.text_content("#main [data-like-count]") == "1"
    track = s.api("GET", f"/tracks/{s.ids['long']}", None)["body"]
    assert track["like_count"] == 1 and track["is_liked"]


def test_timed_comment_and_click_it_to_seek(s: Session) -> None:
    page = s.page
    at = s.time()
    page.fill("#comment-text", "the tide turns here")
    page.click("[data-comment-form] button[type=submit]")
    s.wait("() => document.querySelectorAll('#main [data-comments] li').length === 1")
    stamp_ms = int(page.get_attribute("#main [data-comments] .stamp", "data-ms"))
    assert at - 0.5 <= stamp_ms / 1000 <= at + 1.5, (at, stamp_ms)
    comments = s.api("GET", f"/tracks/{s.ids['long']}/comments", None)["body"]["comments"]
    assert [c["timestamp_ms"] for c in comments] == [stamp_ms]
    s.js("window.plyrd.player.seek(45)")
    page.wait_for_timeout(200)
    assert s.time() > 44
    page.click("#main [data-comments] .stamp")
    page.wait_for_timeout(300)
    assert abs(s.time() - stamp_ms / 1000) < 1.0, (s.time(), stamp_ms)
    assert not s.js("window.__audio.paused")


def test_switch_theme(s: Session) -> None:
    page = s.page
    s.nav("header a[href='/settings']", "/settings")
    bg = "() => getComputedStyle(document.body).backgroundColor"
    assert s.js(bg) == "rgb(11, 11, 12)"
    page.check("[data-theme-choice] input[value=light]")
    assert s.js("document.documentElement.dataset.theme") == "light"
    assert s.js(bg) == "rgb(250, 250, 249)"
    s.wait("() => document.querySelector('[data-status]').textContent === 'saved'")
    assert s.api("GET", "/preferences/", None)["body"]["theme"] == "light"
    page.check("[data-theme-choice] input[value=dark]")
    assert s.js(bg) == "rgb(11, 11, 12)" and s.js("localStorage.getItem('plyrd.theme')") == "dark"


def test_settings_teal_and_developer_tokens(s: Session) -> None:
    page = s.page
    # a token made by a script (app password + token_name), which the settings page lists and revokes
    made = s.api("POST", "/auth/app-password", {"handle": s.account.handle, "app_password": s.account.password,
                                                 "token_name": "ci script"})
    assert made["status"] == 201, made
    s.nav("header a[href='/settings']", "/settings")
    s.wait("() => document.querySelector('[data-tokens]').textContent.includes('ci script')")
    assert made["body"]["prefix"] in page.text_content("[data-tokens]")
    page.click("[data-tokens] li:has-text('ci script') button")
    s.wait("() => !document.querySelector('[data-tokens]').textContent.includes('ci script')")
    assert s.api("GET", "/auth/developer-tokens", None)["body"]["tokens"] == []
    # an app-password session may already write teal.fm records: no approval round trip needed
    page.check("[data-teal]")
    s.wait("() => document.querySelector('[data-status]').textContent === 'saved'")
    assert s.api("GET", "/preferences/", None)["body"]["enable_teal_scrobbling"] is True
    page.uncheck("[data-teal]")
    s.wait("() => document.querySelector('[data-status]').textContent === 'saved'")


def test_search_with_ctrl_k(s: Session) -> None:
    page = s.page
    s.nav("header .brand", "/")
    page.keyboard.press("Control+k")
    s.wait("() => document.querySelector('dialog.search-modal').open")
    page.keyboard.type("lnog tide")  # a typo of the uploaded "long tide"
    s.wait("() => document.querySelectorAll('.search-modal [role=option]').length > 0", timeout=10_000)
    assert "long tide" in page.text_content(".search-modal [aria-selected=true]")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")  # back to the first result, which stays highlighted
    assert "long tide" in page.text_content(".search-modal [aria-selected=true]")
    page.keyboard.press("Enter")
    s.wait("p => location.pathname === p", f"/track/{s.ids['long']}")
    assert not s.js("document.querySelector('dialog.search-modal').open")
    assert s.js("window.__alive") is True  # client-side navigation: the same document, the music untouched
    page.click("[data-search-open]")
    s.wait("() => document.querySelector('dialog.search-modal').open")
    page.keyboard.press("Escape")
    s.wait("() => !document.querySelector('dialog.search-modal').open")


def test_only_one_tab_plays(s: Session) -> None:
    page = s.page
    other = page.context.new_page()
    try:
        other.goto(s.node.url + f"/track/{s.ids['short']}")
        other.wait_for_function("() => window.plyrd && window.plyrd.player")
        s.js("() => { const p = window.plyrd.player; if (p.audio.paused) p.toggle(); }")
        s.wait("() => !window.__audio.paused")
        other.evaluate(f"window.plyrd.player.playList([{s.ids['short']}], 0)")
        other.wait_for_function("() => !document.querySelector('audio').paused")
        s.wait("() => window.__audio.paused")  # the first tab gave way
        # ... and shows the queue the other tab started (the same browser shares one queue).
        s.wait(f"() => window.plyrd.player.queue.ids.join() === '{s.ids['short']}'")
        other.evaluate("document.querySelector('audio').pause()")
    finally:
        other.close()
    # The first tab, paused, now follows the other tab's queue and track. Back to the home feed's queue playing
    # long tide, as the next tests expect.
    s.wait(f"() => window.plyrd.player.track.id === {s.ids['short']}")
    s.js("ids => window.plyrd.player.playList(ids, 1)", [s.ids["short"], s.ids["long"]])
    s.wait("() => !window.__audio.paused && window.plyrd.player.track.title === 'long tide'")


def test_playlist_reorder_by_drag(s: Session) -> None:
    page = s.page
    s.nav("header a[href='/library']", "/library")
    page.fill("#playlist-name", "pier mix")
    page.click("[data-new-playlist] button[type=submit]")
    s.wait("() => location.pathname.startsWith('/playlist/')")
    playlist = s.page.url.rsplit("/", 1)[1]
    for key in ("long", "short"):
        assert s.api("POST", f"/lists/playlists/{playlist}/tracks", {"track_id": s.ids[key]})["status"] == 200
    s.js("p => window.plyrd.go(p)", f"/playlist/{playlist}")
    s.wait("() => document.querySelectorAll('#main [data-tracklist] li').length === 2")
    handles = page.locator("#main [data-sort-handle]")
    first, second = handles.nth(0).bounding_box(), handles.nth(1).bounding_box()
    page.mouse.move(second["x"] + second["width"] / 2, second["y"] + second["height"] / 2)
    page.mouse.down()
    page.mouse.move(first["x"] + first["width"] / 2, first["y"] - 4, steps=8)
    page.mouse.up()
    s.wait("() => document.querySelector('#main [data-status]').textContent === 'order saved'")
    order = [t["id"] for t in s.api("GET", f"/lists/playlists/{playlist}", None)["body"]["tracks"]]
    assert order == [s.ids["short"], s.ids["long"]]
    s.ids["playlist"] = playlist  # type: ignore[assignment]
    # The owner's other controls: a cover, private and back to public.
    page.click("#main .pl-edit summary")
    page.set_input_files("#pl-cover", {"name": "cover.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(300, 300)})
    s.wait("() => document.querySelector('[data-edit-status]').textContent === 'cover saved'")
    assert "/lists/covers/" in page.get_attribute("#main [data-cover]", "src")
    page.check("#main [data-flag=is_private]")
    s.wait("() => document.querySelector('[data-edit-status]').textContent === 'now private'")
    assert s.api("GET", f"/lists/playlists/{playlist}", None)["body"]["is_private"] is True
    assert page.text_content("#main [data-private-note]") == " · private"
    page.uncheck("#main [data-flag=is_private]")
    s.wait("() => document.querySelector('[data-edit-status]').textContent === 'now public'")
    assert s.api("GET", f"/lists/playlists/{playlist}", None)["body"]["is_private"] is False
    page.click("#main .pl-edit summary")  # closed again, as the later steps expect to find it


def test_playlist_reorder_by_touch(s: Session, browser) -> None:
    """A finger on a phone: real touch events (through the DevTools protocol), not mouse events."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  storage_state=s.page.context.storage_state())
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    cdp = context.new_cdp_session(page)
    playlist = s.ids["playlist"]

    def touch_drag(source: int, target: int, above: bool) -> None:
        handles = page.locator("#main [data-sort-handle]")
        handles.nth(0).evaluate("e => e.scrollIntoView({block: 'center'})")  # clear of the player bar
        a, b = handles.nth(source).bounding_box(), handles.nth(target).bounding_box()
        x, y = a["x"] + a["width"] / 2, a["y"] + a["height"] / 2
        to = b["y"] - 4 if above else b["y"] + b["height"] + 4
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for i in range(1, 9):
            cdp.send("Input.dispatchTouchEvent",
                     {"type": "touchMove", "touchPoints": [{"x": x, "y": y + (to - y) * i / 8}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    def order() -> list[int]:
        return [t["id"] for t in s.api("GET", f"/lists/playlists/{playlist}", None)["body"]["tracks"]]

    page.goto(f"{s.node.url}/playlist/{playlist}")
    page.wait_for_function("() => window.plyrd && document.querySelectorAll('#main [data-sort-handle]').length === 2")
    assert order() == [s.ids["short"], s.ids["long"]]
    page.locator("#main [data-sort-handle]").nth(0).evaluate("e => e.scrollIntoView({block: 'center'})")
    scroll = page.evaluate("scrollY")
    touch_drag(1, 0, above=True)
    page.wait_for_function("() => document.querySelector('#main [data-status]').textContent === 'order saved'")
    assert order() == [s.ids["long"], s.ids["short"]]
    assert page.evaluate("scrollY") == scroll  # the drag moved the row, not the page
    page.evaluate("document.querySelector('#main [data-status]').textContent = ''")
    touch_drag(1, 0, above=True)  # and back, as the later steps expect
    page.wait_for_function("() => document.querySelector('#main [data-status]').textContent === 'order saved'")
    assert order() == [s.ids["short"], s.ids["long"]]
    context.close()


def test_auto_advance_repeat_preload_and_play_counting(s: Session) -> None:
    page = s.page
    page.click("#player [data-player=repeat]")
    assert page.get_attribute("#player [data-player=repeat]", "aria-label") == "repeat: all"
    # The queue is the home feed: [short wave, long tide], playing long tide, the last one.
    assert s.js("window.plyrd.player.queue.ids") == [s.ids["short"], s.ids["long"]]
    s.wait("() => window.plyrd.player.preloadedFile", timeout=10_000)
    short = s.api("GET", f"/tracks/{s.ids['short']}", None)["body"]
    assert s.js("window.plyrd.player.preloadedFile") == short["file_id"]
    page.focus("#player [data-player=wave]")
    page.keyboard.press("End")  # the waveform is a slider: End jumps to the end
    s.wait("() => document.querySelector('#player [data-player=title]').textContent === 'short wave'")
    assert s.js("document.getElementById('audio') === window.__audio")
    s.wait("() => !window.__audio.paused && window.__audio.currentTime > 0.5")
    # short wave lasts 8 s: half of it, really listened to, counts a play.
    s.wait(f"() => window.__played.some(p => p.id === {s.ids['short']})", timeout=10_000)
    counted = [p for p in s.js("window.__played") if p["id"] == s.ids["short"]]
    assert counted == [{"id": s.ids["short"], "play_count": 1, "counted": True}]


def test_keyboard(s: Session) -> None:
    page = s.page
    page.click("#main h1")  # focus on no control
    assert s.time() > 3.2 and page.text_content("#player [data-player=title]") == "short wave"
    page.keyboard.press("j")  # more than 3 s in: back to the start of the same track
    page.wait_for_timeout(150)
    assert s.time() < 2 and page.text_content("#player [data-player=title]") == "short wave"
    page.keyboard.press("m")
    assert s.js("window.__audio.muted")
    page.keyboard.press("m")
    assert not s.js("window.__audio.muted")
    page.keyboard.press("q")
    assert page.is_visible("#queue-panel") and page.locator("#queue-panel li").count() == 2
    page.keyboard.press("Escape")
    assert not page.is_visible("#queue-panel")
    page.click("#main summary")  # the rename field: typing there must not trigger anything
    page.fill("#pl-name", "")
    page.type("#pl-name", "m j l q")
    assert not s.js("window.__audio.muted") and not page.is_visible("#queue-panel")
    page.click("#main h1")
    page.keyboard.press("l")  # next, and with repeat all past the end it wraps
    s.wait("() => document.querySelector('#player [data-player=title]').textContent === 'long tide'")
    page.keyboard.press(" ")
    s.wait("() => window.__audio.paused")
    page.keyboard.press(" ")
    s.wait("() => !window.__audio.paused")
    # the track just changed: seek only once it is loaded and playing (a seek before metadata is dropped)
    s.wait("() => window.__audio.readyState >= 2 && window.__audio.currentTime > 0.2")
    before = s.time()
    page.keyboard.press("ArrowRight")
    assert s.time() >= before + 9


def test_reload_resumes_queue_and_position(s: Session) -> None:
    page = s.page
    s.js("window.plyrd.player.seek(20)")
    page.keyboard.press(" ")
    s.wait("() => window.__audio.paused")
    at = s.time()
    page.wait_for_timeout(800)  # the save is debounced
    page.reload()
    s.wait("() => document.querySelector('#player [data-player=title]').textContent === 'long tide'")
    s.wait("at => Math.abs(document.getElementById('audio').currentTime - at) < 1.5", at)
    assert s.js("document.getElementById('audio').paused") and s.js("window.__alive") is None
    assert s.js("window.plyrd.player.queue.ids") == [s.ids["short"], s.ids["long"]]
    assert s.js("window.plyrd.player.queue.repeat") == "all"
    page.click("#player [data-player=toggle]")
    s.wait("at => document.getElementById('audio').currentTime > at + 0.3", at)
    page.click("#player [data-player=toggle]")


def test_signed_out_reload_resumes_from_this_browser(s: Session, browser) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    page.goto(s.node.url + "/tag/dusk")
    page.click("#main li.track:has-text('long tide') [data-action=play]")
    page.wait_for_function("() => document.getElementById('audio').currentTime > 1")
    page.evaluate("window.plyrd.player.seek(33)")
    page.keyboard.press("Escape")
    page.click("#player [data-player=toggle]")
    page.wait_for_function("() => document.getElementById('audio').paused")
    assert page.evaluate("JSON.parse(localStorage.getItem('plyrd.queue')).track_ids") == [s.ids["long"]]
    page.reload()
    page.wait_for_function("() => document.querySelector('#player [data-player=title]').textContent === 'long tide'"
                           " && Math.abs(document.getElementById('audio').currentTime - 33) < 1.5")
    context.close()


def test_track_menu_play_next_and_add_to_a_playlist(s: Session) -> None:
    page = s.page
    s.nav("header .brand", "/")
    queue = s.js("window.plyrd.player.queue.ids")
    index = s.js("window.plyrd.player.queue.index")
    row = f"#main section:last-of-type li[data-track-id='{s.ids['short']}']"
    page.focus(f"{row} [data-track-menu]")
    page.keyboard.press("Enter")  # a menu button: Enter opens it with the first item focused
    s.wait("() => !document.getElementById('track-menu').hidden && "
           "document.activeElement.textContent === 'play next'")
    assert page.get_attribute(f"{row} [data-track-menu]", "aria-expanded") == "true"
    page.keyboard.press("ArrowUp")  # wraps round to the last item
    assert s.js("document.activeElement.getAttribute('role')") == "menuitem"
    page.keyboard.press("Escape")
    assert page.is_hidden("#track-menu")
    assert s.js("document.activeElement.matches('[data-track-menu]')")  # focus back on its button
    page.keyboard.press("Enter")
    s.wait("() => document.activeElement.textContent === 'play next'")
    page.keyboard.press("Enter")
    assert s.js("window.plyrd.player.queue.ids") == [*queue[:index + 1], s.ids["short"], *queue[index + 1:]]
    # add to a playlist, from the same menu, by mouse; one already holding the track says so
    late = s.api("POST", "/lists/playlists", {"name": "late night"})["body"]
    page.click(f"{row} [data-track-menu]")
    page.click("#track-menu [role=menuitem]:has-text('late night')")
    s.wait("() => document.getElementById('toasts').lastElementChild?.textContent === 'added to late night'")
    assert page.is_hidden("#track-menu")
    assert [t["id"] for t in s.api("GET", f"/lists/playlists/{late['id']}")["body"]["tracks"]] == [s.ids["short"]]
    page.click(f"{row} [data-track-menu]")
    page.click("#track-menu [role=menuitem]:has-text('pier mix')")
    s.wait("() => document.getElementById('toasts').lastElementChild?.textContent === "
           "'not added: track already in playlist'")


def test_the_queue_follows_across_tabs(s: Session, browser) -> None:
    """Two tabs of one browser (signed out here, so the account's server queue is left as the other tests need it):
    what one queues, the other shows at once; the playing tab keeps its track when the other reorders."""
    context = browser.new_context(viewport=DESKTOP)
    one, two = context.new_page(), context.new_page()
    for page in (one, two):
        page.on("pageerror", lambda e: s.errors.append(str(e)))
        page.goto(s.node.url + "/tag/dusk")
        page.wait_for_function("() => window.plyrd && window.plyrd.player")
    long_id, short_id = s.ids["long"], s.ids["short"]
    one.evaluate(f"window.plyrd.player.playList([{long_id}, {short_id}], 0)")
    one.wait_for_function("() => !document.querySelector('audio').paused")
    two.wait_for_function(f"() => window.plyrd.player.queue.ids.join() === '{long_id},{short_id}' && "
                          "document.querySelector('#player [data-player=title]').textContent === 'long tide'")
    assert two.evaluate("document.querySelector('audio').paused")  # it shows the queue; it does not play it
    one.evaluate(f"window.plyrd.player.enqueue({short_id})")
    two.keyboard.press("q")
    two.wait_for_function("() => document.querySelectorAll('#queue-panel li').length === 3")
    two.evaluate("window.plyrd.player.move(0, 2)")  # the playing track to the end, from the other tab
    one.wait_for_function(f"() => window.plyrd.player.queue.ids.join() === '{short_id},{short_id},{long_id}'")
    assert one.evaluate("window.plyrd.player.queue.index") == 2
    assert one.evaluate("window.plyrd.player.track.id") == long_id
    assert not one.evaluate("document.querySelector('audio').paused")
    assert one.evaluate("JSON.parse(localStorage.getItem('plyrd.queue')).current_index") == 2
    context.close()


def test_a_link_with_a_time_plays_from_there_and_shares_from_here(s: Session, browser) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    page.goto(f"{s.node.url}/track/{s.ids['long']}?t=0:40")
    assert page.text_content("#main [data-action=play] span") == "play from 0:40"
    page.click("#main [data-action=play]")
    page.wait_for_function("() => document.getElementById('audio').currentTime > 40.2")
    share = page.locator("#main [data-share-at]")
    share.wait_for()
    assert page.get_attribute("#main [data-action=share]", "data-url").endswith(f"/track/{s.ids['long']}")
    share.locator("input").check()
    page.wait_for_function("() => /\\?t=4\\d$/.test(document.querySelector('#main [data-action=share]').dataset.url)")
    context.close()


def test_embed(s: Session, browser) -> None:
    """The track embed plays and counts the play by the player's rule (as an anonymous listener: an embed has no
    account); the playlist embed plays the track picked in its list and moves on to the next by itself."""
    context = browser.new_context(viewport={"width": 600, "height": 152})
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    before = s.api("GET", f"/tracks/{s.ids['short']}", None)["body"]["play_count"]
    page.goto(f"{s.node.url}/embed/track/{s.ids['short']}")
    page.evaluate("() => { window.__played = []; addEventListener('plyrd:played', e => __played.push(e.detail)); }")
    page.click("[data-e=toggle]")
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0.5", timeout=10_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "embed.png"))
    page.wait_for_function("() => window.__played.length > 0", timeout=15_000)  # 8 s track: after 4 s heard
    assert page.evaluate("window.__played") == [{"play_count": before + 1, "counted": True}]
    assert s.api("GET", f"/tracks/{s.ids['short']}", None)["body"]["play_count"] == before + 1

    page.set_viewport_size({"width": 600, "height": 352})
    page.goto(f"{s.node.url}/embed/playlist/{s.ids['playlist']}")
    assert "/lists/covers/" in page.get_attribute("[data-e=art]", "src")
    assert page.locator(".e-list button").count() == 2
    page.click(".e-list li:nth-child(2) button")  # long tide: the order is [short wave, long tide]
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0.5", timeout=10_000)
    assert page.text_content("[data-e=title]") == "long tide"
    assert page.get_attribute(".e-list li:nth-child(2) button", "aria-current") is not None
    page.screenshot(path=str(SHOTS / "embed-playlist.png"))
    page.click(".e-list li:nth-child(1) button")
    page.wait_for_function("() => document.querySelector('[data-e=title]').textContent === 'short wave' && "
                           "document.querySelector('audio').currentTime > 0.2")
    page.evaluate("() => { const a = document.querySelector('audio'); a.currentTime = a.duration - 0.3; }")
    page.wait_for_function("() => document.querySelector('[data-e=title]').textContent === 'long tide' && "
                           "document.querySelector('audio').currentTime > 0.3", timeout=10_000)
    context.close()


# Names, alt texts, contrast and the rest: tests/test_browser_axe.py audits every page with axe-core. What axe does not
# check stays here: the shell's landmarks on every page, and that the keyboard shows where it is.
LANDMARKS = "() => ['header', 'main', '#player'].filter(s => !document.querySelector(s))"


def test_landmarks_and_the_keyboard_shows_where_it_is(s: Session, browser) -> None:
    context = browser.new_context(viewport=DESKTOP, storage_state=s.page.context.storage_state())
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    paths = ["/", f"/track/{s.ids['long']}", f"/u/{s.account.handle}", "/tag/dusk", "/library",
             f"/playlist/{s.ids['playlist']}", "/upload", "/settings", "/portal", "/track/987654",
             *ADMIN_PAGES.values()]
    for path in paths:
        page.goto(s.node.url + path)
        page.wait_for_function("() => window.plyrd && window.plyrd.player")
        assert page.evaluate(LANDMARKS) == [], path
    # Keyboard alone: Tab from the top reaches the skip link first, then the header, and every stop is outlined.
    page.goto(s.node.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(12):
        page.keyboard.press("Tab")
        style = page.evaluate("""() => { const c = getComputedStyle(document.activeElement);
            return [document.activeElement.tagName, c.outlineStyle, c.outlineWidth, c.boxShadow]; }""")
        assert style[1] != "none" and style[2] != "0px", style
    context.close()


# The admin console (the session's account is the node's admin); tests/test_admin_console.py acts from it.
ADMIN_PAGES = {"admin": "/admin", "admin-reports": "/admin/reports", "admin-users": "/admin/users",
               "admin-takedowns": "/admin/takedowns", "admin-jobs": "/admin/jobs", "admin-audit": "/admin/audit"}


def test_screenshots_at_desktop_and_phone_sizes(s: Session, browser) -> None:
    """For a person to look at. Each page is also checked for what a phone would show wrong: a page wider than
    the screen."""
    if SHOTS.exists():
        for old in SHOTS.glob("*.png"):
            if not old.name.startswith("embed"):
                old.unlink()
    SHOTS.mkdir(parents=True, exist_ok=True)
    state = s.page.context.storage_state()
    pages = {
        "home": "/", "track": f"/track/{s.ids['long']}", "artist": f"/u/{s.account.handle}", "tag": "/tag/dusk",
        "library": "/library", "playlist": f"/playlist/{s.ids['playlist']}", "upload": "/upload",
        "settings": "/settings", "network": "/network", "not-found": "/track/987654", **ADMIN_PAGES,
    }
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme, signed_in in (("dark", True), ("light", False)):
            context = browser.new_context(viewport=viewport, color_scheme=scheme,
                                          storage_state=state if signed_in else None,
                                          is_mobile=size == "phone", has_touch=size == "phone")
            page = context.new_page()
            page.on("pageerror", lambda e: s.errors.append(str(e)))
            targets = pages.items() if signed_in else [("login", "/login"), ("home", "/")]
            for name, path in targets:
                page.goto(s.node.url + path)
                page.wait_for_timeout(100)
                full_shot(page, SHOTS / f"{name}-{size}-{scheme}.png")  # the player bar at the page's end
                if size == "phone":
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= PHONE["width"], (name, width)
            context.close()
    expected = {f"{name}-{size}-{scheme}.png" for size in ("desktop", "phone") for scheme, names in
                (("dark", pages), ("light", ("login", "home"))) for name in names} | {"embed.png", "embed-playlist.png"}
    assert expected <= {p.name for p in SHOTS.glob("*.png")}
    assert s.errors == [], s.errors


def test_no_script_errors(s: Session) -> None:
    assert s.errors == []
