"""The server-rendered pages of the web player, through a real node process: status codes, the shell every page
carries, link-preview meta tags, sign-in redirects, the HTML error pages browsers get while JSON clients keep
getting `{"detail"}`, the embed and oEmbed, and the size budget of what a first visit downloads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from audio_samples import jpeg_bytes, make_audio
from conftest import ROOT, node_fixture
from helpers import Artist, sign_in

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}


class Meta(HTMLParser):
    """Collects <meta property|name=... content=...>, <link rel=...> and the <title> of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.title = ""
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and ("property" in a or "name" in a):
            self.meta[a.get("property") or a["name"]] = a.get("content", "")
        elif tag == "link" and "rel" in a:
            self.links[a["rel"] + (":" + a["type"] if "type" in a else "")] = a.get("href", "")
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        self._in_title = self._in_title and tag != "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


node = node_fixture("pages")


@pytest.fixture(scope="module")
def artist(node, pds) -> Artist:
    artist = sign_in(node.url, pds.create_account("pages"))
    r = artist.http.post("/preferences/", json={"allow_comments": True}, headers={"X-CSRF-Token": artist.csrf})
    assert r.status_code == 200, r.text
    return artist


@pytest.fixture(scope="module")
def track(artist, tmp_path_factory) -> dict:
    src = make_audio(tmp_path_factory.mktemp("audio") / "page.mp3", "mp3", seconds=3, kind="music",
                     tags={"title": "evening <tide>", "artist": "the band"}, cover=jpeg_bytes(200, 200))
    r = artist.upload(src, tags='["Dusk", "tape"]', description="recorded on the pier & then some")
    assert r.status_code == 200, r.text
    done = artist.wait(r.json()["upload_id"])[-1]
    assert done["status"] == "completed", done
    return artist.http.get(f"/tracks/{done['track_id']}").json()


@pytest.fixture
def anon(node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30, headers=BROWSER) as http:
        yield http


def page(http: httpx.Client, path: str, status: int = 200) -> tuple[str, Meta]:
    r = http.get(path, headers=BROWSER)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    return r.text, Meta(r.text)


def assert_shell(html: str) -> None:
    """Every page carries the one <audio>, the player bar and the app module, outside the swapped <main>."""
    assert html.count("<audio") == 1 and 'id="audio"' in html
    assert 'id="player"' in html and 'id="queue-panel"' in html
    assert '<main id="main"' in html and 'src="/static/js/app.js"' in html
    assert html.index("</main>") < html.index('id="player"')  # the shell is not inside what navigation swaps


def test_home_page(node, track, anon) -> None:
    html, meta = page(anon, "/")
    assert_shell(html)
    assert f'href="/track/{track["id"]}"' in html and "evening &lt;tide&gt;" in html  # escaped, never raw
    assert "<tide>" not in html
    assert meta.meta["og:site_name"] == "plyrd" and meta.title == "plyrd"
    assert 'data-page="home"' in html
    html, _ = page(anon, "/?tag=dusk")
    assert f'href="/track/{track["id"]}"' in html and 'aria-current="true">dusk<' in html
    html, _ = page(anon, "/?tag=nothing-has-this")
    assert f'href="/track/{track["id"]}"' not in html


