"""Server-rendered pages of the web player (issue 7): HTML for every page, progressively enhanced by static/js.

Thin like the JSON handlers: read through plyrd.catalog, render a template. Every page extends base.html, whose shell
(the player bar and its one <audio>) stays in the document while static/js/nav.js swaps only <main>. Page paths
never shadow the JSON API: /track/{id}, /u/{handle}, /tag/{name}, /login, /upload, /library, /playlist/{id},
/settings, /embed/..., /oembed.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

from quart import Blueprint, Response, current_app, jsonify, redirect, render_template, request

from ..auth.service import safe_return_path
from ..catalog import albums, comments, feeds, likes, playlists, preferences
from ..catalog.profiles import get_profile
from ..catalog.social import tracks_json
from ..catalog.tracks import ANONYMOUS, hidden_tags, is_library, open_track, playable, track_json, visible
from ..errors import Forbidden, InvalidInput, NotFound, PlyrdError
from ..moderation.suspension import suspension_of
from .auth import set_session_cookies
from .context import node
from .errors import status_for
from .header_stats import header_stats, stats_line
from .limits import client_address, retry_after_headers
from .viewer import current_audience, current_viewer

bp = Blueprint("pages", __name__)

FEED_PAGE = 30
EMBED_HEIGHT = 152
LIST_EMBED_HEIGHT = 352  # plyr.fm's suggested height for playlist and album embeds
EMBED_WIDTH = 600
EMBED_LIST_MAX = 200  # tracks listed in one embed: a few hundred bytes each with their small waveform
EMBED_PEAKS = 100  # a list embed's waveforms: 100 points, as whole percent (the card is ~400 px wide)


# ---- helpers shared by every page ------------------------------------------------------------------------------


@bp.app_template_filter("clock")
def clock(seconds: Any) -> str:
    """3:07 or 1:02:07."""
    try:
        total = max(0, int(float(seconds or 0)))
    except (TypeError, ValueError):
        return "0:00"
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@bp.app_template_filter("ago")
def ago(value: Any) -> str:
    """A unix time or ISO string as "3 days ago", lowercase like everything else."""
    if isinstance(value, str):
        from datetime import datetime

        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return ""
    if not isinstance(value, int | float):
        return ""
    delta = max(0, time.time() - value)
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400), ("hour", 3600),
                       ("minute", 60)):
        if delta >= size:
            n = int(delta // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def _viewer_did() -> str | None:
    viewer = current_viewer()
    return viewer.did if viewer else None


async def _viewer_context() -> dict[str, Any]:
    """Who is looking and their display preferences (read-only: a page view never creates a preferences row)."""
    viewer = current_viewer()
    if viewer is None:
        return {"me": None, "prefs": None, "theme": "system", "accent": None}
    n = node()
    async with n.db.read() as conn:
        prefs = await preferences.load(conn, viewer.did)
        suspended = await suspension_of(conn, viewer.did)
    # suspended: why this node's admins stopped their uploads and comments (upload and portal say so), or None.
    me = {"did": viewer.did, "handle": viewer.session.handle,
          "can_upload": n.auth.can_upload(viewer.did, viewer.session.handle),
          "is_admin": n.auth.is_admin(viewer.did, viewer.session.handle), "suspended": suspended}
    return {"me": me, "prefs": prefs, "theme": prefs["theme"], "accent": prefs["accent_color"]}


async def render(template: str, *, status: int = 200, **context: Any) -> Response:
    n = node()
    html = await render_template(template, **(await _viewer_context()), version=current_app.config["PLYRD_VERSION"],
                                 public_url=n.config.public_url, node_stats=stats_line(await header_stats(n.db)),
                                 **context)
    response = Response(html, status=status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"  # pages differ per viewer: revalidate, never share
    response.headers["Vary"] = "Cookie"
    return response


def login_redirect() -> Response:
    target = request.full_path.rstrip("?")
    return redirect(f"/login?next={quote(target, safe='/')}", 303)  # type: ignore[return-value]


def _embed_links(page_url: str, embed_path: str, height: int) -> dict[str, Any]:
    """What a page needs to offer its embed: the iframe url and height, and its oEmbed discovery link."""
    base = node().config.public_url
    return {"embed_url": base + embed_path, "embed_height": height,
            "oembed_url": f"{base}/oembed?url={quote(page_url, safe='')}"}


async def page_tracks(rows: list[Any], *, peaks: bool = False) -> list[dict[str, Any]]:
    """Tracks as the JSON API shapes them; lists leave the waveform out, a track's own page keeps it."""
    n = node()
    return await tracks_json(n.db, rows, _viewer_did(), n.config.public_url, peaks=peaks)


# ---- discovery -------------------------------------------------------------------------------------------------


