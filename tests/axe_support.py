"""axe-core (npm `axe-core`, the engine behind browsers' own accessibility audits) for the browser tests.

Installed on demand like the PDS harness's packages: `npm ci` in tests/axe when node_modules is missing or was
installed from another lockfile (a stamp holds the lockfile's hash). `audit(page)` injects axe.min.js into a
Playwright page, runs `axe.run()` and returns the serious and critical violations, one line each: rule id, impact,
the elements' selectors and the rule's help URL.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

AXE_DIR = Path(__file__).resolve().parent / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
STAMP = AXE_DIR / "node_modules" / ".plyrd-installed"
FAILING = ("serious", "critical")


def _wanted_stamp() -> str:
    return hashlib.sha256((AXE_DIR / "package-lock.json").read_bytes()).hexdigest() + "\n"


def ensure_axe() -> Path:
    """The path of axe.min.js, running `npm ci` in tests/axe first when needed (a second or so: one package)."""
    if AXE_JS.is_file() and STAMP.is_file() and STAMP.read_text() == _wanted_stamp():
        return AXE_JS
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"`npm` not found on PATH: the accessibility tests install axe-core into {AXE_DIR} with it "
                           "(Node.js 20+ and npm, as the PDS harness needs)")
    t0 = time.monotonic()
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR, capture_output=True, text=True)
    if done.returncode != 0 or not AXE_JS.is_file():
        raise RuntimeError(f"`npm ci` failed in {AXE_DIR} (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-2000:]}")
    STAMP.write_text(_wanted_stamp())
    print(f"axe_support: npm ci done in {time.monotonic() - t0:.1f} s")
    return AXE_JS


# WCAG 2.x A and AA plus axe's best practices: the rules Chromium's own audit runs.
RUN = """async (rules) => {
  const runOnly = rules ? {type: 'rule', values: rules}
    : {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']};
  const result = await axe.run(document, {resultTypes: ['violations'], runOnly});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.map(String).join(' '), impact: n.impact,
                              summary: (n.failureSummary || '').split('\\n').slice(1).join(' ').trim()}))}));
}"""


def audit(page: Any, rules: list[str] | None = None) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (all its WCAG A/AA and best-practice rules, or only `rules`),
    injecting axe once per document. The page's context must bypass CSP (the script is added inline)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(ensure_axe()))
    violations: list[dict[str, Any]] = page.evaluate(RUN, rules)
    return violations


def serious(violations: list[dict[str, Any]]) -> list[str]:
    """The serious and critical ones as readable lines: rule, impact, each element's selector, the help URL."""
    lines = []
    for v in violations:
        nodes = [n for n in v["nodes"] if (n["impact"] or v["impact"]) in FAILING]
        if not nodes:
            continue
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
        lines += [f"    {n['target']}: {n['summary'][:200]}" for n in nodes]
    return lines