def test_track_page_meta_and_content(node, track, anon) -> None:
    html, meta = page(anon, f"/track/{track['id']}")
    assert_shell(html)
    url = f"{node.url}/track/{track['id']}"
    assert meta.title == "evening <tide> by " + track["artist"] + " · plyrd"
    assert meta.meta["og:title"] == "evening <tide>" and meta.meta["og:type"] == "music.song"
    assert meta.meta["og:url"] == url and meta.links["canonical"] == url
    assert meta.meta["og:image"] == track["image_url"] and meta.meta["og:audio"] == track["audio_url"]
    assert "recorded on the pier & then some" in meta.meta["og:description"]
    assert meta.meta["twitter:card"] == "player"
    assert meta.meta["twitter:player"] == f"{node.url}/embed/track/{track['id']}"
    assert meta.meta["music:duration"] == "3"
    oembed = meta.links["alternate:application/json+oembed"]
    assert oembed.startswith(f"{node.url}/oembed?url=")
    assert 'href="/tag/dusk"' in html and 'href="/tag/tape"' in html
    assert f'href="{track["download_url"]}" download' in html
    assert 'data-action="like"' in html and "data-needs-sign-in" in html  # signed out: the button asks to sign in
    assert "data-comment-form" not in html and f"/login?next=/track/{track['id']}" in html
    assert 'role="slider"' in html  # the big waveform is a seek slider
    embedded = re.search(r'<script type="application/json" data-track>(.*?)</script>', html, re.S)
    assert embedded and json.loads(embedded.group(1))["peaks"]  # the player starts from the page, no second request


def test_a_track_link_with_a_time(node, track, anon) -> None:
    html, _ = page(anon, f"/track/{track['id']}?t=2")
    assert 'data-at="2"' in html and "play from 0:02" in html
    html, _ = page(anon, f"/track/{track['id']}?t=0:01")
    assert 'data-at="1"' in html
    for bad in ("abc", "99", "0", "-3", "1:99"):  # nonsense, past the end, the start: a plain play button
        html, _ = page(anon, f"/track/{track['id']}?t={bad}")
        assert "data-at=" not in html and "play from" not in html, bad


def test_track_page_signed_in_has_the_comment_form_and_own_like(node, track, artist) -> None:
    html, _ = page(artist.http, f"/track/{track['id']}")
    assert "data-comment-form" in html and "data-needs-sign-in" not in html
    assert f'data-user="{artist.http.get("/auth/me").json()["handle"]}"' in html


def test_artist_and_tag_pages(node, track, anon) -> None:
    handle = track["artist_handle"]
    html, meta = page(anon, f"/u/{handle}")
    assert_shell(html)
    assert meta.meta["og:type"] == "profile" and meta.meta["og:url"] == f"{node.url}/u/{handle}"
    assert meta.meta["profile:username"] == handle
    assert f'href="/track/{track["id"]}"' in html
    html_by_did, _ = page(anon, f"/u/{track['artist_did']}")  # a DID works wherever a handle does
    assert f'href="/track/{track["id"]}"' in html_by_did

    html, meta = page(anon, "/tag/Dusk")
    assert meta.meta["og:title"] == "dusk · plyrd" and meta.meta["og:url"] == f"{node.url}/tag/dusk"
    assert meta.meta["og:image"] == track["image_url"]
    assert f'href="/track/{track["id"]}"' in html


def test_not_found_is_a_page_for_browsers_and_json_for_everyone_else(node, anon) -> None:
    html, meta = page(anon, "/track/987654", 404)
    assert_shell(html)  # client-side navigation can swap an error page in like any other
    assert "nothing here" in html and "track 987654 not found" in html and 'href="/"' in html
    assert meta.meta["robots"] == "noindex"
    html, _ = page(anon, "/no/such/page", 404)
    assert "nothing here" in html
    page(anon, "/u/nobody.example", 404)

    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}, {"Accept": "application/json, text/html"}):
        r = httpx.get(f"{node.url}/tracks/987654", headers=headers)
        assert r.status_code == 404 and r.json() == {"detail": "track 987654 not found"}, headers
        r = httpx.get(f"{node.url}/no/such/page", headers=headers)
        assert r.status_code == 404 and r.json() == {"detail": "not found"}, headers
    r = httpx.delete(f"{node.url}/health", headers=BROWSER)  # 405 keeps its Allow header as a page too
    assert r.status_code == 405 and "GET" in r.headers["Allow"] and r.headers["content-type"].startswith("text/html")
    r = httpx.get(f"{node.url}/tracks/", headers=BROWSER)  # the JSON API stays JSON when it succeeds
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"


