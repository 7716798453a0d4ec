"""Reporting in Debian's Chromium: a track from its ⋯ menu by keyboard alone (reason, note with its counter, send,
the thanks, focus back on the ⋯ button), the track page's "report" at phone width with its errors as words (a
session that ended: "sign in to report"; the hourly limit), and nothing offered to visitors who are not signed in or
on one's own things. What was sent is read back from the node's database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from audio_samples import make_audio
from browsing import DESKTOP, PHONE, SHOTS, Session
from conftest import node_fixture
from helpers import Artist, db, sign_in

node = node_fixture("browser-reports")


@pytest.fixture(scope="module")
def artist_account(pds) -> Any:
    return pds.create_account("brepart")


@pytest.fixture(scope="module")
def artist(node, artist_account) -> Artist:
    return sign_in(node.url, artist_account)


@pytest.fixture(scope="module")
def track_id(node, artist: Artist, tmp_path_factory) -> int:
    src = make_audio(tmp_path_factory.mktemp("breport") / "t.mp3", "mp3", seconds=1.0, frequency=440.0)
    r = artist.upload(src, title="Night Bus <b>")
    assert r.status_code == 200, r.text
    done = artist.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    return int(done["track_id"])


def tab_for(browser: Any, node: Any, account: Any, viewport: dict[str, int]) -> tuple[Any, Session]:
    context = browser.new_context(viewport=viewport, color_scheme="dark")
    return context, Session(node, context.new_page(), account)


@pytest.fixture
def tab(browser, node, pds) -> Iterator[Session]:
    context, session = tab_for(browser, node, pds.create_account("breporter"), DESKTOP)
    yield session
    context.close()
    assert session.errors == []


def entries(node: Any, did: str) -> list[tuple[Any, ...]]:
    return db(node, "SELECT r.target_type, r.target_id, e.reason, e.description FROM report_entries e"
                    " JOIN reports r ON r.id = e.report_id WHERE e.reporter = ? ORDER BY e.id", (did,))


def test_report_a_track_from_its_menu_by_keyboard(tab: Session, node, track_id: int) -> None:
    page = tab.page
    tab.sign_in("/")
    did = tab.api("GET", "/auth/me")["body"]["did"]
    more = f"#main li[data-track-id='{track_id}'] [data-track-menu]"
    page.focus(more)
    page.keyboard.press("Enter")
    tab.wait("() => document.activeElement.matches('#track-menu [role=menuitem]')")
    for _ in range(8):  # down the menu to its "report" item
        if tab.js("document.activeElement.textContent") == "report":
            break
        page.keyboard.press("ArrowDown")
    assert tab.js("document.activeElement.textContent") == "report"
    page.keyboard.press("Enter")
    tab.wait("() => document.getElementById('report-dialog')?.open && document.activeElement.id === 'report-reason'")
    assert page.text_content("#report-heading") == "report this track"
    assert page.text_content("[data-report-subject]") == "Night Bus <b>"  # a title is text, never markup
    assert tab.js("[...document.querySelectorAll('#report-reason option')].map(o => o.value)") == [
        "copyright", "abuse", "spam", "explicit", "other"]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.input_value("#report-reason") == "spam"
    page.keyboard.press("Tab")
    assert tab.js("document.activeElement.id") == "report-note"
    page.keyboard.type("the same ad, every minute")
    assert page.text_content("#report-count") == "25 / 1000"
    page.keyboard.press("Tab")
    assert tab.js("document.activeElement.textContent") == "send"
    page.keyboard.press("Enter")
    tab.wait("() => !document.querySelector('[data-report-done]').hidden")
    assert page.text_content("[data-report-done] [role=status]") == "thanks, the node's admins will look at it."
    assert tab.js("document.activeElement.textContent") == "close"
    assert entries(node, did) == [("track", str(track_id), "spam", "the same ad, every minute")]

    page.keyboard.press("Escape")  # closes, and focus is back on the ⋯ that opened the menu
    tab.wait("() => !document.getElementById('report-dialog').open")
    assert tab.js("document.activeElement.matches('[data-track-menu]')")
    assert tab.js("document.activeElement.closest('[data-track-id]').dataset.trackId") == str(track_id)

    # Opened again it starts fresh; Escape before sending sends nothing, and the player's keys stay out of it.
    page.keyboard.press("Enter")
    tab.wait("() => document.activeElement.matches('#track-menu [role=menuitem]')")
    page.click("#track-menu [role=menuitem]:has-text('report')")
    tab.wait("() => document.getElementById('report-dialog').open")
    assert page.input_value("#report-note") == "" and page.is_hidden("[data-report-done]")
    page.keyboard.press("Tab")
    page.keyboard.press("q")  # typed into the note, not the queue's shortcut
    assert page.input_value("#report-note") == "q" and tab.js("document.getElementById('queue-panel').hidden")
    page.keyboard.press("Escape")
    tab.wait("() => !document.getElementById('report-dialog').open")
    assert tab.js("document.activeElement.matches('[data-track-menu]')")
    assert len(entries(node, did)) == 1


def test_the_track_page_report_at_phone_width_and_its_errors(browser, node, pds, track_id: int) -> None:
    context, tab = tab_for(browser, node, pds.create_account("brephone"), PHONE)
    page = tab.page
    try:
        tab.sign_in(f"/track/{track_id}")
        did = tab.api("GET", "/auth/me")["body"]["did"]
        opener = "#main [data-report='track']"
        page.click(opener)
        tab.wait("() => document.getElementById('report-dialog').open")
        box = page.eval_on_selector("#report-dialog", "d => d.getBoundingClientRect().toJSON()")
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        assert tab.js("document.documentElement.scrollWidth") <= PHONE["width"]
        page.fill("#report-note", "x" * 1200)  # the field stops at the limit, and says so
        assert page.text_content("#report-count") == "1000 / 1000"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "report-dialog-phone.png"))
        page.click("#report-dialog button:has-text('cancel')")
        tab.wait("() => !document.getElementById('report-dialog').open")
        assert tab.js("document.activeElement.matches(\"[data-report='track']\")")

        # The hourly limit, spent through the API, is told in words.
        for n in range(10):
            assert tab.api("POST", "/moderation/reports", {"target_type": "tag", "target_id": f"t{n}",
                                                           "reason": "spam"})["status"] == 201
        page.click(opener)
        page.click("#report-dialog button[type=submit]")
        tab.wait("() => document.querySelector('#report-dialog [data-error]').textContent !== ''")
        assert "too many reports" in page.text_content("#report-dialog [data-error]")
        page.keyboard.press("Escape")

        # A session that ended meanwhile: "sign in to report", with a way to do it.
        tab.api("POST", "/auth/logout")
        page.click(opener)
        page.click("#report-dialog button[type=submit]")
        tab.wait("() => document.querySelector('#report-dialog [data-error]').textContent !== ''")
        assert page.text_content("#report-dialog [data-error]") == "sign in to report"
        assert page.get_attribute("#report-dialog [data-error] a", "href") == f"/login?next=%2Ftrack%2F{track_id}"
        assert len(entries(node, did)) == 10 and not [e for e in entries(node, did) if e[0] == "track"]
        assert tab.errors == []
    finally:
        context.close()


def send_default(tab: Session, opener: str) -> None:
    """Open a report from `opener` and send it as it stands (the first reason, no note)."""
    tab.page.click(opener)
    tab.wait("() => document.getElementById('report-dialog').open")
    tab.page.click("#report-dialog button[type=submit]")
    tab.wait("() => !document.querySelector('[data-report-done]').hidden")
    tab.page.keyboard.press("Escape")


def test_only_signed_in_people_see_report_and_not_on_their_own(browser, node, pds, artist: Artist, artist_account,
                                                                 track_id: int) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{node.url}/track/{track_id}")
        assert page.query_selector("[data-report]") is None
        page.goto(f"{node.url}/")
        page.click(f"#main li[data-track-id='{track_id}'] [data-track-menu]")
        items = page.eval_on_selector_all("#track-menu [role=menuitem]", "els => els.map(e => e.textContent)")
        assert "copy link" in items and "report" not in items
    finally:
        context.close()

    # Someone else on the node: a comment on the artist's track, a public playlist, their own page.
    other_account = pds.create_account("brepother")
    other = sign_in(node.url, other_account)
    csrf = {"X-CSRF-Token": artist.csrf}
    assert artist.http.post("/preferences/", json={"allow_comments": True}, headers=csrf).status_code == 200
    comment = other.http.post(f"/tracks/{track_id}/comments", json={"text": "<i>hi</i>", "timestamp_ms": 0},
                              headers={"X-CSRF-Token": other.csrf}).json()
    playlist = other.http.post("/lists/playlists", json={"name": "their list"},
                               headers={"X-CSRF-Token": other.csrf}).json()

    context, tab = tab_for(browser, node, artist_account, DESKTOP)
    try:
        tab.sign_in(f"/track/{track_id}")  # the artist's own track: no report for it, one for the comment
        page = tab.page
        assert page.query_selector("#main [data-report='track']") is None
        assert page.get_attribute("#main [data-report='comment']", "data-report-id") == str(comment["id"])
        page.screenshot(path=str(SHOTS / "report-track-page.png"), full_page=True)
        send_default(tab, "#main [data-report='comment']")
        assert page.text_content("[data-report-subject]").endswith(": <i>hi</i>")
        tab.nav("a.me", f"/u/{artist_account.handle}")
        assert page.query_selector("#main [data-report]") is None  # their own page
        page.click(f"#main li[data-track-id='{track_id}'] [data-track-menu]")
        items = page.eval_on_selector_all("#track-menu [role=menuitem]", "els => els.map(e => e.textContent)")
        assert "share to bluesky" in items and "report" not in items
        page.keyboard.press("Escape")
        page.goto(f"{node.url}/u/{other_account.handle}")
        assert page.get_attribute("#main [data-report='artist']", "data-report-id") == other.did
        send_default(tab, "#main [data-report='artist']")
        page.goto(f"{node.url}/playlist/{playlist['id']}")
        send_default(tab, "#main [data-report='playlist']")
        assert entries(node, artist.did) == [("comment", str(comment["id"]), "copyright", None),
                                             ("artist", other.did, "copyright", None),
                                             ("playlist", playlist["id"], "copyright", None)]
        assert tab.errors == []
    finally:
        context.close()
