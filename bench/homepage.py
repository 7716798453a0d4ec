"""First load of the home page with 1,000 tracks in Debian's Chromium on loopback.

Goal (issue 7): under 150 KB of HTML + JS + CSS before images, and no layout shift when the player bar mounts.
Builds a 1,000-track catalog with bench/catalog.py's builder, serves it from a node process, then loads / in a fresh
browser context (cold cache) five times and prints, medians: bytes of HTML, JS, CSS (and images, separately), time to
first byte, DOMContentLoaded, load, and the cumulative layout shift the page reports (PerformanceObserver).

    .venv/bin/python bench/homepage.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import catalog as builder

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio"]
GOAL_KB = 150

CLS_PROBE = """() => { window.__cls = 0; window.__clsParse = 0; window.__shifted = [];
  const name = (n) => !n ? '?' : n.nodeType !== 1 ? n.nodeName
    : n.tagName.toLowerCase() + (n.id ? '#' + n.id : '') + (n.className && typeof n.className === 'string'
      ? '.' + n.className.trim().split(/\\s+/).join('.') : '');
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) {
      // Before DOMContentLoaded the parser is still painting rows as they arrive; the player bar mounts (app.js,
      // a module script) only after it, so the shifts after it are the ones the goal is about.
      const parsing = !performance.getEntriesByType('navigation')[0]?.domContentLoadedEventStart;
      if (parsing) window.__clsParse += e.value; else window.__cls += e.value;
      for (const s of e.sources || []) {
        const [a, b] = [s.previousRect, s.currentRect];
        window.__shifted.push(name(s.node) + ` ${Math.round(b.x - a.x)},${Math.round(b.y - a.y)}px`
          + ` at ${Math.round(e.startTime)} ms${parsing ? ' while parsing' : ''} (${e.value.toFixed(4)})`);
      }
    }
  }).observe({type: 'layout-shift', buffered: true}); }"""


def one_load(browser: Any, url: str) -> dict[str, float]:
    """One cold load (a fresh context: empty cache). Sizes come from the browser's own resource timing, so module
    imports fetched late are counted too."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.add_init_script(f"({CLS_PROBE})()")
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1500)  # the player bar mounts and the module pages settle
    found = page.evaluate("""() => {
        const n = performance.getEntriesByType('navigation')[0];
        const kind = (u) => /\\.js(\\?|$)/.test(u) ? 'js' : /\\.css(\\?|$)/.test(u) ? 'css'
            : /\\/images\\/|\\.(png|jpe?g|webp|gif)(\\?|$)/.test(u) ? 'images' : 'other';
        const sizes = {html: n.encodedBodySize, js: 0, css: 0, images: 0, other: 0, plain: n.decodedBodySize};
        for (const r of performance.getEntriesByType('resource')) {
          sizes[kind(r.name)] += r.encodedBodySize;
          if (kind(r.name) !== 'images') sizes.plain += r.decodedBodySize;
        }
        return {sizes, ttfb: n.responseStart - n.requestStart, dom: n.domContentLoadedEventEnd,
                load: n.loadEventEnd, cls: window.__cls, clsParse: window.__clsParse, shifted: window.__shifted};
    }""")
    context.close()
    return {"ttfb": found["ttfb"], "dom": found["dom"], "load": found["load"], "cls": found["cls"],
            "cls_parse": found["clsParse"],
            "shifted": found["shifted"], **{k: float(v) for k, v in found["sizes"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    cli = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args = argparse.Namespace(tracks=1_000, plays=20_000, users=40, likes=2_000, seed=1, clients=1)
    with tempfile.TemporaryDirectory(prefix="plyrd-home-") as tmp:
        data = Path(tmp) / "data"
        builder.prepare(args, data)
        port = builder.free_port()
        server = builder.start_server(data, port, Path(tmp) / "node.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                one_load(browser, f"http://127.0.0.1:{port}/")  # warm the node, not the browser (new contexts)
                runs = [one_load(browser, f"http://127.0.0.1:{port}/") for _ in range(cli.runs)]
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "shifted"}
    # Everything but images counts (module imports and the icon sprite may be typed "other" by the browser).
    text_kb = (med["html"] + med["js"] + med["css"] + med["other"]) / 1024
    print(f"home page, 1,000 tracks, {cli.runs} cold loads in Chromium on loopback (medians)")
    print(f"  html {med['html'] / 1024:.1f} KB, js {med['js'] / 1024:.1f} KB, css {med['css'] / 1024:.1f} KB,"
          f" other {med['other'] / 1024:.1f} KB:"
          f" {text_kb:.1f} KB before images (goal < {GOAL_KB} KB: {'met' if text_kb < GOAL_KB else 'MISSED'});"
          f" images {med['images'] / 1024:.1f} KB")
    print(f"  (transferred gzip-compressed; {med['plain'] / 1024:.1f} KB uncompressed, also under the goal:"
          f" {'yes' if med['plain'] / 1024 < GOAL_KB else 'NO'})")
    print(f"  time to first byte {med['ttfb']:.1f} ms, DOMContentLoaded {med['dom']:.0f} ms, load {med['load']:.0f} ms")
    worst = max(r["cls"] for r in runs)
    print(f"  layout shift once the page is parsed and the player bar mounts: median {med['cls']:.4f}, worst"
          f" {worst:.4f} (goal: none: {'met' if worst == 0 else 'MISSED'})")
    print(f"  layout shift while the HTML is still arriving (rows painted half-parsed): median"
          f" {med['cls_parse']:.4f}, worst {max(r['cls_parse'] for r in runs):.4f}")
    shifted = sorted({s for r in runs for s in r["shifted"]})
    if shifted:
        print(f"  what moved: {', '.join(shifted)}")


if __name__ == "__main__":
    main()
