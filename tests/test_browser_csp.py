"""The security headers and the Content-Security-Policy in a real browser (Debian's Chromium, driven by Playwright)
against a node of its own and the real PDS; and hostile values that reach the DOM staying text.

Every page type is loaded signed out and signed in with the policy on, and any `securitypolicyviolation` event, page
error or console error fails the test: the pages must run with no inline script, no inline event handler and no
inline style attribute. Then the headers themselves, framing (pages refuse it, embeds allow it), the theme still
applied before the first paint by a script file, and the sign-in with a handle reaching the PDS through
`form-action 'self'`.

Last, hostile values are written straight into the node's database with sqlite3. That bypasses, on purpose, the
server's own validation of what it stores (URLs and text are checked when they arrive through the API), to test the
layer underneath: the modules that build DOM from data. The search box, the player, the queue, comments and the
developer token list must show them as text and never as markup, with the policy bypassed (the DOM layer alone) and
with it on.
"""

from __future__ import annotations

import html
import http.server
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from browsing import DESKTOP, Session, upload
from conftest import node_fixture

node = node_fixture("browser-csp")

ACCENT = "#d0459c"
MISSING = "/track/987654"  # the error page: a 404

# Reported to Python (a binding survives page loads), so a violation on a page the browser then leaves still counts.
WATCH = """(() => {
  document.addEventListener('securitypolicyviolation', (e) => window.__cspViolation({
    page: location.href, directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile,
    line: e.lineNumber, sample: e.sample }));
  // What <html> says when the body starts: boot.js (a blocking script in <head>) must have run by then.
  new MutationObserver((_, observer) => {
    if (!document.body) return;
    observer.disconnect();
    const d = document.documentElement;
    window.__atBody = { theme: d.dataset.theme, accent: d.style.getPropertyValue('--accent-choice').trim() };
  }).observe(document, { childList: true, subtree: true });
})();"""

HOSTILE_AVATAR = 'https://x"onerror="window.__xss=1"a="'
HOSTILE_NAME = '<img src=x onerror="window.__xss=2"> Harbour Band'
HOSTILE_TITLE = '<img src=x onerror="window.__xss=3"> harbour lights'
HOSTILE_COMMENT = '<img src=x onerror="window.__xss=4"> the tide'
HOSTILE_TOKEN = '<img src=x onerror="window.__xss=5">'


class Watch:
    """A browser context whose pages report policy violations, page errors and console errors."""

    def __init__(self, browser: Any, node: Any, **options: Any) -> None:
        self.node = node
        self.context = browser.new_context(viewport=DESKTOP, **options)
        self.violations: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.context.expose_function("__cspViolation", lambda v: self.violations.append(v))
        self.context.add_init_script(WATCH)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(f"{self.page.url}: {e}"))
        self.page.on("console", self.console)

    def console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        # The error page is a 404 on purpose, and Chromium says so about the document itself.
        if url.endswith(MISSING) and "status of 404" in message.text:
            return
        # Two pages of one account saving the queue: the later one is told 409 and saves again on top (queue.js).
        if url.endswith("/queue/") and "status of 409" in message.text:
            return
        self.errors.append(f"{self.page.url}: {message.text} ({url})")

    def visit(self, path: str) -> Any:
        response = self.page.goto(self.node.url + path)
        if path.startswith("/embed/"):
            self.page.wait_for_selector("[data-embed]")
        else:
            self.page.wait_for_function("() => window.plyrd && window.plyrd.player")
        self.settle()
        return response

    def settle(self) -> None:
        """Let the page's own requests and images finish (a late violation still counts)."""
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_function("() => [...document.images].every(i => i.complete)")
        self.page.wait_for_timeout(100)

    def search(self, text: str) -> None:
        page = self.page
        page.keyboard.press("Control+k")
        page.wait_for_function("() => document.querySelector('dialog.search-modal').open")
        page.fill(".search-modal input", text)
        page.wait_for_function("() => document.querySelectorAll('.search-modal [role=option]').length > 0")
        self.settle()

    def close(self) -> None:
        leave(self.page)
        self.context.close()

    def clean(self) -> None:
        assert self.violations == [], self.violations
        assert self.errors == [], self.errors


def leave(page: Any) -> None:
    """Leave the page and let what it sends on leaving (the queue's position) arrive before the browser goes away."""
    page.goto("about:blank")
    page.wait_for_timeout(500)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("csp-audio")
    return make_audio(d / "tide.mp3", "mp3", seconds=6, kind="music", frequency=262, cover=jpeg_bytes(300, 300))


