"""Subsonic's system methods: ping, license, folders, extensions, the user and whose API key it is, the music
folder's scan (status; started by an admin)."""

from __future__ import annotations

from typing import Any

from ...subsonic import catalog as sc
from ...subsonic import folders
from ...subsonic.envelope import NOT_AUTHORIZED, SubsonicError
from .call import METHODS, Call, method


@method("ping")
async def ping(call: Call) -> dict[str, Any]:
    return {}


@method("getLicense")
async def get_license(call: Call) -> dict[str, Any]:
    return {"license": {"valid": True}}


@method("getMusicFolders")
async def get_music_folders(call: Call) -> dict[str, Any]:
    """The uploads (1, "plyrd") and each library folder the caller may see (plyrd.subsonic.folders)."""
    return {"musicFolders": {"musicFolder": await folders.music_folders(call.node.db, call.audience)}}


@method("getOpenSubsonicExtensions")
async def get_extensions(call: Call) -> dict[str, Any]:
    # Only what the node implements. formPost: /rest reads form POSTs from any origin (the dispatcher lets them by
    # the cross-site check, since their credentials are in the form, not in cookies).
    # transcodeOffset: stream's timeOffset (plyrd.subsonic.streaming); topSongsByArtistId: getTopSongs takes `id`.
    names = ["apiKeyAuthentication", "formPost", "transcodeOffset", "topSongsByArtistId"]
    if "getlyricsbysongid" in METHODS:
        names.append("songLyrics")
    return {"openSubsonicExtensions": [{"name": name, "versions": [1]} for name in names]}


def _username(call: Call) -> str:
    """Subsonic usernames are handles (a DID when the handle no longer resolves): what people type in their app."""
    return call.session.handle or call.did


@method("tokenInfo")
async def token_info(call: Call) -> dict[str, Any]:
    # OpenSubsonic apiKeyAuthentication: whom the API key signs in as (answered for any credentials, truthfully).
    return {"tokenInfo": {"username": _username(call)}}


@method("getUser")
async def get_user(call: Call) -> dict[str, Any]:
    asked = call.params.get("username")
    if asked and asked.strip().lstrip("@").lower() not in {_username(call).lower(), call.did.lower()}:
        raise SubsonicError(NOT_AUTHORIZED, "You may only see your own user")
    # The roles say what /rest lets this user do: listen, download (each track's download policy still applies),
    # scrobble, keep playlists; admin as the node's config lists them. Nothing here edits settings, uploads,
    # comments, shares, podcasts, cover art, the jukebox or videos.
    is_admin = call.node.auth.is_admin(call.did, call.session.handle)
    return {"user": {"username": _username(call), "scrobblingEnabled": True, "adminRole": is_admin,
                     "settingsRole": False, "downloadRole": True, "uploadRole": False, "playlistRole": True,
                     "coverArtRole": False, "commentRole": False, "podcastRole": False, "streamRole": True,
                     "jukeboxRole": False, "shareRole": False, "videoConversionRole": False,
                     "folder": [f["id"] for f in await folders.music_folders(call.node.db, call.audience)]}}


def _scanning(call: Call) -> bool:
    """Whether the music folder is being scanned (plyrd.library); a node without the library service never is."""
    node = call.node
    return type(node).library.built(node) and node.library.scanning


@method("getScanStatus")
async def get_scan_status(call: Call) -> dict[str, Any]:
    return {"scanStatus": {"scanning": _scanning(call), "count": await sc.song_count(call.node.db, call.audience)}}


@method("startScan")
async def start_scan(call: Call) -> dict[str, Any]:
    """An admin's app asks for a scan of the music folder (run in the background, as the admin page's button does;
    a running scan is joined). Anyone else: error 50, as Navidrome answers."""
    node = call.node
    if not node.auth.is_admin(call.did, call.session.handle):
        raise SubsonicError(NOT_AUTHORIZED, "Only admins may start a scan")
    requested = type(node).library_tasks.built(node)
    if requested:
        node.library_tasks.request_scan("admin")
    return {"scanStatus": {"scanning": requested or _scanning(call),
                           "count": await sc.song_count(node.db, call.audience)}}
