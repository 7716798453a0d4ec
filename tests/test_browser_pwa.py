"""The installable web app in Debian's Chromium: the manifest and icons, the service worker (/sw.js) and the offline
page, on the node's 127.0.0.1 URL (a secure context for Chromium, as https would be).

In order, in one browser profile: Chromium parses the manifest with no error and reports the app installable; the
worker activates, controls the page and serves /static/ from its versioned cache after a reload; audio plays while the
page is controlled and every audio request, and any request with a Range header, goes to the network, not through the
worker; a page that cannot be reached shows the offline page, and its retry link brings the page back; a new node
version (a deploy with one static file changed) replaces the worker's cache.

Chromium counts Playwright's ordinary contexts as incognito, where nothing is installable ("in-incognito"), so this
module uses a persistent context: a real profile in a temporary directory.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_samples import make_audio
from axe_support import audit, serious
from browsing import DESKTOP, PHONE, SHOTS, Session
from conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, node_env, start_node
from helpers import sign_in
from PIL import Image

from plyrd import __version__

CACHE_NAME = re.compile(r'const CACHE = "(plyrd-[^"]+)";')


@pytest.fixture(scope="module")
def account(pds) -> Any:
    return pds.create_account("pwa")


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()  # kept: the new version in the last test must be the same origin


@pytest.fixture(scope="module")
def node(pds, port, tmp_path_factory) -> Iterator[Any]:
    served = start_node([], cwd=tmp_path_factory.mktemp("pwa"), env=node_env(pds), port=port)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def track(node, account, tmp_path_factory) -> dict[str, Any]:
    artist = sign_in(node.url, account)
    src = make_audio(tmp_path_factory.mktemp("pwa-audio") / "tide.mp3", "mp3", seconds=30, kind="music",
                     frequency=220)
    r = artist.upload(src, title="offline tide")
    assert r.status_code == 200, r.text
    done = artist.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    return {"id": int(done["track_id"])}


@pytest.fixture(scope="module")
def s(browser, node, account, tmp_path_factory) -> Iterator[Session]:
    context = browser.browser_type.launch_persistent_context(
        str(tmp_path_factory.mktemp("pwa-profile")), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
        viewport=DESKTOP, color_scheme="dark")
    page = context.pages[0] if context.pages else context.new_page()
    session = Session(node, page, account)
    yield session
    context.close()
    assert session.errors == []


def cache_name(url: str) -> str:
    found = CACHE_NAME.search(httpx.get(url + "/sw.js").text)
    assert found, "no cache name in /sw.js"
    return found.group(1)


def cached_paths(s: Session) -> dict[str, list[str]]:
    return s.js("""async () => { const out = {};
        for (const name of await caches.keys())
          out[name] = (await (await caches.open(name)).keys()).map(r => new URL(r.url).pathname).sort();
        return out; }""")


def test_manifest_icons_worker_and_offline_page_are_served(node) -> None:
    r = httpx.get(node.url + "/static/manifest.webmanifest")
    assert r.status_code == 200 and r.headers["content-type"] == "application/manifest+json"
    assert "immutable" not in r.headers.get("cache-control", "")  # its name carries no version
    manifest = r.json()
    assert (manifest["name"], manifest["start_url"], manifest["scope"], manifest["display"]) == (
        "plyrd", "/", "/", "standalone")
    assert manifest["short_name"] and manifest["theme_color"] == manifest["background_color"] == "#0b0b0c"
    pngs = {}
    for icon in manifest["icons"]:
        got = httpx.get(node.url + icon["src"])
        assert got.status_code == 200 and got.headers["content-type"].split(";")[0] == icon["type"], icon
        if icon["type"] == "image/png":
            image = Image.open(io.BytesIO(got.content))
            assert f"{image.width}x{image.height}" == icon["sizes"], icon
            pngs[(icon["sizes"], icon.get("purpose", "any"))] = image
    assert set(pngs) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    # A maskable icon fills its square (a launcher crops it to any shape); the others keep their corners clear.
    assert pngs[("512x512", "maskable")].convert("RGBA").getpixel((0, 0))[3] == 255
    assert pngs[("512x512", "any")].convert("RGBA").getpixel((0, 0))[3] == 0

    r = httpx.get(node.url + "/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "no-cache" and "Service-Worker-Allowed" not in r.headers
    assert cache_name(node.url).startswith(f"plyrd-{__version__}-")

    r = httpx.get(node.url + "/offline")
    assert r.status_code == 200 and "you are offline" in r.text

    r = httpx.get(node.url + "/")
    csp = r.headers["content-security-policy"]
    assert "worker-src 'self'" in csp and "manifest-src 'self'" in csp
    assert '<link rel="manifest" href="/static/manifest.webmanifest">' in r.text
    assert '<meta name="theme-color" content="#fafaf9" media="(prefers-color-scheme: light)">' in r.text


def test_chromium_sees_an_installable_app(s: Session, node) -> None:
    s.page.goto(node.url + "/")
    s.wait("() => navigator.serviceWorker.controller !== null")  # the worker activated and took the page
    cdp = s.page.context.new_cdp_session(s.page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == node.url + "/static/manifest.webmanifest"
    assert manifest["errors"] == [], manifest["errors"]
    assert manifest["manifest"]["display"] == "kStandalone" and manifest["manifest"]["name"] == "plyrd"
    assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
    cdp.detach()


def test_the_worker_serves_the_shell_from_its_versioned_cache(s: Session, node) -> None:
    name = cache_name(node.url)
    cached = cached_paths(s)
    assert list(cached) == [name]
    for path in ("/offline", "/static/css/base.css", "/static/js/boot.js", "/static/js/app.js",
                 "/static/js/player.js", "/static/favicon.svg"):
        assert path in cached[name], (path, cached[name])
    assert "/static/js/pages/feed.js" not in cached[name]  # a page's module: not in the shell
    assert not any(p.startswith(("/audio/", "/auth/", "/tracks", "/images/")) for p in cached[name])

    seen: dict[str, bool] = {}

    def note(r: Any) -> None:
        seen.setdefault(r.url.removeprefix(node.url), r.from_service_worker)

    s.page.on("response", note)
    s.page.reload()
    s.wait("() => navigator.serviceWorker.controller !== null && document.getElementById('player')")
    s.page.wait_for_timeout(300)
    s.page.remove_listener("response", note)
    for path in ("/static/css/base.css", "/static/js/boot.js", "/static/js/app.js", "/static/js/player.js"):
        assert seen.get(path) is True, (path, seen)
    assert seen.get("/") is True  # the page itself: fetched by the worker (network first)
    assert "/static/js/pages/feed.js" in cached_paths(s)[name]  # ...cached once the controlled page loaded it


def test_audio_and_ranges_go_around_the_worker(s: Session, node, track) -> None:
    responses: list[Any] = []

    def note(r: Any) -> None:
        responses.append(r)

    s.page.on("response", note)
    s.sign_in("/")
    s.wait("() => navigator.serviceWorker.controller !== null")
    s.page.click(f"#main li[data-track-id='{track['id']}'] [data-action=play]")
    s.wait("() => document.getElementById('audio').currentTime > 1.5")
    assert s.js("navigator.serviceWorker.controller !== null && !document.getElementById('audio').paused")
    audio = [r for r in responses if "/audio/" in r.url]
    assert audio, [r.url for r in responses]
    assert all(not r.from_service_worker for r in audio), [(r.url, r.status) for r in audio]
    assert any(r.status == 206 for r in audio)  # the element asked for ranges, and the node answered them
    # A range of a static file is left to the network too (the worker's own rule, not a static route): a 206 from
    # the node, where the worker's cache would have answered the whole file with a 200.
    got = s.js("""async () => { const r = await fetch('/static/css/base.css', {headers: {Range: 'bytes=0-9'}});
        return [r.status, (await r.text()).length]; }""")
    assert got == [206, 10]
    assert s.js("fetch('/auth/me').then(r => r.status)") == 200
    s.page.wait_for_timeout(200)
    s.page.remove_listener("response", note)
    ranged = [r for r in responses if r.url.endswith("/static/css/base.css") and r.status == 206]
    api = [r for r in responses if r.url.startswith(node.url + "/auth/me")]
    assert ranged and api
    assert not any(r.from_service_worker for r in ranged + api)
    s.js("document.getElementById('audio').pause()")


def test_theme_color_follows_a_chosen_theme(s: Session, node) -> None:
    metas = "() => [...document.querySelectorAll('meta[name=theme-color]')].map(m => [m.content, m.media])"
    s.page.goto(node.url + "/")
    s.js("localStorage.setItem('plyrd.theme', 'system')")  # the system's choice: the browser picks by media query
    s.page.reload()
    assert s.js(metas) == [["#0b0b0c", "(prefers-color-scheme: dark)"], ["#fafaf9", "(prefers-color-scheme: light)"]]
    s.js("localStorage.setItem('plyrd.theme', 'light')")  # this browser chose light while the system is dark
    s.page.reload()
    assert s.js(metas) == [["#fafaf9", ""], ["#fafaf9", ""]]
    s.js("localStorage.removeItem('plyrd.theme')")


def test_the_offline_page_when_the_node_cannot_be_reached(s: Session, node) -> None:
    page = s.page
    page.goto(node.url + "/library")
    s.wait("() => navigator.serviceWorker.controller !== null && document.getElementById('player')")
    page.context.set_offline(True)
    try:
        # A link inside the player (client-side navigation fails, falls back to a page load) and a typed address.
        page.click("header a[href='/settings']")
        page.wait_for_selector("text=you are offline")
        assert page.evaluate("location.pathname") == "/settings"
        page.goto(node.url + "/upload")
        assert page.text_content("h1") == "you are offline"
        # One copy for everyone, fetched without cookies: no trace of the signed-in listener.
        assert s.account.handle not in page.content() and page.query_selector("header .me") is None
        for theme, size in (("dark", DESKTOP), ("light", PHONE)):
            page.emulate_media(color_scheme=theme)
            page.set_viewport_size(size)
            page.screenshot(path=str(SHOTS / f"offline-{theme}-{size['width']}.png"))
        page.emulate_media(color_scheme="dark")
        page.set_viewport_size(DESKTOP)
    finally:
        page.context.set_offline(False)
    page.click("a[data-retry]")
    page.wait_for_selector("#main[data-page=upload]")
    assert page.evaluate("location.pathname") == "/upload"


def test_the_offline_page_passes_axe(browser, node) -> None:
    """axe-core on the offline page in both themes, desktop and phone (the audit injects its script: CSP bypassed)."""
    found = {}
    for theme, size in (("dark", DESKTOP), ("light", DESKTOP), ("dark", PHONE), ("light", PHONE)):
        context = browser.new_context(viewport=size, color_scheme=theme, bypass_csp=True)
        page = context.new_page()
        page.goto(node.url + "/offline")
        found[f"{theme}-{size['width']}"] = serious(audit(page))
        context.close()
    assert all(not lines for lines in found.values()), found


def test_a_new_version_replaces_the_old_cache(s: Session, node, pds, port, tmp_path_factory) -> None:
    old = cache_name(node.url)
    assert list(cached_paths(s)) == [old]
    # A deploy: the same code with one static file changed, served on the same origin.
    release = tmp_path_factory.mktemp("pwa-release")
    shutil.copytree(ROOT / "plyrd", release / "plyrd")  # with __pycache__ (mtimes kept): no recompiling
    shutil.copytree(ROOT / "static", release / "static")
    css = release / "static" / "css" / "base.css"
    css.write_text(css.read_text() + "\n/* the next release */\n")
    node.stop()
    new_node = start_node([], cwd=release, env=node_env(pds), port=port)
    try:
        new = cache_name(new_node.url)
        assert new != old and new.startswith(f"plyrd-{__version__}-")
        s.page.goto(new_node.url + "/")  # a navigation: the browser compares /sw.js and installs the new worker
        for _ in range(100):  # install (the new shell fetched), activate (the old cache deleted): a few seconds
            if list(cached_paths(s)) == [new]:
                break
            s.page.wait_for_timeout(200)
        assert list(cached_paths(s)) == [new]
        css_text = s.js("fetch('/static/css/base.css').then(r => r.text())")
        assert css_text.endswith("/* the next release */\n")
        assert "/offline" in cached_paths(s)[new]
    finally:
        new_node.stop()
    assert Path(release / "plyrd-data").is_dir()  # the release's own node ran, from its own copy of the code
