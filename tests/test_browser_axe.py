"""Accessibility of every page type, audited by axe-core (the engine of browsers' own audits, tests/axe_support.py)
in Debian's Chromium: both themes, at desktop and at 360 px, signed in (as the node's admin, so the console is
audited too) and signed out. Any serious or critical violation fails, contrast included; the failure lists each
rule, the elements' selectors and the rule's help URL.

axe does not check that the keyboard shows where it is: test_browser.py keeps that check (an outline on every Tab
stop). The audit's contexts bypass the Content-Security-Policy, which would refuse the injected axe script (the
policy itself is tested in test_browser_csp.py). Shares the browser fixture and the Session helper with
test_browser.py, but not its node, account or tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from axe_support import audit, ensure_axe, serious
from browsing import DESKTOP, PHONE, SHOTS, Session, full_shot, upload
from conftest import node_env, start_node


@pytest.fixture(scope="module")
def account(pds) -> Any:
    return pds.create_account("auditor")


@pytest.fixture(scope="module")
def node(pds, account, tmp_path_factory) -> Iterator[Any]:
    served = start_node([], cwd=tmp_path_factory.mktemp("axe"), env=node_env(pds, PLYRD_AUTH_ADMINS=account.handle))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def s(browser, node, account) -> Iterator[Session]:
    ensure_axe()  # npm ci on first use, before any page is looked at
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), account)
    yield session
    context.close()


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("axe-audio")
    return {"cover": make_audio(d / "a.mp3", "mp3", seconds=6, kind="music", frequency=220, cover=jpeg_bytes(300, 300)),
            "album": make_audio(d / "b.wav", "wav", seconds=4, kind="music", frequency=330)}


def test_a_catalog_to_look_at(s: Session, audio) -> None:
    """Two uploads (one with artwork, one in an album without any), a like, a comment and a playlist: every page
    type then has its parts on it."""
    s.sign_in("/upload")
    s.ids["cover"] = upload(s, audio["cover"], title="harbour lights", tags="dusk, tape", description="waves")
    s.nav("text=upload another", "/upload")
    s.ids["album"] = upload(s, audio["album"], title="second wind", album="night drive")
    assert s.api("POST", f"/tracks/{s.ids['cover']}/like")["status"] in (200, 201)
    assert s.api("POST", "/preferences/", {"allow_comments": True})["status"] == 200
    comment = s.api("POST", f"/tracks/{s.ids['cover']}/comments", {"text": "the tide turns", "timestamp_ms": 1200})
    assert comment["status"] in (200, 201), comment
    playlist = s.api("POST", "/lists/playlists", {"name": "pier mix"})["body"]
    s.ids["playlist"] = playlist["id"]
    for key in ("cover", "album"):
        assert s.api("POST", f"/lists/playlists/{playlist['id']}/tracks", {"track_id": s.ids[key]})["status"] == 200
    # the public liked page exists once its owner chooses to show it
    assert s.api("POST", "/preferences/", {"show_liked_on_profile": True})["status"] == 200


def pages(s: Session) -> dict[str, str]:
    handle = s.account.handle
    return {
        "home": "/", "track": f"/track/{s.ids['cover']}", "artist": f"/u/{handle}",
        "album": f"/u/{handle}/album/night-drive", "tag": "/tag/dusk", "library": "/library",
        "playlist": f"/playlist/{s.ids['playlist']}", "upload": "/upload", "portal": "/portal", "settings": "/settings",
        "network": "/network", "liked": f"/liked/{handle}", "not-found": "/track/987654",
        "library-admin": "/settings/library",
        "admin": "/admin", "admin-reports": "/admin/reports", "admin-users": "/admin/users",
        "admin-takedowns": "/admin/takedowns", "admin-jobs": "/admin/jobs", "admin-audit": "/admin/audit",
    }


AXE_SHOTS = SHOTS / "axe"
BACKGROUND = {"dark": "rgb(11, 11, 12)", "light": "rgb(250, 250, 249)"}

# Scrolled to its end, the page's last content clears the fixed player bar (the body keeps room for the bar's height).
CLEAR_OF_THE_BAR = """() => {
  scrollTo(0, document.documentElement.scrollHeight);
  const bar = document.getElementById('player').getBoundingClientRect().top;
  let last = 0, what = '';
  for (const e of document.querySelectorAll('#main *')) {
    const r = e.getBoundingClientRect();
    if (r.height > 1 && r.bottom > last && e.checkVisibility({visibilityProperty: true})) {
      last = r.bottom;
      what = e.outerHTML.slice(0, 100);
    }
  }
  return {bar, last, what};
}"""


def look(page: Any, url: str, shot: str | None = None) -> list[dict[str, Any]]:
    """Open the page, audit it, and leave a screenshot of it for a person to look at (tests/output/screenshots/axe)."""
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(150)  # the page's module has wired it up (rows filled, counts in)
    found = audit(page)
    if shot:
        AXE_SHOTS.mkdir(parents=True, exist_ok=True)
        full_shot(page, AXE_SHOTS / f"{shot}.png")
    return found


@pytest.mark.parametrize("scheme", ["dark", "light"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_no_serious_violation_on_any_page(s: Session, browser, size: str, scheme: str) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    phone = size == "phone"
    found: dict[str, list[str]] = {}
    signed_in = browser.new_context(viewport=viewport, color_scheme=scheme, is_mobile=phone, has_touch=phone,
                                    bypass_csp=True, storage_state=s.page.context.storage_state())
    # The account's preferences hold a theme (dark unless chosen): this browser's choice wins over it, as in settings.
    signed_in.add_init_script(f"localStorage.setItem('plyrd.theme', '{scheme}')")
    page = signed_in.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    for name, path in pages(s).items():
        page_url = s.node.url + path
        if name == "album":  # its slug is the server's: follow the artist page's card
            page.goto(s.node.url + f"/u/{s.account.handle}")
            page_url = s.node.url + page.get_attribute("#main .cards a", "href")
        found[name] = serious(look(page, page_url, f"{name}-{size}-{scheme}"))
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[scheme], name
        if name == "home":  # the header: the handle shown whole (once it was squeezed to a lone "@"), every link too
            header = page.evaluate("""() => { const me = document.querySelector('header .me'),
                site = document.querySelector('header .site');
              return {me: me.textContent, whole: me.scrollWidth <= me.clientWidth, width: me.clientWidth,
                      links: site.scrollWidth <= site.clientWidth}; }""")
            assert header == {"me": f"@{s.account.handle}", "whole": True, "width": header["width"], "links": True}
            assert header["width"] > 100, header
        if name in ("track", "upload", "portal", "settings"):  # long pages: their ends must not hide under the bar
            if name == "portal":  # with a track's edit box open (audited too), the longest thing on it
                page.click("#main [data-edit-toggle]")
                page.wait_for_timeout(100)
                found["portal-edit"] = serious(audit(page))
                full_shot(page, AXE_SHOTS / f"portal-edit-{size}-{scheme}.png")
            clear = page.evaluate(CLEAR_OF_THE_BAR)
            if clear["last"] > clear["bar"] + 0.5:
                found[name].append(f"the player bar covers the page's end: {clear}")
            if name == "track":  # playing: the player bar filled in, the "share from 0:02" choice shown
                page.click("#main [data-action=play]")
                page.wait_for_function("() => !document.querySelector('#main [data-share-at]').hidden")
                found["track-playing"] = serious(audit(page))
                page.evaluate("document.getElementById('audio').pause(); scrollTo(0, 0)")
                page.screenshot(path=str(AXE_SHOTS / f"track-playing-{size}-{scheme}.png"))
    # the search dialog open, with results
    page.goto(s.node.url + "/")
    page.keyboard.press("Control+k")
    page.wait_for_function("() => document.querySelector('dialog.search-modal').open")
    page.keyboard.type("harbour")
    page.wait_for_function("() => document.querySelectorAll('.search-modal [role=option]').length > 0",
                           timeout=10_000)
    found["search-open"] = serious(audit(page))
    page.screenshot(path=str(AXE_SHOTS / f"search-open-{size}-{scheme}.png"))
    page.keyboard.press("Escape")
    signed_in.close()

    signed_out = browser.new_context(viewport=viewport, color_scheme=scheme, is_mobile=phone, has_touch=phone,
                                     bypass_csp=True)
    page = signed_out.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    for name, path in {"sign-in": "/login", "home-signed-out": "/", "track-signed-out": f"/track/{s.ids['cover']}",
                       "settings-signed-out": "/settings"}.items():
        found[name] = serious(look(page, s.node.url + path, f"{name}-{size}-{scheme}"))
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[scheme], name
    signed_out.close()

    embeds = browser.new_context(viewport={"width": 600, "height": 352}, color_scheme=scheme, bypass_csp=True)
    page = embeds.new_page()
    for name, path in {"embed-track": f"/embed/track/{s.ids['cover']}",
                       "embed-playlist": f"/embed/playlist/{s.ids['playlist']}"}.items():
        found[name] = serious(look(page, s.node.url + path, f"{name}-{scheme}" if size == "desktop" else None))
    embeds.close()

    bad = {name: lines for name, lines in found.items() if lines}
    report = "\n".join(f"{name} ({size}, {scheme}):\n  " + "\n  ".join(lines) for name, lines in bad.items())
    assert not bad, "axe found serious or critical violations:\n" + report


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_any_chosen_accent_reads_as_text(s: Session, browser, theme: str) -> None:
    """Settings lets a listener pick any accent colour: on either theme the page shows it lightened or darkened just
    enough that links, the chosen feed chip and comment time stamps keep 4.5:1 (pure yellow on light, pure blue on
    dark and their kind are the hard ones)."""
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True, storage_state=s.page.context.storage_state())
    page = context.new_page()
    page.on("pageerror", lambda e: s.errors.append(str(e)))
    found = {}
    for accent in ("#ffff00", "#00ffee", "#0000ff", "#ff00ff", "#ff0000", "#808080", "#ffffff", "#000000"):
        page.add_init_script(f"localStorage.setItem('plyrd.theme', '{theme}'); "
                             f"localStorage.setItem('plyrd.accent', '{accent}')")
        for path in ("/", f"/track/{s.ids['cover']}"):
            page.goto(s.node.url + path)
            assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--accent-choice')"
                                 ).strip() == accent
            lines = serious(audit(page, ["color-contrast", "link-in-text-block"]))
            if lines:
                found[f"{accent} {path}"] = lines
    context.close()
    assert not found, found


def test_file_pickers_are_buttons_the_keyboard_reaches(s: Session, audio) -> None:
    """The upload page's file inputs are styled pickers: Tab reaches the (visually hidden) input, its button shows the
    focus ring, and the chosen file's name is shown beside it."""
    page = s.page
    page.goto(s.node.url + "/upload")
    page.wait_for_function("() => window.plyrd && window.plyrd.player")
    assert page.locator("label.button[for=file]").is_visible()
    assert page.text_content(".file-pick:has(#file) [data-file-name]") == "no file chosen"
    page.focus("#title")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "file"
    ring = page.evaluate("getComputedStyle(document.querySelector('label.button[for=file]')).outlineStyle")
    assert ring == "solid"
    page.set_input_files("#file", str(audio["album"]))
    page.wait_for_function("() => document.querySelector('.file-pick:has(#file) [data-file-name]').textContent"
                           " === 'b.wav'")


def test_no_script_errors(s: Session) -> None:
    assert s.errors == []
