"""The music folder while the node runs: the start-up scan, the watcher (a file copied in appears as a track within
seconds, a removed one disappears, a folder that vanishes and comes back is watched again), the background analysis
(peaks and loudness filled in after the scan) and the admin routes and page (admins only).

A real node process with `library.folders` set through its environment, files made with PyAV, the real PDS for
sign-in; the node's database is read directly for what the scans wrote. The debounce and the memory bound of
plyrd.library.watch.FolderWatcher are checked in-process against a real folder and real inotify events.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from audio_samples import jpeg_bytes, make_audio
from browsing import PHONE, SHOTS, Session
from conftest import ServedNode, node_env, start_node
from helpers import Person, anonymous, db, sign_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plyrd.library.watch import FolderWatcher

WATCH_SECONDS = 10.0  # a change must show within this (debounce 1 s quiet, 10 s at most, plus the scan)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    album = root / "Band" / "First"
    album.mkdir(parents=True)
    for n in (1, 2):
        make_audio(album / f"0{n} song.flac", "flac", seconds=2, kind="music", frequency=300.0 * n,
                   tags={"title": f"First {n}", "artist": "Band", "album": "First", "track": str(n)})
    (album / "cover.jpg").write_bytes(jpeg_bytes(64, 64))
    (root / "broken.mp3").write_bytes(b"this is not audio at all" * 100)
    return root


@pytest.fixture(scope="module")
def accounts(pds: Any) -> dict[str, Any]:
    return {"admin": pds.create_account("libadmin"), "other": pds.create_account("libother")}


@pytest.fixture(scope="module")
def node(pds: Any, music: Path, accounts: dict[str, Any],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    env = node_env(pds, PLYRD_LIBRARY_FOLDERS=str(music), PLYRD_LIBRARY_WATCH="true",
                   PLYRD_LIBRARY_MOVE_GRACE_SECONDS="1",
                   PLYRD_AUTH_ADMINS=accounts["admin"].handle)
    served = start_node([], cwd=tmp_path_factory.mktemp("libwatch"), env=env)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def admin(node: ServedNode, accounts: dict[str, Any]) -> Person:
    return Person(sign_in(node.url, accounts["admin"]), accounts["admin"])


@pytest.fixture(scope="module")
def other(node: ServedNode, accounts: dict[str, Any]) -> Person:
    return Person(sign_in(node.url, accounts["other"]), accounts["other"])


def library_titles(node: ServedNode) -> set[str]:
    return {r[0] for r in db(node, "SELECT title FROM tracks WHERE source = 'library'")}


def scans(node: ServedNode, trigger: str) -> list[tuple[Any, ...]]:
    return db(node, "SELECT id, state, seen, added, removed FROM library_scans WHERE trigger = ? ORDER BY id",
              (trigger,))


def test_startup_scan_after_serving(node: ServedNode) -> None:
    done = wait_until(lambda: [s for s in scans(node, "startup") if s[1] == "done"], 30, "the start-up scan")
    assert len(done) == 1
    assert {"First 1", "First 2"} <= library_titles(node)
    broken = db(node, "SELECT rel_path, error FROM library_files WHERE track_id IS NULL")
    assert [r[0] for r in broken] == ["broken.mp3"] and broken[0][1]


def test_file_copied_in_appears(node: ServedNode, music: Path, tmp_path: Path) -> None:
    wait_until(lambda: scans(node, "startup"), 30, "the start-up scan")
    made = make_audio(tmp_path / "new.mp3", "mp3", seconds=2, kind="music",
                      tags={"title": "Arrived Later", "artist": "Band", "album": "Second", "track": "1"})
    target = music / "Band" / "Second"
    target.mkdir()
    started = time.monotonic()
    shutil.copy(made, target / "01 arrived.mp3")
    wait_until(lambda: "Arrived Later" in library_titles(node), WATCH_SECONDS, "the copied file as a track")
    assert time.monotonic() - started < WATCH_SECONDS
    assert scans(node, "watch"), "found by the watcher, not a scheduled scan"


def test_removed_file_disappears(node: ServedNode, music: Path) -> None:
    wait_until(lambda: "First 2" in library_titles(node), 30, "the start-up scan")
    (music / "Band" / "First" / "02 song.flac").unlink()
    wait_until(lambda: "First 2" not in library_titles(node), WATCH_SECONDS, "the removed file's track to go")
    assert "First 1" in library_titles(node)


def test_burst_of_files_is_one_scan(node: ServedNode, music: Path, tmp_path: Path) -> None:
    wait_until(lambda: scans(node, "startup"), 30, "the start-up scan")
    made = [make_audio(tmp_path / f"{i:02d}.ogg", "ogg-vorbis", seconds=1, frequency=200.0 + 40 * i,
                       tags={"title": f"Burst {i}"}) for i in range(12)]
    before = len(scans(node, "watch"))
    burst = music / "Burst"
    burst.mkdir()
    for src in made:
        shutil.copy(src, burst / src.name)
    wait_until(lambda: {f"Burst {i}" for i in range(12)} <= library_titles(node), WATCH_SECONDS,
               "the burst's tracks")
    assert len(scans(node, "watch")) - before <= 2  # one scan for the burst (two if it straddled a quiet second)


def test_admin_routes(node: ServedNode, admin: Person, other: Person) -> None:
    wait_until(lambda: [s for s in scans(node, "startup") if s[1] == "done"], 30, "the start-up scan")
    r = admin.get("/library/")
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["watch"]["enabled"] is True
    assert status["analysis"].keys() >= {"pending", "analysed", "failed"}

    r = admin.get("/library/errors", params={"limit": 10})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [e for e in page["items"] if "broken.mp3" in str(e)], page
    assert admin.get("/library/errors", params={"limit": 0}).status_code == 400
    assert admin.get("/library/errors", params={"offset": 5}).json()["items"] == []

    before = len(scans(node, "admin"))
    r = admin.post("/library/scan")
    assert r.status_code == 202, r.text
    wait_until(lambda: len([s for s in scans(node, "admin") if s[1] == "done"]) > before, 30, "the admin's scan")

    for path in ("/library/", "/library/errors"):
        assert other.get(path).status_code == 403
        assert anonymous(node).get(path).status_code == 401
    assert other.post("/library/scan").status_code == 403
    assert anonymous(node).post("/library/scan").status_code == 401
    assert len([s for s in scans(node, "admin")]) == before + 1  # the refused requests started nothing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
       path=st.sampled_from(["/library/", "/library/errors", "/library/scan", "/settings/library"]),
       query=st.dictionaries(st.sampled_from(["limit", "offset", "trigger", "only", "x"]),
                             st.one_of(st.integers(-2**70, 2**70).map(str), st.text(max_size=30)), max_size=3),
       body=st.one_of(st.none(), st.binary(max_size=64), st.just(b'{"only": ["/etc"]}')))
def test_admin_routes_take_any_input(node: ServedNode, admin: Person, method: str, path: str,
                                     query: dict[str, str], body: bytes | None) -> None:
    """The routes fuzzed as an admin (the route fuzz of tests/test_fuzz_routes.py has no admin): never a 5xx."""
    r = admin.me.http.request(method, path, params=query, content=body,
                              headers={"X-CSRF-Token": admin.me.csrf, "Content-Type": "application/json"})
    assert r.status_code < 500, (method, path, query, body, r.text)


def test_admin_page(node: ServedNode, admin: Person, other: Person) -> None:
    r = admin.get("/settings/library")
    assert r.status_code == 200 and 'data-page="library-admin"' in r.text
    assert other.get("/settings/library").status_code == 403
    r = anonymous(node).get("/settings/library")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # Settings links the page for admins only.
    assert 'href="/settings/library"' in admin.get("/settings").text
    assert 'href="/settings/library"' not in other.get("/settings").text


def test_admin_page_in_a_browser(node: ServedNode, browser: Any, accounts: dict[str, Any]) -> None:
    """The page under the node's Content-Security-Policy, with no script error: it shows the last scan and its
    counts, and "scan now" (keyboard: focus and Enter) starts a scan whose result the page then shows; at phone
    width nothing overflows sideways."""
    wait_until(lambda: [s for s in scans(node, "startup") if s[1] == "done"], 30, "the start-up scan")
    context = browser.new_context(viewport=PHONE)
    violations: list[Any] = []
    errors: list[str] = []
    context.expose_function("__cspViolation", lambda v: violations.append(v))
    context.add_init_script("document.addEventListener('securitypolicyviolation', "
                            "e => window.__cspViolation(e.effectiveDirective + ' ' + e.blockedURI))")
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        session = Session(node, page, accounts["admin"])
        session.sign_in("/settings/library")
        page.wait_for_function("() => document.querySelector('[data-last]').textContent.includes('last scan')")
        assert page.text_content("[data-errors]").count("broken.mp3") == 1
        assert "tracks" in page.text_content("[data-counts]")
        before = len(scans(node, "admin"))
        page.focus("[data-scan]")
        page.keyboard.press("Enter")
        wait_until(lambda: len([s for s in scans(node, "admin") if s[1] == "done"]) > before, 30, "the scan")
        page.wait_for_function("() => document.querySelector('[data-last]').textContent.includes('(admin')",
                               timeout=20_000)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "library-admin-phone.png"), full_page=True)
        assert violations == [] and errors == [], (violations, errors)
    finally:
        context.close()


def test_peaks_and_loudness_in_the_background(node: ServedNode) -> None:
    wait_until(lambda: [s for s in scans(node, "startup") if s[1] == "done"], 30, "the start-up scan")
    wait_until(lambda: not db(node, "SELECT id FROM tracks WHERE source = 'library' AND peaks IS NULL"), 30,
               "every library track's waveform")
    rows = db(node, "SELECT title, json_array_length(peaks), loudness_lufs, track_gain_db FROM tracks "
                    "WHERE source = 'library' AND title = 'First 1'")
    assert rows and rows[0][1] == 1000 and rows[0][2] is not None and rows[0][3] is not None


def test_folder_vanishes_and_comes_back(node: ServedNode, music: Path, tmp_path: Path) -> None:
    """Last: it replaces the folder. While it is gone its tracks stay (an unmounted disk is not an empty one); a new
    folder in its place is watched again and scanned whole."""
    wait_until(lambda: "First 1" in library_titles(node), 30, "the start-up scan")
    kept = tmp_path / "kept"
    shutil.move(str(music), kept)
    time.sleep(3)
    assert "First 1" in library_titles(node)
    music.mkdir()
    shutil.copytree(kept / "Band", music / "Band")
    make_audio(music / "back.flac", "flac", seconds=1, tags={"title": "Came Back"})
    wait_until(lambda: "Came Back" in library_titles(node), 20, "a file in the folder that came back")
    make_audio(tmp_path / "after.flac", "flac", seconds=1, tags={"title": "After Return"})
    shutil.copy(tmp_path / "after.flac", music / "after.flac")
    wait_until(lambda: "After Return" in library_titles(node), WATCH_SECONDS, "the watcher on the new folder")
    assert "First 1" in library_titles(node)


# ---- the watcher's own contract, in-process ----------------------------------------------------------------------


def _watch(root: Path, act: Any, *, settle: float, **kw: Any) -> list[list[Path]]:
    """Run a FolderWatcher on `root` while `act` changes it; the batches it asked to scan. In a thread of its own:
    this module's browser (Playwright's sync API) keeps an event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _watching(root, act, settle=settle, **kw)).result()


