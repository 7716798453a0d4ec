"""The admin console (/admin...) on a real node with a real PDS: only admins see its pages; the users list gives
each uploader's storage (a file two of their tracks share counted once) and uploads; a failed job is listed and a
retry runs it again, audited; storage totals add up to the blobs table; the owner of a taken-down track sees why on
its page and in the portal; a suspended uploader's upload page and portal say so instead of offering a form."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import node_env, start_node
from helpers import Person, anonymous, db, person, sign_in, wait_for

PAGES = ["/admin", "/admin/reports", "/admin/users", "/admin/users?sort=last_seen", "/admin/takedowns",
         "/admin/jobs", "/admin/audit"]


@pytest.fixture(scope="module")
def world(pds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    admin_acct = pds.create_account("conadmin")
    node = start_node([], cwd=tmp_path_factory.mktemp("console"), env=node_env(
        pds, PLYRD_AUTH_ADMINS=admin_acct.handle, PLYRD_MODERATION_PURGE_GRACE_DAYS="1"))
    try:
        admin = Person(sign_in(node.url, admin_acct), admin_acct)
        artist, listener = person(node, pds, "conart"), person(node, pds, "confan")
        assert artist.post("/preferences/", json={"allow_comments": True}).status_code == 200
        tmp = tmp_path_factory.mktemp("conaudio")
        # Two songs with the same cover: the two tracks share its three files.
        cover = ("c.jpg", jpeg_bytes(64, 64), "image/jpeg")
        tracks = []
        for i, title in enumerate(("console one", "console two")):
            src = make_audio(tmp / f"{i}.mp3", "mp3", seconds=1.5, frequency=440 + 110 * i)
            r = artist.me.upload(src, title=title, image=cover)
            assert r.status_code == 200, r.text
            events = artist.me.wait(r.json()["upload_id"])
            assert events[-1]["status"] == "completed", events
            tracks.append(artist.get(f"/tracks/{events[-1]['track_id']}").json())
        yield {"node": node, "pds": pds, "admin": admin, "artist": artist, "listener": listener, "tracks": tracks}
    finally:
        node.stop()


def _page(who: Any, path: str) -> str:
    r = who.get(path, headers={"Accept": "text/html"})
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r.text


def _row(page: str, row_id: str) -> str:
    """The HTML of the list item with this id (up to the next item)."""
    start = page.index(f'id="{row_id}"')
    end = page.find('class="admin-item"', start + 1)
    return page[start:end if end > 0 else len(page)]


def test_every_page_is_for_admins_only(world) -> None:
    for path in PAGES:
        page = _page(world["admin"], path)
        assert 'data-page="admin"' in page and 'aria-label="admin console"' in page
        for who in (world["artist"], world["listener"]):
            assert who.get(path, headers={"Accept": "text/html"}).status_code == 403, path
        r = anonymous(world["node"]).get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/admin"), path
    # the header links to the console for admins only
    assert 'href="/admin"' in _page(world["admin"], "/settings")
    assert 'href="/admin"' not in _page(world["listener"], "/settings")
    # the console's own actions are refused to others as the rest of the admin API is
    assert world["listener"].post("/admin/api/jobs/1/retry", json={}).status_code == 403
    assert anonymous(world["node"]).post("/admin/api/outbox/retry", json={}).status_code == 401


def test_users_list_storage_and_uploads(world) -> None:
    node, artist = world["node"], world["artist"]
    one, two = world["tracks"]
    shas = set()
    for t in (one, two):
        row = db(node, "SELECT original_sha, web_sha, image_sha, thumb_sha, display_sha FROM tracks WHERE id = ?",
                 (t["id"],))[0]
        shas |= {s for s in row if s}
    covers = {db(node, "SELECT image_sha FROM tracks WHERE id = ?", (t["id"],))[0][0] for t in (one, two)}
    assert len(covers) == 1 and len(shas) == 5  # two originals, and the cover's three files the tracks share
    # what the files take on disk, each once
    expected = sum((node.data / "blobs" / s[:2] / s[2:4] / s).stat().st_size for s in shas)
    page = _page(world["admin"], "/admin/users?sort=storage")
    row = _row(page, f"user-{artist.did}")
    assert f'data-storage="{expected}"' in row and 'data-uploads="2"' in row
    assert ">uploader<" in row or ">admin<" in row
    admin_row = _row(page, f"user-{world['admin'].did}")
    assert 'data-role>admin<' in admin_row and 'data-storage="0"' in admin_row
    # storage order: the artist, who holds files, comes before the others
    assert page.index(f"user-{artist.did}") < page.index(f"user-{world['listener'].did}")
    assert "last seen" in _row(_page(world["admin"], "/admin/users?sort=last_seen"), f"user-{artist.did}")
    assert world["admin"].get("/admin/users?sort=bogus", headers={"Accept": "text/html"}).status_code == 400


def test_a_failed_job_is_listed_and_retried_and_the_retry_is_audited(world) -> None:
    node, admin = world["node"], world["admin"]
    track = world["tracks"][1]["id"]
    job = db(node, "SELECT job_id FROM uploads WHERE track_id = ?", (track,))[0][0]
    # Simulated: the job's last attempt failed (a PDS that was down); the node cannot be made to fail it on cue.
    db(node, "UPDATE jobs SET state = 'failed', attempts = 3, error = 'pds unreachable (simulated)' WHERE id = ?",
       (job,))
    assert re.search(r"<b>1</b> failed job\b", _page(admin, "/admin"))
    assert "live updates are off" in _page(admin, "/admin")  # this node does not follow the network
    row = _row(_page(admin, "/admin/jobs"), f"job-{job}")
    assert "pds unreachable (simulated)" in row and f'data-post="/admin/api/jobs/{job}/retry"' in row
    assert world["artist"].post(f"/admin/api/jobs/{job}/retry", json={}).status_code == 403
    r = admin.post(f"/admin/api/jobs/{job}/retry", json={"reason": "the pds is back"})
    assert r.status_code == 200, r.text
    wait_for(lambda: db(node, "SELECT state FROM jobs WHERE id = ?", (job,))[0][0] == "done")
    assert db(node, "SELECT attempts, error FROM jobs WHERE id = ?", (job,))[0] == (1, None)
    assert f'id="job-{job}"' not in _page(admin, "/admin/jobs")
    assert admin.post(f"/admin/api/jobs/{job}/retry", json={}).status_code == 400  # not failed any more
    entry = next(e for e in admin.get("/admin/api/audit").json()["entries"] if e["action"] == "retry_job")
    assert entry["target_id"] == str(job) and entry["reason"] == "the pds is back" and entry["actor"] == admin.did
    assert entry["detail"]["error"] == "pds unreachable (simulated)"
    assert "retry job" in _page(admin, "/admin/audit")
    # failed pds writes: retried for one account, audited with how many went back in the queue
    r = admin.post("/admin/api/outbox/retry", json={"did": world["artist"].did, "reason": "scope renewed"})
    assert r.status_code == 200 and r.json()["retried"] == 0
    assert admin.post("/admin/api/outbox/retry", json={"did": 5}).status_code == 400
    entry = next(e for e in admin.get("/admin/api/audit").json()["entries"] if e["action"] == "retry_outbox")
    assert entry["target_id"] == world["artist"].did and entry["detail"] == {"retried": 0}


def test_storage_totals_add_up_to_the_blobs_table(world) -> None:
    page = _page(world["admin"], "/admin")
    kinds = dict(re.findall(r"<dt>([^<]+)</dt><dd data-kind-files=\"(\d+)\"", page))
    files = [int(n) for n in re.findall(r'data-kind-files="(\d+)"', page)]
    sizes = [int(n) for n in re.findall(r'data-kind-bytes="(\d+)"', page)]
    count, total = db(world["node"], "SELECT count(*), sum(size) FROM blobs")[0]
    assert sum(files) == count and sum(sizes) == total
    assert int(kinds["audio originals"]) >= 1 and int(kinds["artwork"]) == 3  # one cover: original, thumb, display
    assert "free of" in page


def test_the_owner_sees_why_their_track_was_taken_down(world) -> None:
    admin, artist, listener = world["admin"], world["artist"], world["listener"]
    track = world["tracks"][0]["id"]
    r = admin.post(f"/admin/api/tracks/{track}/takedown", json={"reason": "sample not cleared <b>"})
    assert r.status_code == 200, r.text
    notice = "taken down by this node's admins:</b> sample not cleared &lt;b&gt;"
    assert notice in _page(artist, f"/track/{track}")
    assert notice in _page(artist, "/portal")
    assert listener.get(f"/track/{track}").status_code == 404
    # the admins' list of takedowns says when its files may be purged (a day after: moderation.purge_grace_days)
    row = _row(_page(admin, "/admin/takedowns"), f"td-track-{track}")
    assert "sample not cleared" in row and "may be purged from" in row and "/purge" not in row
    db(world["node"], "UPDATE tracks SET taken_down_at = taken_down_at - 2 * 86400 WHERE id = ?", (track,))
    row = _row(_page(admin, "/admin/takedowns"), f"td-track-{track}")
    assert f'data-post="/admin/api/tracks/{track}/purge"' in row and "data-confirm=" in row
    # a comment taken down: its author sees why beside it
    r = listener.post(f"/tracks/{world['tracks'][1]['id']}/comments", json={"text": "rude", "timestamp_ms": 10})
    comment = r.json()["id"]
    assert admin.post(f"/admin/api/comments/{comment}/takedown", json={"reason": "abuse"}).status_code == 200
    assert "taken down by this node's admins:</b> abuse" in _page(listener, f"/track/{world['tracks'][1]['id']}")
    assert admin.post(f"/admin/api/comments/{comment}/restore", json={}).status_code == 200
    assert admin.post(f"/admin/api/tracks/{track}/restore", json={}).status_code == 200
    assert "taken down by this node" not in _page(artist, f"/track/{track}")


def test_reports_show_their_subject_and_reasons(world) -> None:
    admin, listener, artist = world["admin"], world["listener"], world["artist"]
    track = world["tracks"][1]
    for body in ({"target_type": "track", "target_id": track["id"], "reason": "copyright",
                  "description": "this is my song"},
                 {"target_type": "artist", "target_id": artist.did, "reason": "spam"}):
        assert listener.post("/moderation/reports", json=body).status_code == 201
    cases = {(c["target_type"], c["target_id"]): c["id"] for c in admin.get("/admin/api/reports").json()["reports"]}
    page = _page(admin, "/admin/reports")
    row = html.unescape(_row(page, f"case-{cases[('track', str(track['id']))]}"))
    assert track["title"] in row and "copyright" in row and "this is my song" in row
    assert f"@{listener.handle}" in row and f'href="/track/{track["id"]}"' in row
    assert "/takedown" in row and "data-needs-reason" in row
    row = _row(page, f"case-{cases[('artist', artist.did)]}")
    assert f"@{artist.handle}" in row and "/suspend" in row
    # dismissed from the console's button endpoint, it leaves the list
    case = cases[("artist", artist.did)]
    assert admin.post(f"/admin/api/reports/{case}/dismiss", json={"resolution": "not spam"}).status_code == 200
    assert f'id="case-{case}"' not in _page(admin, "/admin/reports")


def test_a_suspended_uploader_is_told_instead_of_offered_a_form(world) -> None:
    admin, artist = world["admin"], world["artist"]
    assert 'data-upload' in _page(artist, "/upload")
    r = admin.post(f"/admin/api/users/{artist.did}/suspend", json={"reason": "repeated copyright claims"})
    assert r.status_code == 200, r.text
    try:
        page = _page(artist, "/upload")
        assert "your uploads and comments are suspended" in page and "repeated copyright claims" in page
        assert "data-upload" not in page
        assert "repeated copyright claims" in _page(artist, "/portal")
        row = _row(_page(admin, "/admin/users"), f"user-{artist.did}")
        assert "suspended" in row and f'data-post="/admin/api/users/{quote(artist.did)}/restore"' in row
    finally:
        assert admin.post(f"/admin/api/users/{artist.did}/restore", json={}).status_code == 200
    assert "your uploads and comments are suspended" not in _page(artist, "/upload")


# ---- in a real browser ---------------------------------------------------------------------------------------------

# Every visible control has a name a screen reader can say and every image an alt (the browser module's check, kept
# small here for the console's forms).
NAMES_PROBE = """() => {
  const visible = (e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden';
  const named = (e) => (e.getAttribute('aria-label') || '').trim()
    || (e.labels && [...e.labels].some(l => l.textContent.trim()))
    || (['button', 'a', 'summary'].includes(e.tagName.toLowerCase()) && e.textContent.trim());
  return {unnamed: [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
            .filter(visible).filter(e => !named(e)).map(e => e.outerHTML.slice(0, 120)),
          noAlt: [...document.images].filter(i => !i.hasAttribute('alt')).map(i => i.outerHTML.slice(0, 120))};
}"""


def test_the_console_in_a_browser(world, browser, tmp_path_factory) -> None:
    """Acting from the pages: a reason is asked for where the owner must be told why, the row changes in place and
    the change is announced, a purge asks once more; every page fits a phone and names its controls (screenshots
    at desktop and phone size, dark and light, in tests/output/screenshots/admin/)."""
    from browsing import DESKTOP, PHONE, SHOTS, Session

    node, admin, artist, listener = world["node"], world["admin"], world["artist"], world["listener"]
    extra = make_audio(tmp_path_factory.mktemp("conextra") / "x.mp3", "mp3", seconds=1.2, frequency=880)
    r = artist.me.upload(extra, title="to be purged")
    purged = artist.me.wait(r.json()["upload_id"])[-1]["track_id"]
    assert admin.post(f"/admin/api/tracks/{purged}/takedown", json={"reason": "not theirs"}).status_code == 200
    db(node, "UPDATE tracks SET taken_down_at = taken_down_at - 2 * 86400 WHERE id = ?", (purged,))
    assert admin.post(f"/admin/api/tracks/{world['tracks'][0]['id']}/sensitive", json={}).status_code == 200
    listener.post("/moderation/reports", json={"target_type": "track", "target_id": world["tracks"][0]["id"],
                                               "reason": "explicit", "description": "the cover " * 30})
    job = db(node, "SELECT job_id FROM uploads WHERE track_id = ?", (world["tracks"][0]["id"],))[0][0]
    db(node, "UPDATE jobs SET state = 'failed', error = 'simulated: the pds answered 502' WHERE id = ?", (job,))

    context = browser.new_context(viewport=DESKTOP, color_scheme="dark")
    s = Session(node, context.new_page(), admin.account)
    page = s.page
    s.sign_in("/admin")
    # the header's admin link and the console's own navigation (client-side: the page module starts after it)
    assert page.get_attribute("header a[href='/admin']", "aria-current") == "page"
    s.nav(".admin-nav a[href='/admin/users']", "/admin/users")
    row = f"[id='user-{artist.did}']"
    page.click(f"{row} button[data-post$='/suspend']")
    assert "say why first" in page.text_content(f"{row} [data-error]")
    assert s.js("document.activeElement.matches('[data-reason]')")
    page.fill(f"{row} [data-reason]", "too many copyright claims")
    page.click(f"{row} button[data-post$='/suspend']")
    s.wait(f"() => document.querySelector(\"{row}\")?.querySelector('button[data-post$=\"/restore\"]')")
    assert "too many copyright claims" in page.text_content(row)
    s.wait("() => document.getElementById('announcer').textContent === 'suspended'")
    assert s.js(f"document.activeElement === document.querySelector(\"{row}\")")
    page.click(f"{row} button[data-post$='/restore']")
    s.wait(f"() => document.querySelector(\"{row}\")?.querySelector('button[data-post$=\"/suspend\"]')")
    assert db(node, "SELECT suspended FROM users WHERE did = ?", (artist.did,))[0][0] is None

    # a purge asks once more, then the row says it is done (the track left the list)
    s.nav(".admin-nav a[href='/admin/takedowns']", "/admin/takedowns")
    button = f"#td-track-{purged} button[data-post$='/purge']"
    page.click(button)
    assert "deleted from this node for good" in page.text_content(f"#td-track-{purged} [data-confirm-text]")
    assert db(node, "SELECT count(*) FROM tracks WHERE id = ?", (purged,))[0][0] == 1
    page.click(button)
    # the row stays (a tombstone, still taken down) and says its files are gone
    s.wait(f"() => document.querySelector('#td-track-{purged} [data-purge]')?.textContent.includes('were purged')")
    assert db(node, "SELECT count(*) FROM tracks WHERE id = ? AND purged_at IS NOT NULL", (purged,))[0][0] == 1

    # retrying the failed job from its page
    s.nav(".admin-nav a[href='/admin/jobs']", "/admin/jobs")
    page.click(f"#job-{job} button[data-post$='/retry']")
    s.wait(f"() => document.querySelector('#job-{job} .admin-done')")
    wait_for(lambda: db(node, "SELECT state FROM jobs WHERE id = ?", (job,))[0][0] == "done")
    state = context.storage_state()
    context.close()

    shots = SHOTS / "admin"
    shots.mkdir(parents=True, exist_ok=True)
    paths = {"admin": "/admin", "admin-reports": "/admin/reports", "admin-users": "/admin/users",
             "admin-takedowns": "/admin/takedowns", "admin-jobs": "/admin/jobs", "admin-audit": "/admin/audit"}
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("dark", "light"):
            context = browser.new_context(viewport=viewport, color_scheme=scheme, storage_state=state,
                                          is_mobile=size == "phone", has_touch=size == "phone")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
            page.add_init_script(f"localStorage.setItem('plyrd.theme', '{scheme}')")  # over the admin's own choice
            for name, path in paths.items():
                page.goto(node.url + path)
                page.wait_for_function("() => window.plyrd && window.plyrd.player")
                page.screenshot(path=str(shots / f"{name}-{size}-{scheme}.png"), full_page=True)
                assert page.evaluate(NAMES_PROBE) == {"unnamed": [], "noAlt": []}, (path, size)
                if size == "phone":
                    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (path, scheme)
            assert errors == [], errors
            context.close()


def test_what_the_owner_sees_in_a_browser(world, browser) -> None:
    """The artist's view of a takedown and a suspension, on the pages themselves (screenshots at desktop and phone
    size in tests/output/screenshots/admin/)."""
    from browsing import DESKTOP, PHONE, SHOTS, Session

    admin, artist = world["admin"], world["artist"]
    track = world["tracks"][1]["id"]
    comment = artist.post(f"/tracks/{track}/comments", json={"text": "buy my merch", "timestamp_ms": 300}).json()["id"]
    assert admin.post(f"/admin/api/tracks/{track}/takedown", json={"reason": "the sample is not cleared"}
                      ).status_code == 200
    assert admin.post(f"/admin/api/comments/{comment}/takedown", json={"reason": "spam"}).status_code == 200
    assert admin.post(f"/admin/api/users/{artist.did}/suspend", json={"reason": "three copyright claims this month"}
                      ).status_code == 200
    try:
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            context = browser.new_context(viewport=viewport, color_scheme="dark", is_mobile=size == "phone",
                                          has_touch=size == "phone")
            s = Session(world["node"], context.new_page(), artist.account)
            s.sign_in("/upload")
            page = s.page
            assert "three copyright claims this month" in page.text_content("[data-suspended]")
            assert page.query_selector("[data-upload]") is None
            page.screenshot(path=str(SHOTS / "admin" / f"owner-upload-{size}.png"), full_page=True)
            page.goto(f"{world['node'].url}/track/{track}")
            assert "the sample is not cleared" in page.text_content(".hero [data-taken-down]")
            assert "spam" in page.text_content(".comment [data-taken-down]")
            page.screenshot(path=str(SHOTS / "admin" / f"owner-track-{size}.png"), full_page=True)
            page.goto(f"{world['node'].url}/portal")
            assert "the sample is not cleared" in page.text_content(f"[data-track-id='{track}'] [data-taken-down]")
            assert "three copyright claims" in page.text_content("[data-suspended]")
            page.screenshot(path=str(SHOTS / "admin" / f"owner-portal-{size}.png"), full_page=True)
            if size == "phone":
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert s.errors == [], s.errors
            context.close()
    finally:
        admin.post(f"/admin/api/users/{artist.did}/restore", json={})
        admin.post(f"/admin/api/tracks/{track}/restore", json={})