@bp.get("/")
async def home() -> Response:
    n = node()
    args = request.args
    tag = (args.get("tag") or "").strip().lower() or None
    cursor = args.get("cursor") or None
    audience = current_audience()
    page = await feeds.latest(n.db, audience=audience, cursor=cursor, limit=FEED_PAGE, tag=tag)
    top = [] if cursor or tag else await feeds.top(n.db, audience=audience, limit=10)
    tags = await feeds.tag_counts(n.db, audience=audience, q=None, limit=24)
    hidden = await hidden_tags(n.db, audience)
    return await render("home.html", tracks=await page_tracks(page.rows), next_cursor=page.next_cursor, tag=tag,
                        cursor=cursor, top=await page_tracks(top), tags=[t for t in tags if t["name"] not in hidden],
                        hidden_tags=hidden)


@bp.get("/tag/<name>")
async def tag_page(name: str) -> Response:
    n = node()
    tag = name.strip().lower()
    page = await feeds.latest(n.db, audience=current_audience(), tag=tag, cursor=request.args.get("cursor") or None,
                              limit=FEED_PAGE, filter_hidden=False)
    tracks = await page_tracks(page.rows)
    return await render("tag.html", tag=tag, tracks=tracks, next_cursor=page.next_cursor,
                        og_image=next((t["image_url"] for t in tracks if t["image_url"] and not t["sensitive"]), None))


def start_at(raw: str | None, duration: float | None) -> int | None:
    """A share link's ?t=: seconds ("75") or a clock ("1:15", "1:02:05"); None when absent, bad or past the end."""
    if not raw or not re.fullmatch(r"\d{1,5}|\d{1,3}(:[0-5]\d){1,2}", raw):
        return None
    seconds = 0
    for part in raw.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds if 0 < seconds < (duration or 0) else None


@bp.get("/track/<int:track_id>")
async def track_page(track_id: int) -> Response:
    n = node()
    audience = current_audience()
    row = await open_track(n.db, track_id, audience)
    track = (await page_tracks([row], peaks=True))[0]
    found = await comments.list_comments(n.db, track_id, audience)
    liked_by = await likes.likers(n.db, track_id, audience)
    mine = []
    if (viewer := current_viewer()) is not None:
        mine = await playlists.own_playlists(n.db, viewer.did, n.config.public_url)
    page_url = f"{n.config.public_url}/track/{track_id}"
    # A library track is the node's own: no link preview, player card or embed offers it to other sites.
    shared = {} if is_library(row) else _embed_links(page_url, f"/embed/track/{track_id}", EMBED_HEIGHT)
    return await render("track.html", track=track, comments=found["comments"],
                        comments_enabled=found["comments_enabled"], likers=liked_by["users"], playlists=mine,
                        page_url=page_url, start_at=start_at(request.args.get("t"), track["duration"]),
                        private=is_library(row), **shared)


@bp.get("/u/<handle>")
async def artist_page(handle: str) -> Response:
    n = node()
    profile = await get_profile(n.db, handle)
    page = await feeds.latest(n.db, audience=current_audience(), artist_did=profile["did"], limit=50,
                              cursor=request.args.get("cursor") or None)
    shown = await albums.list_artist_albums(n.db, profile["did"], n.config.public_url, viewer_did=_viewer_did())
    lists = await playlists.public_playlists(n.db, profile["did"], n.config.public_url)
    return await render("artist.html", profile=profile, tracks=await page_tracks(page.rows),
                        next_cursor=page.next_cursor, albums=shown, playlists=lists,
                        page_url=f"{n.config.public_url}/u/{profile['handle']}")


@bp.get("/liked/<handle>")
async def liked_page(handle: str) -> Response:
    """Someone's liked tracks, when they chose to show them (always to themselves); otherwise no such page. Each
    track listed only if this visitor may see it (likes.liked_tracks with the visitor's audience)."""
    n = node()
    try:
        shown = await likes.public_likes(n.db, handle.lstrip("@"), audience=current_audience(),
                                         public_url=n.config.public_url)
    except Forbidden:
        raise NotFound(f"no liked tracks of {handle} to show") from None
    user = shown["user"]
    return await render("liked.html", person=user, tracks=shown["tracks"],
                        page_url=f"{n.config.public_url}/liked/{user.get('handle') or user.get('did')}")


@bp.get("/u/<handle>/album/<slug>")
async def album_page(handle: str, slug: str) -> Response:
    n = node()
    audience = current_audience()
    album = await albums.find_album(n.db, handle, slug, audience)
    rows = await albums.album_tracks(n.db, album["id"], visible(audience))
    page_url = f"{n.config.public_url}/u/{handle}/album/{slug}"
    private = album["library_key"] is not None  # the node's library album: nothing offers it to other sites
    shared = {} if private else _embed_links(page_url, f"/embed/album/{handle}/{slug}", LIST_EMBED_HEIGHT)
    return await render("album.html", album=albums.album_json(album, n.config.public_url),
                        tracks=await page_tracks(rows), page_url=page_url, private=private, **shared)