@pytest.fixture(scope="module")
def s(browser, node, pds) -> Iterator[Session]:
    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    session = Session(node, context.new_page(), pds.create_account("cspartist"))
    yield session
    context.close()


def paths(s: Session) -> dict[str, str]:
    h = s.account.handle
    return {
        "home": "/", "track": f"/track/{s.ids['track']}", "artist": f"/u/{h}", "album": s.ids["album_path"],
        "tag": "/tag/dusk", "library": "/library", "playlist": f"/playlist/{s.ids['playlist']}", "upload": "/upload",
        "portal": "/portal", "settings": "/settings", "login": "/login", "error": MISSING,
    }


def embeds(s: Session) -> dict[str, str]:
    return {
        "embed-track": f"/embed/track/{s.ids['track']}",
        "embed-playlist": f"/embed/playlist/{s.ids['playlist']}",
        "embed-album": f"/embed/album/{s.account.handle}/{s.ids['album_slug']}",
    }


def test_sign_in_and_make_one_of_everything(s: Session, audio: Path) -> None:
    s.sign_in("/upload")
    s.ids["track"] = upload(s, audio, title="harbour lights", tags="dusk", description="waves")
    album = s.api("POST", "/albums/", {"title": "night tides"})["body"]
    assert s.api("PUT", f"/albums/{album['id']}/tracks", {"track_ids": [s.ids["track"]]})["status"] == 200
    s.ids["album_slug"] = album["slug"]  # type: ignore[assignment]
    s.ids["album_path"] = f"/u/{s.account.handle}/album/{album['slug']}"  # type: ignore[assignment]
    playlist = s.api("POST", "/lists/playlists", {"name": "pier mix"})["body"]
    assert s.api("POST", f"/lists/playlists/{playlist['id']}/tracks", {"track_id": s.ids["track"]})["status"] == 200
    s.ids["playlist"] = playlist["id"]
    prefs = s.api("POST", "/preferences/", {"theme": "dark", "accent_color": ACCENT, "allow_comments": True})
    assert prefs["status"] == 200, prefs
    comment = s.api("POST", f"/tracks/{s.ids['track']}/comments", {"text": "lovely", "timestamp_ms": 1000})
    assert comment["status"] in (200, 201), comment
    token = s.api("POST", "/auth/app-password", {"handle": s.account.handle, "app_password": s.account.password,
                                                 "token_name": "ci script"})
    assert token["status"] == 201, token
    for path in [*paths(s).values(), *embeds(s).values()]:  # every page exists before the policy is judged on it
        status = httpx.get(s.node.url + path, headers={"Accept": "text/html"}).status_code
        assert status == (404 if path == MISSING else 200) or status == 303, (path, status)