def test_pages_that_need_you_send_you_to_sign_in(node, anon, artist) -> None:
    for path in ("/upload", "/library"):
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
        html, _ = page(artist.http, path)
        assert_shell(html)
    html, _ = page(anon, "/login?next=/library")
    assert 'action="/auth/start"' in html and 'name="app_password"' in html and 'value="/library"' in html
    assert anon.get("/login?next=https://evil.example/").text.count('value="/"') >= 1  # no open redirect
    r = artist.http.get("/login")
    assert r.status_code == 303 and r.headers["location"] == "/"
    html, _ = page(anon, "/settings")
    assert 'name="theme"' in html and "data-hidden-tags" not in html
    html, _ = page(artist.http, "/settings")
    assert "data-hidden-tags" in html and 'data-pref="allow_comments" checked' in html


def test_app_password_form_without_javascript(node, pds) -> None:
    account = pds.create_account("nojs")
    with httpx.Client(base_url=node.url, timeout=30, headers=BROWSER) as http:
        r = http.post("/login", data={"handle": account.handle, "app_password": "wrong-password", "next": "/library"})
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
        assert 'role="alert"' in r.text and "session_id" not in r.cookies
        r = http.post("/login", data={"handle": account.handle, "app_password": account.password, "next": "/library"})
        assert r.status_code == 303 and r.headers["location"] == "/library"
        assert r.cookies.get("session_id") and r.cookies.get("plyrd_csrf")
        html, _ = page(http, "/library")
        assert f'data-user="{account.handle}"' in html


def test_playlist_page(node, track, artist, anon) -> None:
    headers = {"X-CSRF-Token": artist.csrf}
    made = artist.http.post("/lists/playlists", json={"name": "for the pier"}, headers=headers).json()
    r = artist.http.post(f"/lists/playlists/{made['id']}/tracks", json={"track_id": track["id"]}, headers=headers)
    assert r.status_code == 200, r.text
    html, meta = page(artist.http, f"/playlist/{made['id']}")
    assert "for the pier" in meta.title and "data-owner" in html and "data-sort-handle" in html
    assert f'data-track-id="{track["id"]}"' in html and "data-item-uri=\"at://" in html
    html, _ = page(anon, f"/playlist/{made['id']}")
    assert "data-owner" not in html and "data-sort-handle" not in html
    html, _ = page(artist.http, "/library")
    assert f'href="/playlist/{made["id"]}"' in html
    hidden = artist.http.post("/lists/playlists", json={"name": "secret", "is_private": True}, headers=headers).json()
    page(anon, f"/playlist/{hidden['id']}", 404)


def test_embed_and_oembed(node, track, anon) -> None:
    r = anon.get(f"/embed/track/{track['id']}")
    assert r.status_code == 200 and "x-frame-options" not in r.headers  # it exists to be framed
    assert 'src="/static/js/embed.js"' in r.text and f'data-src="/audio/{track["file_id"]}"' in r.text
    assert re.search(r"data-peaks>\[[0-9.]", r.text)
    page_url = f"{node.url}/track/{track['id']}"
    r = httpx.get(f"{node.url}/oembed", params={"url": page_url})
    body = r.json()
    assert r.status_code == 200 and body["type"] == "rich" and body["version"] == "1.0"
    assert body["title"] == "evening <tide>" and body["height"] == 152 and body["provider_name"] == "plyrd"
    assert f'src="{node.url}/embed/track/{track["id"]}"' in body["html"] and "&lt;tide&gt;" in body["html"]
    assert body["thumbnail_url"] == track["image_url"]
    assert httpx.get(f"{node.url}/oembed", params={"url": page_url, "maxwidth": "320"}).json()["width"] == 320
    assert httpx.get(f"{node.url}/oembed", params={"url": f"{node.url}/u/x"}).status_code == 404
    assert httpx.get(f"{node.url}/oembed", params={"url": page_url, "format": "xml"}).status_code == 501
    assert httpx.get(f"{node.url}/oembed", params={"url": f"{node.url}/track/987654"}).status_code == 404


