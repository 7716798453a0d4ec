"""What the browser test modules share: window sizes, where screenshots go, the one-tab Session a listening
session happens in, and uploading through the upload page. Browser modules import these from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ROOT, ServedNode

SHOTS = ROOT / "tests" / "output" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


class Session:
    """The one tab everything happens in, plus what the steps learn along the way."""

    def __init__(self, node: ServedNode, page: Any, account: Any) -> None:
        self.node = node
        self.page = page
        self.account = account
        self.errors: list[str] = []
        self.ids: dict[str, int] = {}
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def time(self) -> float:
        return self.js("document.getElementById('audio').currentTime")

    def wait(self, expr: str, arg: Any = None, timeout: float = 10_000) -> None:
        self.page.wait_for_function(expr, arg=arg, timeout=timeout)

    def nav(self, selector: str, path: str) -> None:
        """Click a link and wait for the client-side navigation to land (main swapped, URL changed)."""
        self.page.click(selector)
        self.wait("p => location.pathname + location.search === p && !document.getElementById('main')"
                  ".hasAttribute('aria-busy')", path)

    def sign_in(self, next_path: str = "/upload") -> None:
        """Sign in through the login page's app-password form and wait to land on `next_path`."""
        page = self.page
        page.goto(f"{self.node.url}/login?next={next_path}")
        page.click("text=use an app password instead")
        page.fill("#ap-handle", self.account.handle)
        page.fill("#ap-password", self.account.password)
        page.click("[data-app-password] button[type=submit]")
        self.wait("p => location.pathname === p", next_path)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON API call from the page itself, with its cookie and CSRF header, as the app makes them."""
        return self.js("""async ([method, path, body]) => {
            const csrf = document.cookie.split('; ').find(c => c.startsWith('plyrd_csrf=')).slice(11);
            const r = await fetch(path, {method, headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                                         body: body === null ? undefined : JSON.stringify(body)});
            return {status: r.status, body: await r.json().catch(() => null)};
        }""", [method, path, body])


def full_shot(page: Any, path: Path) -> None:
    """The whole page as a reader scrolled to its end sees it: the window made as tall as the page, so the fixed
    player bar sits at the bottom (Playwright's full_page capture leaves it where the window's bottom was, over the
    middle of a long page)."""
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    page.wait_for_timeout(60)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def upload(s: Session, path: Path, **fields: str) -> int:
    page = s.page
    page.set_input_files("#file", str(path))
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    # Record every progress state the page shows, to prove both bars moved.
    s.js("""() => { window.__seen = [];
        const box = document.querySelector('[data-progress]');
        new MutationObserver(() => window.__seen.push([box.querySelector('[data-phase]').textContent,
            box.querySelector('[data-bytes]').value, box.querySelector('[data-processing]').value]))
          .observe(box, {subtree: true, childList: true, characterData: true, attributes: true}); }""")
    page.click("[data-upload] button[type=submit]")
    s.wait("() => !document.querySelector('[data-done]').hidden || "
           "document.querySelector('[data-progress] [data-error]').textContent", timeout=60_000)
    assert page.text_content("[data-progress] [data-error]") == ""
    seen = s.js("window.__seen")
    phases = [p for p, _, _ in seen]
    assert "sending" in phases and "ready" in phases, phases
    assert max(b for _, b, _ in seen) == 100 and seen[-1][2] == 100
    href = page.get_attribute("[data-track-link]", "href")
    return int(href.rsplit("/", 1)[1])