def test_headers(s: Session) -> None:
    for name, path in [*paths(s).items(), *embeds(s).items()]:
        r = httpx.get(s.node.url + path, headers={"Accept": "text/html"})
        assert r.headers["content-type"].startswith("text/html"), (name, r.headers)
        csp = r.headers.get("content-security-policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
        assert directives.get("script-src") == ["'self'"], (name, csp)
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, (name, csp)
        assert directives.get("object-src") == ["'none'"] and directives.get("base-uri") == ["'none'"], (name, csp)
        assert directives.get("default-src") == ["'self'"] and directives.get("form-action") == ["'self'"], (name, csp)
        if name.startswith("embed-"):
            assert "frame-ancestors" not in directives, (name, csp)  # other sites frame embeds: that is their job
            assert "x-frame-options" not in r.headers, name
        else:
            assert directives.get("frame-ancestors") == ["'none'"], (name, csp)
            assert r.headers.get("x-frame-options") == "DENY", name
        assert r.headers.get("x-content-type-options") == "nosniff", name
        assert r.headers.get("referrer-policy") == "strict-origin-when-cross-origin", name
    # Everything else too: JSON, files, a redirect.
    for path in ["/health", f"/tracks/{s.ids['track']}", "/static/js/app.js", "/static/icons.svg", "/library"]:
        r = httpx.get(s.node.url + path)
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert r.headers.get("referrer-policy") == "strict-origin-when-cross-origin", path
        assert "content-security-policy" not in r.headers or r.headers["content-type"].startswith("text/html"), path


def test_every_page_signed_out_keeps_to_the_policy(s: Session, browser) -> None:
    w = Watch(browser, s.node)
    try:
        for name, path in [*paths(s).items(), *embeds(s).items()]:
            response = w.visit(path)
            assert response.status == (404 if name == "error" else 200), (name, response.status)
            assert response.headers.get("content-security-policy"), name
        w.page.click("[data-e=toggle]")  # the last embed plays: audio under media-src
        w.page.wait_for_function("() => document.querySelector('audio').currentTime > 0.3")
        w.visit("/")
        w.search("harbour")
        assert "harbour lights" in w.page.text_content(".search-modal [role=listbox]")
        w.clean()
    finally:
        w.close()


def test_every_page_signed_in_keeps_to_the_policy(s: Session, browser) -> None:
    w = Watch(browser, s.node, storage_state=s.page.context.storage_state())
    try:
        for name, path in [*paths(s).items(), *embeds(s).items()]:
            w.visit(path)
            if name == "settings":
                w.page.wait_for_function("() => document.querySelector('[data-tokens]').textContent"
                                         ".includes('ci script')")
        page = w.page
        w.visit(f"/track/{s.ids['track']}")
        page.click("#main [data-action=play]")  # the player, the waveform, Web Audio
        page.wait_for_function("() => document.getElementById('audio').currentTime > 0.3")
        page.keyboard.press("q")  # the queue panel's rows
        page.wait_for_function("() => document.querySelectorAll('#queue-panel li').length === 1")
        page.keyboard.press("Escape")
        page.click("#main [data-comments] .stamp")  # a comment seeks
        page.fill("#comment-text", "from the browser")
        page.click("[data-comment-form] button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#main [data-comments] li').length === 2")
        page.click("header .brand")
        page.wait_for_function("() => location.pathname === '/' && !document.getElementById('main')"
                               ".hasAttribute('aria-busy')")
        page.click(f"#main li[data-track-id='{s.ids['track']}'] [data-track-menu]")  # the track menu
        page.wait_for_function("() => !document.getElementById('track-menu').hidden")
        page.keyboard.press("Escape")
        w.search("harbour")
        page.keyboard.press("Escape")
        page.click("#player [data-player=toggle]")
        w.settle()
        w.clean()
    finally:
        w.close()


def test_the_theme_applies_before_the_first_paint(s: Session, browser) -> None:
    """boot.js is a blocking script in <head>: by the time the body starts, <html> carries this browser's theme and
    accent, or else the account's accent from the server."""
    state = s.page.context.storage_state()
    w = Watch(browser, s.node, storage_state=state)  # signed in, nothing chosen in this browser
    try:
        w.visit("/settings")
        assert w.page.evaluate("window.__atBody") == {"theme": "dark", "accent": ACCENT}  # the account's
        saved = "() => document.querySelector('[data-status]').textContent === 'saved'"
        w.page.check("[data-theme-choice] input[value=light]")
        w.page.wait_for_function(saved)
        w.page.evaluate("document.querySelector('[data-status]').textContent = ''")
        w.page.fill("#main [data-accent]", "#2a9d8f")
        w.page.dispatch_event("#main [data-accent]", "change")
        w.page.wait_for_function(saved)
        assert w.page.evaluate("localStorage.getItem('plyrd.accent')") == "#2a9d8f"
        w.page.reload()
        w.page.wait_for_function("() => window.plyrd && window.plyrd.player")
        assert w.page.evaluate("window.__atBody") == {"theme": "light", "accent": "#2a9d8f"}
        bg = w.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(250, 250, 249)", bg
        # the chosen teal, darkened just enough for text on the light page (base.css), not the colour as picked
        accent = w.page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--accent')")
        assert accent.startswith("oklch(0.42 "), accent
        w.clean()
    finally:
        w.close()
    s.api("POST", "/preferences/", {"theme": "dark", "accent_color": ACCENT})


def test_signing_in_with_a_handle_reaches_the_pds(s: Session, browser, pds) -> None:
    """/auth/start redirects to the PDS. Submitted as a form, that redirect would break form-action 'self' (Chromium
    checks a form's redirects too); the page follows it as a navigation, which the policy does not govern."""
    w = Watch(browser, s.node)
    try:
        w.visit("/login")
        w.page.fill("#handle", s.account.handle)
        w.page.click("form[action='/auth/start'] button[type=submit]")
        w.page.wait_for_url(f"{pds.pds_url}/oauth/authorize?**")
        assert [v for v in w.violations if v["page"].startswith(s.node.url)] == []
    finally:
        w.close()


def test_signing_in_with_a_handle_works_without_javascript(s: Session, browser, pds) -> None:
    """The plain form, submitted: /auth/start answers browsers with a page that moves on to the PDS by itself
    (a redirect after a form submission would be refused by form-action 'self')."""
    w = Watch(browser, s.node, java_script_enabled=False)
    try:
        w.page.goto(s.node.url + "/login")
        w.page.fill("#handle", s.account.handle)
        w.page.click("form[action='/auth/start'] button[type=submit]")
        w.page.wait_for_url(f"{pds.pds_url}/oauth/authorize?**")
    finally:
        w.close()


@pytest.fixture
def elsewhere() -> Iterator[Any]:
    """Another site: a server of its own on loopback (http://localhost:<port>, another origin than the node's), whose
    one page the test writes. A real server, not a routed answer: Chromium refuses a page of unknown address to
    frame loopback addresses, which would hide what frame-ancestors does."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.pages = pages  # type: ignore[attr-defined]
    server.url = f"http://localhost:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    thread.join()


def test_pages_refuse_to_be_framed_and_embeds_do_not(s: Session, browser, elsewhere) -> None:
    track, embed = f"{s.node.url}/track/{s.ids['track']}", f"{s.node.url}/embed/track/{s.ids['track']}"
    elsewhere.pages["/"] = (f'<!doctype html><title>elsewhere</title><iframe name="page" src="{track}"></iframe>'
                            f'<iframe name="embed" src="{embed}"></iframe>').encode()
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    refusals: list[str] = []
    page.on("console", lambda m: "frame-ancestors" in m.text and refusals.append(m.text))
    try:
        page.goto(elsewhere.url + "/")
        page.frame(name="embed").wait_for_selector("[data-embed]")  # an embed plays on another site
        page.wait_for_function("() => true")
        page.wait_for_timeout(300)
        assert page.frame(name="page").url != track  # a page does not: Chromium shows its error page instead
        assert len(refusals) == 1 and "frame-ancestors 'none'" in refusals[0], refusals
    finally:
        context.close()


def test_a_sandboxed_iframe_cannot_sign_a_visitor_in(s: Session, browser, pds, elsewhere) -> None:
    """Login CSRF: another site frames a sandboxed (opaque-origin, `Origin: null`) iframe whose forms auto-submit the
    attacker's app password, as JSON disguised as text/plain and as the /login form. The node refuses both."""
    attacker = pds.create_account("attacker")
    name = f'{{"handle":"{attacker.handle}","app_password":"{attacker.password}","x":"'
    forged = ("<form id=j method=post enctype=text/plain action='{node}/auth/app-password'>"
              "<input name='{name}' value='\"}}'></form>"
              "<form id=f method=post target=_blank action='{node}/login'><input name=handle value='{handle}'>"
              "<input name=app_password value='{password}'></form>"
              "<script>document.getElementById('f').submit(); document.getElementById('j').submit()</script>")
    srcdoc = forged.format(node=s.node.url, name=html.escape(name), handle=attacker.handle,
                           password=attacker.password)
    elsewhere.pages["/"] = (f"<!doctype html><title>elsewhere</title><iframe sandbox='allow-forms allow-scripts "
                            f"allow-popups' srcdoc=\"{html.escape(srcdoc)}\"></iframe>").encode()
    context = browser.new_context(viewport=DESKTOP)
    answers: dict[str, int] = {}
    context.on("response", lambda r: r.request.method == "POST" and answers.update({urlsplit(r.url).path: r.status}))
    try:
        context.new_page().goto(elsewhere.url + "/")
        deadline = time.monotonic() + 30  # two navigations from a sandboxed frame: slow on a loaded 2-core machine
        while len(answers) < 2 and time.monotonic() < deadline:
            context.pages[0].wait_for_timeout(100)
        assert answers == {"/auth/app-password": 403, "/login": 403}, answers
        assert not [c for c in context.cookies(s.node.url) if c["name"] == "session_id"]
    finally:
        context.close()


# ---- hostile values reaching the DOM ---------------------------------------------------------------------------


def test_hostile_values_stay_text(s: Session, browser) -> None:
    # Straight into the database, past the API's validation, on purpose: this tests the DOM layer.
    with closing(sqlite3.connect(s.node.data / "plyrd.db", timeout=10)) as db:
        db.execute("UPDATE users SET avatar_url = ?, display_name = ? WHERE did = ?",
                   (HOSTILE_AVATAR, HOSTILE_NAME, s.account.did))
        db.execute("UPDATE tracks SET title = ? WHERE id = ?", (HOSTILE_TITLE, s.ids["track"]))
        db.commit()
    assert s.api("POST", f"/tracks/{s.ids['track']}/comments",
                 {"text": HOSTILE_COMMENT, "timestamp_ms": 2000})["status"] in (200, 201)
    assert s.api("POST", "/auth/app-password", {"handle": s.account.handle, "app_password": s.account.password,
                                                "token_name": HOSTILE_TOKEN})["status"] == 201
    s.wait("""async () => { const r = await fetch('/search/?q=onerror&limit=5').then(r => r.json());
        return r.groups.tracks?.length && r.groups.artists?.length; }""", timeout=15_000)  # indexed

    # The DOM layer alone: the policy bypassed, so nothing but the way the modules build DOM stands in the way.
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True, storage_state=s.page.context.storage_state())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(s.node.url + "/")
        page.wait_for_function("() => window.plyrd && window.plyrd.player")
        page.keyboard.press("Control+k")
        page.fill(".search-modal input", "onerror")
        page.wait_for_function("() => document.querySelectorAll('.search-modal [role=group]').length >= 2")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.wait_for_timeout(300)
        found = page.evaluate("""() => ({
            xss: window.__xss,
            onerror: document.querySelectorAll('[onerror]').length,
            tracks: [...document.querySelectorAll('.search-modal [aria-label=tracks] [role=option] b')]
              .map(b => b.textContent),
            artists: [...document.querySelectorAll('.search-modal [aria-label=artists] [role=option] b')]
              .map(b => b.textContent),
            avatars: [...document.querySelectorAll('.search-modal [aria-label=artists] img')]
              .map(i => i.getAttribute('src')),
        })""")
        assert found["xss"] is None and found["onerror"] == 0, found
        assert found["tracks"] == [HOSTILE_TITLE] and found["artists"] == [HOSTILE_NAME], found
        assert found["avatars"] == [], found  # not an https URL a browser would load as written: left off

        page.keyboard.press("Enter")  # the track: its page, then the player bar, the queue, the comments
        page.wait_for_function("id => location.pathname === `/track/${id}`", arg=s.ids["track"])
        page.click("#main [data-action=play]")
        page.wait_for_function("() => document.getElementById('audio').currentTime > 0.2")
        page.keyboard.press("q")
        page.wait_for_function("() => document.querySelectorAll('#queue-panel li').length === 1")
        page.fill("#comment-text", HOSTILE_COMMENT)
        page.click("[data-comment-form] button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#main [data-comments] li').length === 4")
        page.wait_for_timeout(300)
        shown = page.evaluate("""() => ({
            xss: window.__xss,
            onerror: document.querySelectorAll('[onerror]').length,
            player: document.querySelector('#player [data-player=title]').textContent,
            queue: document.querySelector('#queue-panel li .t-title').textContent,
            comments: [...document.querySelectorAll('#main [data-comments] .text')].map(e => e.textContent),
        })""")
        assert shown["xss"] is None and shown["onerror"] == 0, shown
        assert shown["player"] == HOSTILE_TITLE and shown["queue"] == HOSTILE_TITLE, shown
        assert shown["comments"].count(HOSTILE_COMMENT) == 2, shown  # the server's copy and the one just posted

        page.click("#player [data-player=toggle]")
        page.click("header a[href='/settings']")
        page.wait_for_function("t => document.querySelector('[data-tokens]')?.textContent.includes(t)",
                               arg=HOSTILE_TOKEN)
        assert page.evaluate("window.__xss") is None
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
        for path in [f"/u/{s.account.handle}", "/portal", s.ids["album_path"], f"/embed/track/{s.ids['track']}"]:
            page.goto(s.node.url + path)  # the server's templates, for completeness
            page.wait_for_load_state("networkidle")
            assert page.evaluate("[window.__xss, document.querySelectorAll('[onerror]').length]") == [None, 0], path
        assert errors == []
    finally:
        leave(page)
        context.close()

    # And with the policy on, the same search and pages raise no violation.
    w = Watch(browser, s.node, storage_state=s.page.context.storage_state())
    try:
        w.visit("/")
        w.search("onerror")
        w.visit(f"/track/{s.ids['track']}")
        w.visit("/settings")
        w.clean()
    finally:
        w.close()