def test_sensitive_artwork_is_blurred_unless_the_viewer_opted_in(node, artist, anon, tmp_path) -> None:
    """Self-labels sent with the upload mark the artwork sensitive: blurred for everyone who has not opted in, and
    never offered to link previews; a bad label list is refused before anything is kept."""
    src = make_audio(tmp_path / "night.mp3", "mp3", seconds=2, kind="music", cover=jpeg_bytes(120, 120))
    bad = artist.upload(src, title="night swim", self_labels='"nudity"')
    assert bad.status_code == 400 and "self_labels" in bad.json()["detail"]
    r = artist.upload(src, title="night swim", self_labels='["nudity"]')
    assert r.status_code == 200, r.text
    done = artist.wait(r.json()["upload_id"])[-1]
    track = artist.http.get(f"/tracks/{done['track_id']}").json()
    assert track["self_labels"] == ["nudity"] and track["sensitive"] and not track["unlisted"]
    assert track["image_url"]
    html, meta = page(anon, f"/track/{track['id']}")
    assert 'class="cover sensitive"' in html and 'data-action="reveal"' in html
    assert "og:image" not in meta.meta and "data-show-sensitive" not in html
    preview = httpx.get(f"{node.url}/oembed", params={"url": f"{node.url}/track/{track['id']}"}).json()
    assert "thumbnail_url" not in preview
    html, _ = page(artist.http, f"/u/{track['artist_handle']}")
    assert re.search(r'class="art sensitive"[^>]*src="[^"]*' + track["thumbnail_url"].rsplit("/", 1)[1], html)
    headers = {"X-CSRF-Token": artist.csrf}
    assert artist.http.post("/preferences/", json={"show_sensitive_artwork": True}, headers=headers).status_code == 200
    html, _ = page(artist.http, f"/track/{track['id']}")
    assert "<body" in html and re.search(r"<body[^>]*data-show-sensitive", html)
    html, _ = page(anon, f"/embed/track/{track['id']}")
    assert 'class="e-art sensitive"' in html
    r = artist.http.patch(f"/tracks/{track['id']}", files={"self_labels": (None, "[]")}, headers=headers)
    assert r.status_code == 200 and not r.json()["sensitive"]


def test_unlisted_at_upload(node, artist, anon, tmp_path) -> None:
    src = make_audio(tmp_path / "quiet.mp3", "mp3", seconds=2, kind="music", frequency=523)
    assert artist.upload(src, title="quiet one", unlisted="maybe").status_code == 400
    r = artist.upload(src, title="quiet one", unlisted="true")
    assert r.status_code == 200, r.text
    track_id = artist.wait(r.json()["upload_id"])[-1]["track_id"]
    assert artist.http.get(f"/tracks/{track_id}").json()["unlisted"] is True
    assert track_id not in [t["id"] for t in anon.get("/tracks/").json()["tracks"]]
    assert track_id in [t["id"] for t in artist.http.get("/tracks/me").json()["tracks"]]