# ---- signing in ------------------------------------------------------------------------------------------------


@bp.get("/login")
async def login() -> Response:
    next_path = safe_return_path(request.args.get("next"))
    if current_viewer() is not None:
        return redirect(next_path, 303)  # type: ignore[return-value]
    return await render("login.html", next_path=next_path, error=None, handle="")


@bp.post("/login")
async def login_post() -> Response:
    """The app-password form without JavaScript (login.js posts JSON to /auth/app-password instead)."""
    form = await request.form
    next_path = safe_return_path(form.get("next"))
    handle = form.get("handle", "")
    try:
        token, _ = await node().auth.login_app_password(handle, form.get("app_password", ""),
                                                        client=client_address())
    except PlyrdError as e:
        refused = await render("login.html", status=status_for(e), next_path=next_path, error=e.detail, handle=handle)
        refused.headers.update(retry_after_headers(e))
        return refused
    response: Response = redirect(next_path, 303)  # type: ignore[assignment]
    set_session_cookies(response, token)
    return response


# ---- your things -----------------------------------------------------------------------------------------------


@bp.get("/upload")
async def upload_page() -> Response:
    viewer = current_viewer()
    if viewer is None:
        return login_redirect()
    cfg = node().config
    return await render("upload.html", max_upload_mb=cfg["storage.max_upload_mb"],
                        max_image_mb=cfg["media.max_image_mb"])


@bp.get("/library")
async def library_page() -> Response:
    viewer = current_viewer()
    if viewer is None:
        return login_redirect()
    n = node()
    liked = await likes.liked_tracks(n.db, viewer.did, audience=current_audience(), public_url=n.config.public_url)
    mine = await playlists.own_playlists(n.db, viewer.did, n.config.public_url)
    shelf = await albums.library_albums(n.db, viewer.did, n.config.public_url, current_audience())
    return await render("library.html", tracks=liked, playlists=mine, albums=shelf)


@bp.get("/playlist/<playlist_id>")
async def playlist_page(playlist_id: str) -> Response:
    n = node()
    audience = current_audience()
    row = await playlists.get_playlist(n.db, playlist_id, audience.did)
    items = await playlists.playlist_items(n.db, row["id"], audience)
    uris = {i["track_id"]: i["uri"] for i in items}
    tracks = [{**t, "item_uri": uris.get(t["id"])}
              for t in await page_tracks(await playlists.playlist_tracks(n.db, row["id"], visible(audience)))]
    page_url = f"{n.config.public_url}/playlist/{row['id']}"
    return await render("playlist.html", playlist=playlists.playlist_json(row, n.config.public_url), tracks=tracks,
                        items=items, is_owner=audience.did == row["owner_did"], page_url=page_url,
                        **_embed_links(page_url, f"/embed/playlist/{row['id']}", LIST_EMBED_HEIGHT))


@bp.get("/settings")
async def settings_page() -> Response:
    return await render("settings.html", themes=preferences.THEMES)


# ---- link previews and embeds ----------------------------------------------------------------------------------


