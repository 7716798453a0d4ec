"""Signing in with a handle (OAuth) and creating a developer token, in Debian's Chromium against a node and the real
PDS. The browser goes through the node's own pages and redirects; at the PDS, the authorization page's sign-in and
consent are made through its JSON API (pds_harness.authorize_headless) instead of its React UI, and the browser then
follows the PDS's redirect back to the node as it would after a person clicked "accept".
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browsing import DESKTOP
from conftest import node_fixture
from pds_harness import authorize_headless

node = node_fixture("browser-oauth")


@pytest.fixture(scope="module")
def account(pds) -> Any:
    return pds.create_account("oauthbrowser")


@pytest.fixture(scope="module")
def page(browser, node) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == []


def through_the_pds(page: Any, pds: Any, account: Any, start: Any) -> None:
    """Run `start` (a click that leads to the PDS's authorization page) and stop the browser just before that page:
    the PDS binds a request to the first device that opens it, and here that is the headless sign-in and consent.
    Then let the browser follow the PDS's redirect back to the node's callback."""
    seen: list[str] = []
    blank = {"status": 200, "content_type": "text/html", "body": "<!doctype html><title>at the pds</title>"}

    def at_pds(route: Any) -> None:  # a page that sends the browser to the PDS itself (developer tokens)
        seen.append(route.request.url)
        route.fulfill(**blank)

    def at_start(route: Any) -> None:  # /auth/start answers a page that moves on to the PDS by itself
        answer = route.fetch(max_redirects=0)
        assert answer.status == 200, answer.status
        seen.append(html.unescape(re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', answer.text())[1]))
        route.fulfill(**blank)

    page.route(f"{pds.pds_url}/oauth/authorize?**", at_pds)
    page.route("**/auth/start?**", at_start)
    try:
        start()
        page.wait_for_function("() => document.title === 'at the pds'")
    finally:
        page.unroute_all()
    assert seen and seen[-1].startswith(f"{pds.pds_url}/oauth/authorize?"), seen
    callback = authorize_headless(seen[-1], account.handle, account.password)
    assert "/auth/callback?" in callback and "code=" in callback
    page.goto(callback)


def test_sign_in_with_a_handle(page, node, pds, account) -> None:
    page.goto(node.url + "/library")  # needs a session: sent to sign in, and back here afterwards
    assert page.url.startswith(node.url + "/login?next=/library")
    page.fill("#handle", account.handle)
    through_the_pds(page, pds, account, lambda: page.click("form[action='/auth/start'] button[type=submit]"))
    page.wait_for_url(node.url + "/library")
    assert page.text_content("header .me") == f"@{account.handle}"
    me = page.evaluate("fetch('/auth/me').then(r => r.json())")
    assert me["handle"] == account.handle and me["auth_type"] == "oauth"


def test_an_unknown_handle_explains_itself(browser, node) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(node.url + "/login")
    page.fill("#handle", "nobody-here.test")
    page.click("form[action='/auth/start'] button[type=submit]")
    page.wait_for_selector("h1")
    assert page.text_content("h1") == "sign-in failed"
    assert "nobody-here.test" in page.text_content("main")
    page.click("text=try again")
    page.wait_for_url(node.url + "/login")
    context.close()


def test_teal_scrobbling_asks_the_pds_and_comes_back(page, node, pds, account) -> None:
    page.goto(node.url + "/settings")
    page.wait_for_selector("[data-tokens] li")
    me = page.evaluate("fetch('/auth/me').then(r => r.json())")
    assert not me.get("teal_scrobbling_granted")
    through_the_pds(page, pds, account, lambda: page.check("[data-teal]"))
    page.wait_for_url(node.url + "/settings")
    page.wait_for_function("() => document.querySelector('#main [data-status]').textContent.includes('teal.fm')")
    assert page.is_checked("[data-teal]")
    me = page.evaluate("fetch('/auth/me').then(r => r.json())")
    assert me["teal_scrobbling_granted"] is True and me["handle"] == account.handle  # the same session, more scopes


def test_a_developer_token_is_shown_once(page, node, pds, account) -> None:
    page.goto(node.url + "/settings")
    page.wait_for_selector("[data-tokens] li")
    page.fill("#token-name", "laptop")
    page.fill("#token-days", "30")
    through_the_pds(page, pds, account, lambda: page.click("[data-token-form] button[type=submit]"))
    page.wait_for_selector("pre.token")
    assert page.text_content("h1") == "developer token created"
    token = page.text_content("pre.token").strip()
    callback = page.url
    # It works as a Bearer token, as its own grant, without the browser's cookie.
    r = httpx.get(node.url + "/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["handle"] == account.handle
    # Shown once: the same callback again shows no token (the code was used up).
    page.goto(callback)
    assert page.locator("pre.token").count() == 0 and page.text_content("h1") == "sign-in failed"
    # Back in settings it is listed by its prefix only, and can be revoked.
    page.goto(node.url + "/settings")
    row = page.locator("[data-tokens] li", has_text="laptop")
    row.wait_for()
    assert token not in row.text_content() and token[:8] in row.text_content()
    row.locator("button").click()
    page.wait_for_function("() => !document.querySelector('[data-tokens]').textContent.includes('laptop')")
    r = httpx.get(node.url + "/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