def test_playlist_and_album_embeds_and_their_oembed(node, pds, artist, anon, tmp_path) -> None:
    headers = {"X-CSRF-Token": artist.csrf}
    ids = []
    for n, freq in enumerate((392, 440)):
        src = make_audio(tmp_path / f"side-{n}.mp3", "mp3", seconds=2, kind="music", frequency=freq)
        r = artist.upload(src, title=f"side {'ab'[n]}")
        assert r.status_code == 200, r.text
        ids.append(artist.wait(r.json()["upload_id"])[-1]["track_id"])
    handle = artist.http.get(f"/tracks/{ids[0]}").json()["artist_handle"]
    album = artist.http.post("/albums/", json={"title": "two sides"}, headers=headers).json()
    r = artist.http.post(f"/albums/{album['id']}/finalize", json={"track_ids": ids}, headers=headers)
    assert r.status_code == 200, r.text
    made = artist.http.post("/lists/playlists", json={"name": "pier <mix>"}, headers=headers).json()
    for track_id in reversed(ids):
        r = artist.http.post(f"/lists/playlists/{made['id']}/tracks", json={"track_id": track_id}, headers=headers)
        assert r.status_code == 200, r.text

    r = anon.get(f"/embed/playlist/{made['id']}")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=300"
    assert "pier &lt;mix&gt;" in r.text and "data-embed-list" in r.text
    order = [int(i) for i in re.findall(r'data-e-index="\d+" data-track-id="(\d+)"', r.text)]
    assert order == list(reversed(ids))
    peaks = re.search(r'data-peaks="([0-9,]*)"', r.text).group(1).split(",")
    assert 1 < len(peaks) <= 100 and all(0 <= int(p) <= 100 for p in peaks)
    r = anon.get(f"/embed/album/{handle}/two-sides")
    assert r.status_code == 200 and "two sides" in r.text
    assert [int(i) for i in re.findall(r'data-e-index="\d+" data-track-id="(\d+)"', r.text)] == ids
    html, meta = page(anon, f"/u/{handle}/album/two-sides")
    assert f'href="/albums/{handle}/two-sides/download" download' in html
    assert meta.links["alternate:application/json+oembed"].endswith(
        "/oembed?url=" + quote(f"{node.url}/u/{handle}/album/two-sides", safe=""))
    assert f'src="{node.url}/embed/album/{handle}/two-sides" width="100%" height="352"' in html

    # The library hub lists your own albums, and albums holding a track you liked.
    html, _ = page(artist.http, "/library")
    main = html[html.index("<main"):html.index("</main>")]
    assert f'href="/u/{handle}/album/two-sides"' in main and "yours · 2 tracks" in main
    fan = sign_in(node.url, pds.create_account("shelf"))
    html, _ = page(fan.http, "/library")
    assert "two-sides" not in html
    assert fan.http.post(f"/tracks/{ids[1]}/like", headers={"X-CSRF-Token": fan.csrf}).status_code == 200
    html, _ = page(fan.http, "/library")
    assert f'href="/u/{handle}/album/two-sides"' in html and "yours" not in html

    for url, src in ((f"{node.url}/playlist/{made['id']}", f"/embed/playlist/{made['id']}"),
                     (f"{node.url}/u/{handle}/album/two-sides", f"/embed/album/{handle}/two-sides")):
        body = httpx.get(f"{node.url}/oembed", params={"url": url}).json()
        assert body["type"] == "rich" and body["height"] == 352 and f'src="{node.url}{src}"' in body["html"]
    assert httpx.get(f"{node.url}/oembed", params={"url": f"{node.url}/u/{handle}/album/nope"}).status_code == 404

    # Private playlists have no public embed, and their page offers none.
    r = artist.http.patch(f"/lists/playlists/{made['id']}", json={"is_private": True}, headers=headers)
    assert r.status_code == 200 and r.json()["is_private"]
    assert anon.get(f"/embed/playlist/{made['id']}").status_code == 404
    assert httpx.get(f"{node.url}/oembed", params={"url": f"{node.url}/playlist/{made['id']}"}).status_code == 404
    html, _ = page(artist.http, f"/playlist/{made['id']}")
    assert "embed-code" not in html and "data-flag=\"is_private\" checked" in html


