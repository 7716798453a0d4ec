"""Subsonic's system methods: ping, license, folders, extensions, the user, scan status."""

from __future__ import annotations

from typing import Any

from ...subsonic import catalog as sc
from .call import Call, method


@method("ping")
async def ping(call: Call) -> dict[str, Any]:
    return {}


@method("getLicense")
async def get_license(call: Call) -> dict[str, Any]:
    return {"license": {"valid": True}}


@method("getMusicFolders")
async def get_music_folders(call: Call) -> dict[str, Any]:
    return {"musicFolders": {"musicFolder": [{"id": 1, "name": "plyrd"}]}}


@method("getOpenSubsonicExtensions")
async def get_extensions(call: Call) -> dict[str, Any]:
    # formPost is accepted but not advertised: a browser-hosted client on another origin that POSTs would be
    # refused by the node's cross-site check (plyrd.web.viewer), so such clients should keep to GET.
    return {"openSubsonicExtensions": [{"name": "apiKeyAuthentication", "versions": [1]}]}


@method("getUser")
async def get_user(call: Call) -> dict[str, Any]:
    # What this API lets a developer token do: listen, download, scrobble; no playlist editing or admin here.
    return {"user": {"username": call.session.handle or call.did, "scrobblingEnabled": True, "adminRole": False,
                     "settingsRole": False, "downloadRole": True, "uploadRole": False, "playlistRole": False,
                     "coverArtRole": False, "commentRole": False, "podcastRole": False, "streamRole": True,
                     "jukeboxRole": False, "shareRole": False, "videoConversionRole": False, "folder": [1]}}


@method("getScanStatus")
async def get_scan_status(call: Call) -> dict[str, Any]:
    return {"scanStatus": {"scanning": False, "count": await sc.song_count(call.node.db, call.audience)}}