async def _embed(template: str, **context: Any) -> Response:
    """Embeds are the same for everyone (no viewer, no cookie needed), so caches may keep them a few minutes."""
    response = Response(await render_template(template, **context), content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/embed/track/<int:track_id>")
async def embed_track(track_id: int) -> Response:
    n = node()
    row = await open_track(n.db, track_id, ANONYMOUS)  # an embed is the same for everyone
    track = (await tracks_json(n.db, [row], None, n.config.public_url, peaks=True))[0]
    return await _embed("embed.html", track=track, page_url=f"{n.config.public_url}/track/{track_id}")


def _small_peaks(peaks: list[float] | None) -> list[int]:
    """A waveform cut to EMBED_PEAKS points (the loudest of each run) as whole percent."""
    if not peaks:
        return []
    step = len(peaks) / EMBED_PEAKS
    return [round(100 * max(peaks[int(i * step):max(int(i * step) + 1, int((i + 1) * step))]))
            for i in range(min(EMBED_PEAKS, len(peaks)))]


async def _list_embed(*, title: str, by: str, image_url: str | None, rows: list[Any], page_url: str) -> Response:
    n = node()
    tracks = [{**t, "peaks": _small_peaks(t["peaks"])}
              for t in await tracks_json(n.db, rows[:EMBED_LIST_MAX], None, n.config.public_url, peaks=True)]
    return await _embed("embed_list.html", title=title, by=by, image_url=image_url, tracks=tracks, page_url=page_url)


# A list embed is the same for everyone: the tracks anyone may see, and of those the ones ready to play.
EMBED_TRACKS = visible(ANONYMOUS) & playable()


@bp.get("/embed/playlist/<playlist_id>")
async def embed_playlist(playlist_id: str) -> Response:
    n = node()
    row = await playlists.get_playlist(n.db, playlist_id, None)  # an embed is public: private playlists are 404
    playlist = playlists.playlist_json(row, n.config.public_url)
    return await _list_embed(title=playlist["name"], by=f"a playlist by {playlist['owner_handle']}",
                             image_url=playlist["image_url"],
                             rows=await playlists.playlist_tracks(n.db, row["id"], EMBED_TRACKS),
                             page_url=f"{n.config.public_url}/playlist/{row['id']}")


@bp.get("/embed/album/<handle>/<slug>")
async def embed_album(handle: str, slug: str) -> Response:
    n = node()
    row = await albums.find_album(n.db, handle, slug, ANONYMOUS)  # an embed is the same for everyone
    album = albums.album_json(row, n.config.public_url)
    return await _list_embed(title=album["title"], by=album["artist"], image_url=album["image_url"],
                             rows=await albums.album_tracks(n.db, row["id"], EMBED_TRACKS),
                             page_url=f"{n.config.public_url}/u/{handle}/album/{slug}")


_TRACK_PATH = re.compile(r"^/(?:embed/)?track/(\d+)/?$")
_PLAYLIST_PATH = re.compile(r"^/(?:embed/)?playlist/([^/]+)/?$")
_ALBUM_PATH = re.compile(r"^/(?:u/([^/]+)/album|embed/album/([^/]+))/([^/]+)/?$")


@bp.get("/oembed")
async def oembed() -> Response:
    """oEmbed (https://oembed.com) for track, playlist and album pages: a `rich` iframe of their embed."""
    n = node()
    base = n.config.public_url
    url = request.args.get("url", "")
    fmt = request.args.get("format") or "json"  # an empty format= asks for the default
    if fmt != "json":
        return Response('{"detail": "only format=json is offered"}', status=501, content_type="application/json")
    path = urlsplit(url).path if url else ""
    width = _dimension(request.args.get("maxwidth"), EMBED_WIDTH)
    if match := _TRACK_PATH.match(path):
        # A link preview is the same for everyone: what anyone may see.
        track = track_json(await open_track(n.db, int(match.group(1)), ANONYMOUS), base, peaks=False)
        title, author, author_url = track["title"], track["artist"], f"{base}/u/{track['artist_handle']}"
        src, height = f"{base}/embed/track/{track['id']}", EMBED_HEIGHT
        thumbnail = None if track["sensitive"] else track["image_url"]  # no sensitive artwork in link previews
    elif match := _PLAYLIST_PATH.match(path):
        playlist = playlists.playlist_json(await playlists.get_playlist(n.db, match.group(1), None), base)
        title, author, author_url = playlist["name"], playlist["owner_handle"], f"{base}/u/{playlist['owner_handle']}"
        src, height, thumbnail = f"{base}/embed/playlist/{playlist['id']}", LIST_EMBED_HEIGHT, playlist["image_url"]
    elif match := _ALBUM_PATH.match(path):
        handle, slug = match.group(1) or match.group(2), match.group(3)
        album = albums.album_json(await albums.find_album(n.db, handle, slug, ANONYMOUS), base)
        title, author, author_url = album["title"], album["artist"], f"{base}/u/{album['artist_handle']}"
        src, height, thumbnail = f"{base}/embed/album/{handle}/{slug}", LIST_EMBED_HEIGHT, album["image_url"]
    else:
        raise NotFound("no embeddable page at that url; use a /track/{id}, /playlist/{id} or /u/{handle}/album/{slug}"
                       " url of this node")
    html = (f'<iframe src="{src}" width="{width}" height="{height}" style="border:0;border-radius:8px" '
            f'allow="autoplay; encrypted-media" loading="lazy" title="{_attr(title)} by {_attr(author)} on plyrd">'
            "</iframe>")
    body: dict[str, Any] = {
        "version": "1.0", "type": "rich", "provider_name": "plyrd", "provider_url": base, "title": title,
        "author_name": author, "author_url": author_url, "html": html, "width": width, "height": height,
        "cache_age": 3600,
    }
    if thumbnail:
        # Display renditions' longest side is at most 1000 px (plyrd.media.artwork.DISPLAY_SIDE).
        body.update(thumbnail_url=thumbnail, thumbnail_width=1000, thumbnail_height=1000)
    return jsonify(body)


def _dimension(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput("maxwidth must be a whole number of pixels")
    return min(int(raw), default)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