def raw_get(url: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """A GET whose body is returned as sent (httpx would undo the gzip)."""
    with httpx.Client(timeout=30) as http, http.stream("GET", url, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_text_is_gzipped_for_browsers_that_ask(node, track, anon) -> None:
    import gzip

    gz = {**BROWSER, "Accept-Encoding": "gzip, deflate, br"}
    r, body = raw_get(node.url + "/", gz)
    assert r.headers["content-encoding"] == "gzip" and "Accept-Encoding" in r.headers["vary"]
    page_html = gzip.decompress(body)
    assert page_html.startswith(b"<!doctype html>") and int(r.headers["content-length"]) == len(body)
    plain, raw = raw_get(node.url + "/", {**BROWSER, "Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in plain.headers and raw.startswith(b"<!doctype html>")
    assert "Accept-Encoding" in plain.headers["vary"]

    # Static files: compressed once, revalidated with the weak validator, a 304 without a body.
    r, body = raw_get(node.url + "/static/js/player.js", gz)
    assert r.headers["content-encoding"] == "gzip" and r.headers["etag"].startswith('W/"')
    original = (ROOT / "static" / "js" / "player.js").read_bytes()
    assert gzip.decompress(body) == original and len(body) < len(original) / 2
    again, _ = raw_get(node.url + "/static/js/player.js", {**gz, "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    _, body2 = raw_get(node.url + "/static/js/player.js", gz)
    assert body2 == body  # the cached copy

    # Audio, images and small JSON stay as they are.
    r, body = raw_get(f"{node.url}/audio/{track['file_id']}", {"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert r.status_code == 206 and "content-encoding" not in r.headers and len(body) == 100
    r, _ = raw_get(f"{node.url}/tracks/{track['id']}/likes", {"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "content-encoding" not in r.headers
    r, body = raw_get(f"{node.url}/tracks/{track['id']}", {"Accept-Encoding": "gzip"})  # with its waveform: big
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(body).startswith(b"{")


def test_static_assets_and_first_visit_budget(node, anon) -> None:
    """Every asset is served (modules as JavaScript, every import resolving), and a first visit to the home page
    stays under the issue's 150 KB before images: its HTML, the stylesheet, the icon sprite, app.js with every module
    it imports statically, and the home page's own module. Other pages' modules load only on those pages."""
    static = ROOT / "static"
    imports: dict[Path, tuple[list[Path], list[Path]]] = {}  # module -> (static imports, dynamic imports)
    size: dict[Path, int] = {}
    for path in sorted(static.rglob("*")):
        if path.suffix not in (".js", ".css", ".svg") or path.parent.name == "img":
            continue
        r = anon.get("/static/" + path.relative_to(static).as_posix())
        assert r.status_code == 200, path
        size[path] = len(r.content)
        if path.suffix == ".js":
            assert "javascript" in r.headers["content-type"], path
            found: tuple[list[Path], list[Path]] = ([], [])
            for eager, lazy in re.findall(r"""from\s+'(\.{1,2}/[^']+)'|import\('(\.{1,2}/[^']+)'\)""", r.text):
                target = (path.parent / (eager or lazy)).resolve()
                assert target.is_file(), f"{path.name} imports missing {target}"
                found[0 if eager else 1].append(target)
            imports[path] = found
    loaded: set[Path] = set()
    todo = [static / "js" / "app.js", static / "js" / "pages" / "feed.js"]
    while todo:
        module = todo.pop().resolve()
        if module not in loaded:
            loaded.add(module)
            todo.extend(imports[module][0])
    html = anon.get("/").content
    assert b"/static/css/base.css" in html and b"/static/js/app.js" in html
    total = len(html) + size[static / "css" / "base.css"] + size[static / "icons.svg"] + sum(size[m] for m in loaded)
    assert total < 150 * 1024, total


def test_page_routes_do_not_shadow_the_json_api(node) -> None:
    from plyrd.web import pages

    source = Path(pages.__file__).read_text()
    routes = re.findall(r'@bp\.(?:get|post)\("([^"]+)"', source)
    api_prefixes = ("/tracks", "/audio", "/images", "/auth", "/lists", "/albums", "/artists", "/queue",
                    "/preferences", "/now-playing", "/account", "/sync", "/users", "/health", "/config", "/stats")
    assert routes and not [r for r in routes if r.startswith(api_prefixes)]
