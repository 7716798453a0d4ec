"""What listeners expect of the web player beyond playing (issue 18), in Debian's Chromium against a node started
here: the header's platform stats line, a playlist made from the track menu while a track plays (no page change,
the same <audio> goes on), the liked list reordered by keyboard and kept, public liked pages (/liked/{handle})
that follow show_liked_on_profile and the visibility rule, and toasts whose undo reverses an unlike and a removal
from a playlist (the API confirms each)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from browsing import DESKTOP, PHONE, SHOTS, Session
from conftest import node_env, start_node
from helpers import Artist, db_rows, records, sign_in, wait_for

BROWSER = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def accounts(pds) -> dict[str, Any]:
    return {"listener": pds.create_account("xlisten"), "artist": pds.create_account("xartist"),
            "admin": pds.create_account("xadmin")}


@pytest.fixture(scope="module")
def node(pds, accounts, tmp_path_factory) -> Iterator[Any]:
    served = start_node([], cwd=tmp_path_factory.mktemp("extras"),
                        env=node_env(pds, PLYRD_AUTH_ADMINS=accounts["admin"].handle))
    yield served
    served.stop()


def _write(who: Artist, method: str, path: str, body: Any = None) -> Any:
    r = who.http.request(method, path, json=body, headers={"X-CSRF-Token": who.csrf})
    assert r.status_code == 200, (path, r.text)
    return r.json()


@pytest.fixture(scope="module")
def tracks(node, accounts, tmp_path_factory) -> dict[str, int]:
    """The artist's four tracks, uploaded through the API before any page is rendered (so the header's cached
    stats are read after them). "long" plays through the tests; the others are short."""
    artist = sign_in(node.url, accounts["artist"])
    d = tmp_path_factory.mktemp("extras-audio")
    ids = {}
    for name, seconds, freq in (("long", 60, 220.0), ("alpha", 4, 330.0), ("beta", 4, 440.0), ("gamma", 4, 550.0)):
        r = artist.upload(make_audio(d / f"{name}.mp3", "mp3", seconds=seconds, frequency=freq), title=name)
        assert r.status_code == 200, r.text
        done = artist.wait(r.json()["upload_id"])[-1]
        assert done["status"] == "completed", done
        ids[name] = int(done["track_id"])
    return ids


@pytest.fixture(scope="module")
def s(browser, node, accounts, tracks) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), accounts["listener"])
    yield session
    context.close()
    assert session.errors == []


def toast_text(s: Session) -> str:
    return s.js("document.getElementById('toasts')?.lastElementChild?.querySelector('span')?.textContent || ''")


def wait_toast(s: Session, text: str) -> None:
    s.wait("t => document.getElementById('toasts')?.lastElementChild?.querySelector('span')?.textContent === t",
           text)


def test_the_header_stats_line_is_the_nodes_stats(s: Session, node, browser) -> None:
    stats = httpx.get(f"{node.url}/stats", timeout=30).json()
    assert stats["total_tracks"] == 4 and stats["total_artists"] == 1
    expected = f"{stats['total_plays']:,} plays • {stats['total_tracks']:,} tracks • 1 artist"
    s.sign_in("/")
    assert s.page.text_content("header .node-stats") == expected
    # At desktop width it sits between the brand and the links without pushing them: the handle is whole.
    assert s.page.is_visible("header .node-stats")
    assert s.js("(() => { const me = document.querySelector('header .me');"
                " return me.scrollWidth <= me.clientWidth; })()")
    # On a phone the header has no room for it.
    phone = browser.new_context(viewport=PHONE, color_scheme="light")
    page = phone.new_page()
    page.goto(f"{node.url}/")
    assert page.text_content("header .node-stats") == expected and page.is_hidden("header .node-stats")
    phone.close()


def test_a_new_playlist_from_the_track_menu_while_a_track_plays(s: Session, tracks) -> None:
    page = s.page
    s.page.goto(f"{s.node.url}/")
    page.click(f"#main li[data-track-id='{tracks['long']}'] [data-action=play]")
    s.wait("() => document.getElementById('audio').currentTime > 0.5")
    s.js("""() => { window.__audio = document.getElementById('audio'); window.__pauses = 0; window.__alive = true;
        window.__audio.addEventListener('pause', () => window.__pauses++); }""")
    before = s.time()
    # By keyboard: the menu button, End (the last item: "new playlist…"), Enter turns it into a name field.
    menu_button = f"#main li[data-track-id='{tracks['beta']}'] [data-track-menu]"
    page.focus(menu_button)
    page.keyboard.press("Enter")
    s.wait("() => [...document.querySelectorAll('#track-menu [role=menuitem]')].some(b => b.textContent === "
           "'new playlist…')")
    page.keyboard.press("End")
    assert s.js("document.activeElement.textContent") == "new playlist…"
    page.keyboard.press("Enter")
    s.wait("() => document.activeElement.matches('#track-menu .menu-new input')")
    page.keyboard.type("night drive")
    page.keyboard.press("Home")  # keys in the field edit the name, they do not move through the menu
    page.keyboard.type("a ")
    page.keyboard.press("Enter")
    wait_toast(s, "created a night drive with beta")
    assert page.is_hidden("#track-menu")
    state = s.js("""() => ({same: document.getElementById('audio') === window.__audio, alive: window.__alive === true,
        paused: window.__audio.paused, pauses: window.__pauses, t: window.__audio.currentTime,
        path: location.pathname, audios: document.querySelectorAll('audio').length})""")
    assert state["same"] and state["alive"] and state["audios"] == 1 and state["path"] == "/", state
    assert not state["paused"] and state["pauses"] == 0 and state["t"] > before, state
    [made] = [p for p in s.api("GET", "/lists/playlists")["body"] if p["name"] == "a night drive"]
    assert [t["id"] for t in s.api("GET", f"/lists/playlists/{made['id']}")["body"]["tracks"]] == [tracks["beta"]]
    # By touch/mouse, a name the server refuses (too long is cut by maxlength; blank is not sent): an empty name
    # keeps the field open.
    page.click(menu_button)
    page.click("#track-menu [role=menuitem]:has-text('new playlist…')")
    page.click("#track-menu .menu-new button[type=submit]")
    assert page.is_visible("#track-menu .menu-new input")
    page.keyboard.press("Escape")
    assert page.is_hidden("#track-menu") and s.js("document.activeElement.matches('[data-track-menu]')")
    s.js("window.__audio.pause()")


def liked_ids(s: Session) -> list[int]:
    return [t["id"] for t in s.api("GET", "/tracks/liked")["body"]["tracks"]]


def test_liked_tracks_reorder_by_keyboard_and_stay_so(s: Session, node, pds, tracks) -> None:
    for name in ("alpha", "beta", "gamma"):
        assert s.api("POST", f"/tracks/{tracks[name]}/like")["status"] == 200
    start = [tracks["gamma"], tracks["beta"], tracks["alpha"]]  # newest first
    assert liked_ids(s) == start
    s.page.goto(f"{s.node.url}/library")
    s.wait("() => document.querySelector('#main[data-ready]')")  # library.js has made the list sortable
    section = "#main section[aria-labelledby=liked-heading]"
    dom = f"() => [...document.querySelectorAll('{section} [data-tracklist] > li')].map(li => +li.dataset.trackId)"
    assert s.js(dom) == start
    s.page.focus(f"{section} li[data-track-id='{tracks['gamma']}'] [data-sort-handle]")
    s.page.keyboard.press("ArrowDown")
    wait_toast(s, "order saved")
    s.page.keyboard.press("ArrowDown")  # focus stays on the moved track's handle
    s.wait("() => document.querySelectorAll('#toasts .toast').length >= 2")
    wait_toast(s, "order saved")
    moved = [tracks["beta"], tracks["alpha"], tracks["gamma"]]
    assert liked_ids(s) == moved
    s.page.reload()
    s.wait("() => document.querySelector('#main[data-ready]')")
    assert s.js(dom) == moved
    # Published as the Liked Tracks list record, in that order.
    uri = {tid: db_rows(node, "SELECT record_uri FROM tracks WHERE id = ?", (tid,))[0][0] for tid in moved}
    did = s.api("GET", "/auth/me")["body"]["did"]
    wait_for(lambda: any(r["value"].get("listType") == "liked"
                         and [i["subject"]["uri"] for i in r["value"]["items"]] == [uri[t] for t in moved]
                         for r in records(pds, did, "fm.plyr.list")))


def test_public_liked_pages_follow_the_preference_and_visibility(s: Session, node, accounts, tracks) -> None:
    handle = accounts["listener"].handle
    guest = httpx.Client(base_url=node.url, timeout=30, headers=BROWSER)
    assert s.api("GET", "/preferences/")["body"]["show_liked_on_profile"] is False
    r = guest.get(f"/liked/{handle}")
    assert r.status_code == 404 and "alpha" not in r.text  # as if there were no such page
    assert guest.get("/liked/nobody.test").status_code == 404
    own = s.page.goto(f"{node.url}/liked/{handle}")  # its owner sees it all the same
    assert own.status == 200
    assert s.api("POST", "/preferences/", {"show_liked_on_profile": True})["status"] == 200
    r = guest.get(f"/liked/{handle}")
    assert r.status_code == 200
    listed = [int(i) for i in re.findall(r'<li class="track[^"]*" data-track-id="(\d+)"', r.text)]
    assert listed == liked_ids(s) and len(listed) == 3
    assert f"liked by {handle}" in r.text
    # An admin takes one down: nobody but its artist and admins sees it, so neither the page nor the JSON lists it.
    admin = sign_in(node.url, accounts["admin"])
    _write(admin, "POST", f"/admin/api/tracks/{tracks['beta']}/takedown", {"reason": "test"})
    r = guest.get(f"/liked/{handle}")
    assert r.status_code == 200 and f'data-track-id="{tracks["beta"]}"' not in r.text
    assert tracks["beta"] not in [t["id"] for t in guest.get(f"/users/{handle}/likes").json()["tracks"]]
    s.page.goto(f"{node.url}/liked/{handle}")
    assert s.js(f"!document.querySelector(\"#main li[data-track-id='{tracks['beta']}']\")")
    # The liked list the listener sees (and reorders in the library) lacks it now: an order of what they see is
    # taken, the hidden track keeps its place.
    assert liked_ids(s) == [tracks["alpha"], tracks["gamma"]]
    r = s.api("PUT", "/lists/liked/reorder", {"track_ids": [tracks["gamma"], tracks["alpha"]]})
    assert r["status"] == 200 and r["body"]["track_ids"] == [tracks["beta"], tracks["gamma"], tracks["alpha"]], r
    assert s.api("PUT", "/lists/liked/reorder", {"track_ids": [tracks["gamma"]]})["status"] == 400  # one missing
    _write(admin, "POST", f"/admin/api/tracks/{tracks['beta']}/restore", {"reason": "test over"})
    # The artist page links to it when shown.
    artist = sign_in(node.url, accounts["artist"])
    page = guest.get(f"/u/{accounts['artist'].handle}").text
    assert f'href="/liked/{accounts["artist"].handle}"' not in page
    _write(artist, "POST", "/preferences/", {"show_liked_on_profile": True})
    page = guest.get(f"/u/{accounts['artist'].handle}").text
    assert f'href="/liked/{accounts["artist"].handle}"' in page
    assert s.api("POST", "/preferences/", {"show_liked_on_profile": False})["status"] == 200
    assert guest.get(f"/liked/{handle}").status_code == 404


def test_unlike_then_undo_restores_the_like(s: Session, tracks) -> None:
    tid = tracks["alpha"]
    s.page.goto(f"{s.node.url}/track/{tid}")
    s.wait("() => document.querySelector('#main[data-ready]')")
    like = "#main [data-action=like]"
    assert s.page.get_attribute(like, "aria-pressed") == "true"
    s.page.click(like)
    wait_toast(s, "like removed")
    assert s.api("GET", f"/tracks/{tid}")["body"]["is_liked"] is False
    assert s.page.get_attribute(like, "aria-pressed") == "false"
    # The toast stays while the pointer is over it, past its ~5 s.
    s.page.hover("#toasts .toast:last-child")
    s.page.wait_for_timeout(5600)
    s.page.click("#toasts .toast:last-child .toast-undo")
    wait_toast(s, "liked again")
    assert s.api("GET", f"/tracks/{tid}")["body"]["is_liked"] is True
    assert s.page.get_attribute(like, "aria-pressed") == "true"
    assert tid in liked_ids(s)
    s.page.mouse.move(5, 5)
    s.wait("() => document.querySelectorAll('#toasts .toast').length === 0", timeout=8000)  # then it leaves


def test_remove_from_a_playlist_then_undo_puts_it_back_in_place(s: Session, tracks) -> None:
    p = s.api("POST", "/lists/playlists", {"name": "undo mix"})["body"]
    order = [tracks["alpha"], tracks["beta"], tracks["gamma"]]
    for tid in order:
        assert s.api("POST", f"/lists/playlists/{p['id']}/tracks", {"track_id": tid})["status"] == 200
    s.page.goto(f"{s.node.url}/playlist/{p['id']}")
    rows = "() => [...document.querySelectorAll('#main [data-tracklist] > li')].map(li => +li.dataset.trackId)"
    assert s.js(rows) == order
    s.page.click(f"#main li[data-track-id='{tracks['beta']}'] [data-track-menu]")
    s.page.click("#track-menu [role=menuitem]:has-text('remove from this playlist')")
    wait_toast(s, "removed beta")
    in_list = lambda: [t["id"] for t in s.api("GET", f"/lists/playlists/{p['id']}")["body"]["tracks"]]  # noqa: E731
    assert in_list() == [tracks["alpha"], tracks["gamma"]] and s.js(rows) == [tracks["alpha"], tracks["gamma"]]
    s.page.focus("#toasts .toast:last-child .toast-undo")  # by keyboard this time
    s.page.keyboard.press("Enter")
    wait_toast(s, "beta is back")
    assert in_list() == order and s.js(rows) == order
    s.page.reload()
    assert s.js(rows) == order


def test_screenshots(s: Session, browser, node, accounts, tracks) -> None:
    """For a person to look at (tests/output/screenshots/extras/): the header's stats line, the menu's name field,
    a toast with its undo, and a liked page, at desktop and phone sizes, dark and light."""
    out = SHOTS / "extras"
    out.mkdir(parents=True, exist_ok=True)
    handle = accounts["listener"].handle
    assert s.api("POST", "/preferences/", {"show_liked_on_profile": True})["status"] == 200
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("dark", "light"):
            assert s.api("POST", "/preferences/", {"theme": scheme})["status"] == 200  # signed in: the account's
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            context.add_cookies(s.page.context.cookies())
            page = context.new_page()
            page.goto(f"{node.url}/liked/{handle}")
            page.screenshot(path=str(out / f"liked-{size}-{scheme}.png"))
            page.click(f"#main li[data-track-id='{tracks['alpha']}'] [data-track-menu]")
            page.click("#track-menu [role=menuitem]:has-text('new playlist…')")
            page.keyboard.type("for the road")
            page.screenshot(path=str(out / f"menu-new-playlist-{size}-{scheme}.png"))
            page.keyboard.press("Escape")
            page.goto(f"{node.url}/track/{tracks['alpha']}")
            page.wait_for_selector("#main[data-ready]", state="attached")
            page.click("#main [data-action=like]")
            page.wait_for_selector("#toasts .toast-undo")
            page.hover("#toasts .toast")
            page.screenshot(path=str(out / f"toast-undo-{size}-{scheme}.png"))
            page.click("#toasts .toast-undo")
            page.wait_for_function("() => !document.querySelector('#toasts .toast-undo')")
            context.close()
    assert s.api("GET", f"/tracks/{tracks['alpha']}")["body"]["is_liked"] is True
