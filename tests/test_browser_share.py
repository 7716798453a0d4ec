"""Sharing to Bluesky in Debian's Chromium: the track page's form by keyboard, the track menu's item, and a listener
signed in with OAuth who is sent to their PDS for the permission to post and whose post is made once back. At the
PDS, sign-in and consent go through its JSON API (pds_harness.authorize_headless) instead of its React UI."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from browsing import DESKTOP, Session
from conftest import node_fixture
from helpers import sign_in
from pds_harness import authorize_headless

node = node_fixture("browser-share")
BLANK = {"status": 200, "content_type": "text/html", "body": "<!doctype html><title>at the pds</title>"}


@pytest.fixture(scope="module")
def track_id(node, pds, tmp_path_factory) -> int:
    artist = sign_in(node.url, pds.create_account("bshareart"))
    src = make_audio(tmp_path_factory.mktemp("bshare") / "t.mp3", "mp3", seconds=1.5, frequency=550.0)
    r = artist.upload(src, image=("c.jpg", jpeg_bytes(200, 200), "image/jpeg"), title="Low Tide")
    assert r.status_code == 200, r.text
    done = artist.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    return int(done["track_id"])


@pytest.fixture
def tab(browser, node, pds) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), pds.create_account("bsharer"))
    yield session
    context.close()
    assert session.errors == []


def posts(pds: Any, did: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords",
                  params={"repo": did, "collection": "app.bsky.feed.post"}, timeout=30)
    return [p["value"] for p in r.json()["records"]]


def test_share_from_the_track_page_by_keyboard(tab: Session, pds, track_id: int) -> None:
    page = tab.page
    tab.sign_in(f"/track/{track_id}")
    opener = "[data-share-bsky-open]"
    assert page.is_hidden("[data-share-bsky]") and page.get_attribute(opener, "aria-expanded") == "false"
    page.focus(opener)
    page.keyboard.press("Enter")
    tab.wait("() => document.activeElement.id === 'share-bsky-text'")
    assert page.get_attribute(opener, "aria-expanded") == "true"
    page.keyboard.type("on repeat 🌊")
    assert page.text_content("#share-bsky-count") == "11 / 300"  # the wave is one character, as Bluesky counts
    page.keyboard.press("Escape")  # closes the form, focus back on its button
    assert page.is_hidden("[data-share-bsky]") and tab.js("document.activeElement.matches('[data-share-bsky-open]')")
    page.keyboard.press("Enter")
    page.click("[data-share-bsky] button[type=submit]")
    tab.wait("() => document.querySelector('[data-share-bsky] [data-status] a') !== null", timeout=20_000)
    link = page.get_attribute("[data-share-bsky] [data-status] a", "href")
    did = tab.api("GET", "/auth/me")["body"]["did"]
    assert re.fullmatch(rf"https://bsky\.app/profile/{re.escape(did)}/post/[a-z2-7]{{13}}", link), link
    [post] = posts(pds, did)
    assert post["text"] == "on repeat 🌊" and post["embed"]["external"]["title"] == "Low Tide"
    assert page.input_value("#share-bsky-text") == ""


def test_the_track_menu_opens_the_form(tab: Session, track_id: int) -> None:
    page = tab.page
    tab.sign_in("/")
    row = f"#main li[data-track-id='{track_id}']"
    page.click(f"{row} [data-track-menu]")
    page.click("#track-menu [role=menuitem]:has-text('share to bluesky')")
    tab.wait("p => location.pathname === p && !document.querySelector('[data-share-bsky]')?.hidden",
             f"/track/{track_id}")
    assert tab.js("document.activeElement.id") == "share-bsky-text"
    assert tab.js("location.search") == ""  # ?share=1 is dropped once the form is open


def oauth_sign_in(tab: Session, pds: Any, next_path: str) -> None:
    """Sign in with a handle: the node's own pages, the PDS's authorization headless, back through the callback."""
    page = tab.page
    page.goto(f"{tab.node.url}/login?next={next_path}")
    page.fill("#handle", tab.account.handle)
    seen: list[str] = []

    def at_start(route: Any) -> None:  # /auth/start answers a page that moves on to the PDS by itself
        answer = route.fetch(max_redirects=0)
        seen.append(html.unescape(re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', answer.text())[1]))
        route.fulfill(**BLANK)

    page.route("**/auth/start?**", at_start)
    page.click("form[action='/auth/start'] button[type=submit]")
    tab.wait("() => document.title === 'at the pds'")
    page.unroute_all()
    page.goto(authorize_headless(seen[-1], tab.account.handle, tab.account.password))
    tab.wait("p => location.pathname === p", next_path)


def test_an_oauth_listener_grants_posting_and_the_post_is_made(tab: Session, pds, track_id: int) -> None:
    page = tab.page
    oauth_sign_in(tab, pds, f"/track/{track_id}")
    me = tab.api("GET", "/auth/me")["body"]
    assert me["auth_type"] == "oauth" and "repo:app.bsky.feed.post?action=create" not in me["scopes"]
    page.click("[data-share-bsky-open]")
    page.fill("#share-bsky-text", "found this today")

    seen: list[str] = []

    def at_pds(route: Any) -> None:  # the PDS's authorization page: stop there, consent headless below
        seen.append(route.request.url)
        route.fulfill(**BLANK)

    page.route(f"{pds.pds_url}/oauth/authorize?**", at_pds)
    page.click("[data-share-bsky] button[type=submit]")
    tab.wait("() => document.title === 'at the pds'")
    page.unroute_all()
    assert posts(pds, me["did"]) == []  # nothing was posted without the permission
    page.goto(authorize_headless(seen[-1], tab.account.handle, tab.account.password))
    # Back on the track page, the words kept for the trip are posted without another click.
    tab.wait("p => location.pathname === p", f"/track/{track_id}")
    tab.wait("() => document.querySelector('[data-share-bsky] [data-status] a') !== null", timeout=20_000)
    [post] = posts(pds, me["did"])
    assert post["text"] == "found this today"
    assert tab.js("location.search") == "" and tab.js("sessionStorage.length") == 0
    page.reload()  # nothing is posted twice
    page.wait_for_selector("[data-share-bsky-open]")
    assert len(posts(pds, me["did"])) == 1
    assert "repo:app.bsky.feed.post?action=create" in tab.api("GET", "/auth/me")["body"]["scopes"]
