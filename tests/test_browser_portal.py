"""The artist portal (/portal) in a real browser: Debian's Chromium driven by Playwright against a node of its own,
signed in with an app password on the test PDS. In order: the signed-out redirect, two real uploads, the profile,
inline track edits (without a page load), unlisted, artwork, the filter, albums, the export zip, screenshots, a
track deleted, and the account deleted behind its typed confirmation.

Shares the browser fixture and the Session helper with test_browser.py, but not its node, account or tab.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio, png_bytes
from browsing import DESKTOP, PHONE, SHOTS, Session, upload
from conftest import node_fixture

node = node_fixture("portal")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("portal-files")
    (d / "art.png").write_bytes(png_bytes(400, 400))
    (d / "cover.jpg").write_bytes(jpeg_bytes(300, 300, (30, 60, 200)))
    return {
        "one": make_audio(d / "one.mp3", "mp3", seconds=3, kind="music", frequency=262),
        "two": make_audio(d / "two.wav", "wav", seconds=3, kind="music", frequency=392),
        "art": d / "art.png",
        "cover": d / "cover.jpg",
    }


@pytest.fixture(scope="module")
def s(browser, node, pds) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), pds.create_account("artist"))
    yield session
    context.close()


READY = "() => document.querySelector('#main .portal[data-ready]')"  # portal.js has wired the page up


def row(track_id: int) -> str:
    return f"#main [data-own-tracks] li[data-track-id='{track_id}']"


def portal_loaded(s: Session) -> None:
    """Go to /portal with a full page load and mark the document, to tell a later page load from none."""
    s.page.goto(s.node.url + "/portal")
    s.wait(READY)
    s.js("window.__alive = true")


def test_signed_out_portal_redirects_to_sign_in(s: Session, browser) -> None:
    r = httpx.get(s.node.url + "/portal", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/portal"
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(s.node.url + "/portal")
    assert page.url.endswith("/login?next=/portal")
    assert page.locator("header a[href='/portal']").count() == 0  # the nav link is for signed-in people only
    context.close()


def test_sign_in_and_upload(s: Session, files) -> None:
    page = s.page
    s.sign_in("/upload")
    s.ids["one"] = upload(s, files["one"], title="harbour lights", tags="ambient, dusk", album="night")
    s.nav("text=upload another", "/upload")
    s.ids["two"] = upload(s, files["two"], title="second wind")
    s.nav("header a[href='/portal']", "/portal")
    assert page.get_attribute("header a[href='/portal']", "aria-current") == "page"
    titles = page.locator("#main [data-own-tracks] [data-t-title]").all_text_contents()
    assert titles == ["second wind", "harbour lights"]  # newest first
    assert page.text_content(f"{row(s.ids['one'])} [data-t-sub]") == "night · ambient, dusk"


def test_profile_edit_persists(s: Session) -> None:
    page = s.page
    portal_loaded(s)
    page.fill("#avatar-url", "http://not-https.example/a.png")
    page.click("[data-profile] button[type=submit]")
    s.wait("() => document.querySelector('[data-profile] [data-error]').textContent.includes('https')")
    page.fill("#avatar-url", "")
    page.fill("#display-name", "Harbour Band")
    page.fill("#bio", "field recordings from the pier")
    page.click("[data-profile] button[type=submit]")
    s.wait("() => document.querySelector('[data-profile] [data-status]').textContent === 'saved'")
    assert page.text_content("[data-profile] [data-error]") == ""
    me = s.api("GET", "/artists/me")["body"]
    assert me["display_name"] == "Harbour Band" and me["bio"] == "field recordings from the pier"
    assert me["avatar_url"] is None
    page.reload()
    assert page.input_value("#display-name") == "Harbour Band"
    assert page.input_value("#bio") == "field recordings from the pier"


def test_inline_edit_updates_the_row_without_a_page_load(s: Session) -> None:
    page = s.page
    portal_loaded(s)
    r = row(s.ids["one"])
    page.click(f"{r} [data-edit-toggle]")
    assert page.get_attribute(f"{r} [data-edit-toggle]", "aria-expanded") == "true"
    assert s.js("document.activeElement.name") == "title"  # the panel opens with the focus in its first field
    page.fill(f"{r} [name=title]", "")
    page.click(f"{r} [data-edit] button[type=submit]")  # the browser's own check: title is required
    assert page.text_content(f"{r} [data-edit] [data-status]") == ""
    page.fill(f"{r} [name=title]", "   ")
    page.click(f"{r} [data-edit] button[type=submit]")  # only spaces: the server says why not
    s.wait("r => document.querySelector(r + ' [data-edit] [data-error]').textContent.includes('title')", r)
    page.fill(f"{r} [name=title]", "Harbour Lights (live)")
    page.fill(f"{r} [name=tags]", "Ambient, tape loops")
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    assert page.text_content(f"{r} [data-t-title]") == "Harbour Lights (live)"
    assert page.text_content(f"{r} [data-t-sub]") == "night · ambient, tape loops"
    assert page.input_value(f"{r} [name=tags]") == "ambient, tape loops"  # as the server normalised them
    assert s.js("window.__alive") is True  # the same document: no page load happened
    track = s.api("GET", f"/tracks/{s.ids['one']}")["body"]
    assert track["title"] == "Harbour Lights (live)" and track["tags"] == ["ambient", "tape loops"]
    page.click(f"{r} [data-edit] button[type=submit]")  # saving again with nothing changed sends nothing
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'nothing changed'", r)
    page.keyboard.press("Escape")  # closes the panel and gives the focus back to its button
    assert page.is_hidden(f"{r} [data-edit]")
    assert s.js("document.activeElement.matches('[data-edit-toggle]')")
    page.reload()
    assert page.text_content(f"{r} [data-t-title]") == "Harbour Lights (live)"


def test_unlisted_toggle(s: Session) -> None:
    page = s.page
    portal_loaded(s)
    r = row(s.ids["two"])
    assert page.is_hidden(f"{r} [data-t-unlisted]")
    page.click(f"{r} [data-edit-toggle]")
    page.check(f"{r} [name=unlisted]")
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    assert page.is_visible(f"{r} [data-t-unlisted]")
    feed = s.api("GET", "/tracks/")["body"]["tracks"]
    assert [t["id"] for t in feed] == [s.ids["one"]]  # out of the latest feed
    mine = s.api("GET", "/tracks/me")["body"]["tracks"]
    assert {t["id"] for t in mine} == {s.ids["one"], s.ids["two"]}  # still the artist's own
    assert s.js("window.__alive") is True
    page.reload()
    s.wait(READY)
    s.js("window.__alive = true")
    assert page.is_visible(f"{r} [data-t-unlisted]") and page.is_checked(f"{r} [name=unlisted]")
    page.click(f"{r} [data-edit-toggle]")
    page.uncheck(f"{r} [name=unlisted]")
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    assert page.is_hidden(f"{r} [data-t-unlisted]")
    assert len(s.api("GET", "/tracks/")["body"]["tracks"]) == 2


def test_content_notice_blurs_the_artwork(s: Session) -> None:
    page = s.page
    r = row(s.ids["one"])
    assert "sensitive" not in (page.get_attribute(f"{r} [data-t-art]", "class") or "")
    page.click(f"{r} [data-edit-toggle]")
    page.select_option(f"{r} [name=content_notice]", "graphic-media")
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    assert "sensitive" in page.get_attribute(f"{r} [data-t-art]", "class")
    track = s.api("GET", f"/tracks/{s.ids['one']}")["body"]
    assert track["self_labels"] == ["graphic-media"] and track["sensitive"]
    # the artist has not opted in: their own artwork is blurred on the track page too, with a way to look
    s.js("p => window.plyrd.go(p)", f"/track/{s.ids['one']}")
    s.wait("() => document.querySelector('#main .cover.sensitive') !== null")
    assert s.js("getComputedStyle(document.querySelector('#main .cover')).filter").startswith("blur")
    page.click("#main [data-action=reveal]")
    assert s.js("getComputedStyle(document.querySelector('#main .cover')).filter") == "none"
    s.js("p => window.plyrd.go(p)", "/portal")
    s.wait(READY)
    page.click(f"{r} [data-edit-toggle]")
    assert page.eval_on_selector(f"{r} [name=content_notice]", "e => e.value") == "graphic-media"
    page.select_option(f"{r} [name=content_notice]", "")
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    assert s.api("GET", f"/tracks/{s.ids['one']}")["body"]["self_labels"] == []
    page.keyboard.press("Escape")


def test_replace_artwork(s: Session, files) -> None:
    page = s.page
    r = row(s.ids["two"])
    if page.is_hidden(f"{r} [data-edit]"):
        page.click(f"{r} [data-edit-toggle]")
    before = page.get_attribute(f"{r} [data-t-art]", "src")
    page.set_input_files(f"{r} [name=image]", str(files["art"]))
    page.click(f"{r} [data-edit] button[type=submit]")
    s.wait("r => document.querySelector(r + ' [data-edit] [data-status]').textContent === 'saved'", r)
    after = page.get_attribute(f"{r} [data-t-art]", "src")
    assert after != before and "/images/" in after
    assert s.api("GET", f"/tracks/{s.ids['two']}")["body"]["thumbnail_url"] == after
    assert s.js("r => document.querySelector(r + ' [data-t-art]').naturalWidth > 0", r)
    assert s.js("window.__alive") is True
    assert page.is_visible(f"{r} [data-remove-image-label]")


def test_filter_by_title(s: Session) -> None:
    page = s.page
    page.fill("#track-q", "wind")
    s.wait("() => document.querySelectorAll('#main [data-own-tracks] [data-track-id]').length === 1")
    assert page.text_content("#main [data-own-tracks] [data-t-title]") == "second wind"
    assert s.js("location.search") == "?q=wind"
    page.fill("#track-q", "no such title")
    page.keyboard.press("Enter")
    s.wait("() => document.querySelector('#main [data-own-tracks] .empty')")
    page.fill("#track-q", "")
    page.keyboard.press("Enter")
    s.wait("() => document.querySelectorAll('#main [data-own-tracks] [data-track-id]').length === 2")
    assert s.js("location.pathname + location.search") == "/portal" and s.js("window.__alive") is True


def test_albums_create_rename_cover_delete(s: Session, files) -> None:
    page = s.page
    # The upload of "one" with album "night" made the album "night" (plyr.fm's find-or-create): it stays alongside.
    page.fill("#album-title", "Night Drives")
    page.click("[data-new-album] button[type=submit]")
    s.wait("() => document.querySelectorAll('#main [data-albums] [data-album-id]').length === 2")
    album = page.locator("#main [data-album-id]:has-text('Night Drives')").get_attribute("data-album-id")
    a = f"#main [data-album-id='{album}']"
    assert page.get_attribute(f"{a} [data-a-title]", "href") == f"/u/{s.account.handle}/album/night-drives"
    page.fill("#album-title", "night drives")  # the same slug: refused, and the form says why
    page.click("[data-new-album] button[type=submit]")
    s.wait("() => document.querySelector('[data-new-album-error]').textContent.includes('already')")

    page.click(f"{a} [data-edit-toggle]")
    page.fill(f"{a} [name=title]", "Night Walks")
    page.click(f"{a} [data-album-rename] button[type=submit]")
    s.wait("a => document.querySelector(a + ' [data-status]').textContent === 'renamed'", a)
    assert page.text_content(f"{a} [data-a-title]") == "Night Walks"
    listed = s.api("GET", f"/albums/{s.account.handle}")["body"]["albums"]
    assert ("Night Walks", "night-drives") in [(x["title"], x["slug"]) for x in listed]  # links keep working
    assert "night-walks" not in [x["slug"] for x in listed]

    page.set_input_files(f"{a} [name=image]", str(files["cover"]))
    page.click(f"{a} [data-album-cover] button[type=submit]")
    s.wait("a => document.querySelector(a + ' [data-status]').textContent === 'cover set'", a)
    assert "/lists/covers/" in page.get_attribute(f"{a} [data-a-cover]", "src")

    # A second album, deleted with its tracks kept (the default choice), after its confirm step.
    page.fill("#album-title", "scratch")
    page.click("[data-new-album] button[type=submit]")
    s.wait("() => document.querySelectorAll('#main [data-albums] [data-album-id]').length === 3")
    scratch = page.locator("#main [data-album-id]:has-text('scratch')").get_attribute("data-album-id")
    b = f"#main [data-album-id='{scratch}']"
    page.click(f"{b} [data-edit-toggle]")
    page.click(f"{b} [data-album-delete-ask]")
    assert s.js("document.activeElement.matches('[data-album-delete-no]')")
    page.click(f"{b} [data-album-delete-yes]")
    s.wait("b => !document.querySelector(b)", b)
    left = {x["title"]: x["id"] for x in s.api("GET", f"/albums/{s.account.handle}")["body"]["albums"]}
    assert set(left) == {"Night Walks", "night"} and left["Night Walks"] == album  # scratch is gone
    assert page.locator("#main [data-own-tracks] [data-track-id]").count() == 2
    assert s.js("window.__alive") is True
    page.reload()
    assert page.text_content(f"{a} [data-a-title]") == "Night Walks"


def test_export_downloads_a_zip(s: Session) -> None:
    with s.page.expect_download() as info:
        s.page.click("[data-export]")
    download = info.value
    assert download.suggested_filename.startswith("plyrd-export-") and download.suggested_filename.endswith(".zip")
    data = Path(download.path()).read_bytes()
    assert data[:2] == b"PK"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
    assert "plyrd-export.json" in names and sum(n.startswith("tracks/") for n in names) == 2


def test_screenshots(s: Session, browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    state = s.page.context.storage_state()
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport, color_scheme="dark", storage_state=state,
                                      is_mobile=name == "phone", has_touch=name == "phone")
        page = context.new_page()
        page.on("pageerror", lambda e: s.errors.append(str(e)))
        page.goto(s.node.url + "/portal")
        page.wait_for_function(READY)
        page.click(f"{row(s.ids['one'])} [data-edit-toggle]")  # one edit panel open: it must fit a phone too
        page.wait_for_timeout(100)
        page.screenshot(path=str(SHOTS / f"portal-{name}.png"), full_page=True)
        if name == "phone":
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], width
        context.close()


def test_delete_a_track_after_confirming(s: Session) -> None:
    page = s.page
    portal_loaded(s)
    r = row(s.ids["two"])
    page.click(f"{r} [data-delete-ask]")
    assert page.is_visible(f"{r} [data-delete-confirm]")
    page.keyboard.press("Enter")  # the focus is on "keep it": Enter keeps the track
    assert page.is_hidden(f"{r} [data-delete-confirm]")
    assert s.js("document.activeElement.matches('[data-delete-ask]')")
    page.click(f"{r} [data-delete-ask]")
    page.click(f"{r} [data-delete-yes]")
    s.wait("r => !document.querySelector(r)", r)
    assert s.api("GET", f"/tracks/{s.ids['two']}")["status"] == 404
    assert page.locator("#main [data-own-tracks] [data-track-id]").count() == 1
    assert s.js("window.__alive") is True


def pds_tracks(pds: Any, did: str) -> list[Any]:
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords",
                  params={"repo": did, "collection": "fm.plyr.track"}, timeout=10)
    return r.json()["records"]


def test_delete_account_needs_the_typed_handle(s: Session, pds) -> None:
    page = s.page
    deadline = time.monotonic() + 20
    while len(pds_tracks(pds, s.account.did)) != 1:  # the remaining track's record reached the PDS
        assert time.monotonic() < deadline, pds_tracks(pds, s.account.did)
        time.sleep(0.2)
    page.fill("#delete-confirm", "not-my-handle.test")
    page.check("[data-delete-records]")
    page.click("[data-delete-account] button[type=submit]")
    s.wait("() => document.querySelector('[data-delete-account] [data-error]').textContent.includes('handle')")
    assert s.api("GET", "/artists/me")["status"] == 200  # nothing was deleted
    assert s.api("GET", f"/tracks/{s.ids['one']}")["status"] == 200
    page.fill("#delete-confirm", f"@{s.account.handle}")
    page.click("[data-delete-account] button[type=submit]")
    s.wait("() => location.pathname === '/' && window.__alive === undefined && window.plyrd", timeout=30_000)
    assert page.locator("header a[href='/login']").count() == 1 and page.locator("header .me").count() == 0
    assert s.js("document.body.dataset.user") == ""
    status = "p => fetch(p, {credentials: 'same-origin'}).then(r => r.status)"  # no CSRF cookie any more
    assert s.js(status, f"/tracks/{s.ids['one']}") == 404
    assert s.js(status, "/artists/me") == 401
    assert pds_tracks(pds, s.account.did) == []  # the box was ticked: the records left the PDS too


def test_no_script_errors(s: Session) -> None:
    assert s.errors == []