async def _watching(root: Path, act: Any, *, settle: float, **kw: Any) -> list[list[Path]]:
    batches: list[list[Path]] = []

    async def folders() -> list[Path]:
        return [root]

    async def scan(paths: list[Path]) -> None:
        batches.append(paths)

    watcher = FolderWatcher(folders, scan, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.5)  # the inotify watch is armed
    await asyncio.to_thread(act)
    await asyncio.sleep(settle)
    stop.set()
    await asyncio.wait_for(task, 10)
    return batches


def test_watcher_debounces_a_burst(tmp_path: Path) -> None:
    def burst() -> None:
        for i in range(40):
            (tmp_path / f"{i}.mp3").write_bytes(b"x" * 1000)
            time.sleep(0.01)

    batches = _watch(tmp_path, burst, settle=2.5, quiet=0.5, max_delay=5)
    assert len(batches) == 1
    assert set(batches[0]) == {tmp_path / f"{i}.mp3" for i in range(40)}


def test_watcher_ignores_partial_and_hidden_files(tmp_path: Path) -> None:
    def partial_then_rename() -> None:
        (tmp_path / ".sync.tmp").write_bytes(b"x")
        (tmp_path / "song.mp3.part").write_bytes(b"x")
        (tmp_path / "song.mp3.part").rename(tmp_path / "song.mp3")

    batches = _watch(tmp_path, partial_then_rename, settle=2.0, quiet=0.3, max_delay=5)
    assert batches == [[tmp_path / "song.mp3"]]


def test_watcher_memory_is_bounded(tmp_path: Path) -> None:
    def many() -> None:
        for i in range(60):
            (tmp_path / f"{i}.flac").write_bytes(b"x")

    batches = _watch(tmp_path, many, settle=2.0, quiet=0.3, max_delay=5, max_pending=20)
    assert batches == [[tmp_path]]  # past max_pending the paths collapse into their folder


def test_watcher_rearms_on_a_folder_that_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()

    def replace_folder() -> None:
        shutil.rmtree(root)
        time.sleep(1.0)  # gone for a while: nothing is scanned for it meanwhile
        root.mkdir()
        time.sleep(1.5)  # the watcher notices (recheck 0.3 s) and re-arms on the new directory
        (root / "late.mp3").write_bytes(b"x")

    batches = _watch(root, replace_folder, settle=2.0, quiet=0.3, max_delay=5, recheck=0.3)
    assert [root] in batches  # scanned whole once it is back: what changed while it was away was not seen
    assert batches[-1] == [root / "late.mp3"]  # and watched again
