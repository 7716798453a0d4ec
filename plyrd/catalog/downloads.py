"""Download policy: who may download a track's original file. The one rule, which every download path asks.

Three tiers, stored as these values (migration 0015):

- `anyone`: anybody, signed in or not (the default);
- `signed_in`: any signed-in listener; an anonymous visitor is refused with 401 (signing in helps);
- `artist_only`: nobody but the artist; everyone else is refused with 403.

An artist sets a default for their tracks (`users.download_policy`, the `download_policy` preference of
GET/POST /preferences/); a track may override it (`tracks.download_policy`, the upload and PATCH /tracks/{id} field;
NULL follows the artist's). The artist may always download their own tracks.

`download_refusal` is the rule. GET /audio/{id}/download, album zips (plyrd.catalog.albums.album_zip) and Subsonic's
`download` ask it; streaming (/audio/{id}, Subsonic `stream`) never does: listening is not downloading.

plyr.fm's values (`open`, `ask`, `supporters`, `off`, per artist only) are taken on input: `open` and `ask` (a nudge
to support the artist that never refuses) are `anyone`, `off` is `artist_only` (on plyr.fm `off` refuses the artist
too; here the artist keeps their own files). `supporters` is refused: plyrd has no supporters, and reading it as
anything else would either open the files wider than the artist asked or close them to the people they meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Forbidden, InvalidInput, PlyrdError, Unauthenticated

ANYONE = "anyone"
SIGNED_IN = "signed_in"
ARTIST_ONLY = "artist_only"
POLICIES = (ANYONE, SIGNED_IN, ARTIST_ONLY)
DEFAULT = ANYONE

# plyr.fm's names for the same tiers, accepted wherever a policy is written.
PLYR_ALIASES = {"open": ANYONE, "ask": ANYONE, "off": ARTIST_ONLY}


def parse_policy(name: str, value: Any) -> str:
    """A policy as a client wrote it (plyrd's names or plyr.fm's), in plyrd's names; 400 for anything else."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in POLICIES:
            return low
        if low in PLYR_ALIASES:
            return PLYR_ALIASES[low]
        if low == "supporters":
            raise InvalidInput(f"{name}: plyrd has no supporters; choose {', '.join(POLICIES)}")
    raise InvalidInput(f"{name} must be one of {', '.join(POLICIES)} (or plyr.fm's open, ask, off)")


def parse_track_policy(name: str, value: str) -> str | None:
    """A track's own policy from a form field; "" or "default" clears it (the track follows the artist's)."""
    if value.strip().lower() in ("", "default"):
        return None
    return parse_policy(name, value)


def policy_in_force(track_policy: str | None, artist_policy: str | None) -> str:
    """The policy that applies to a track: its own, else its artist's, else the default."""
    return track_policy or artist_policy or DEFAULT


def effective_policy(row: Mapping[str, Any]) -> str:
    """The policy in force for a track row of the read model (TRACK_SELECT or TRACK_ALBUM_SELECT, which carry the
    track's `download_policy` and the artist's as `artist_download_policy`)."""
    return policy_in_force(row["download_policy"], row["artist_download_policy"])


def download_refusal(policy: str, *, artist_did: str, viewer_did: str | None) -> PlyrdError | None:
    """Why `viewer_did` (None: not signed in) may not download a track of `artist_did` under `policy`, as the error to
    raise; None when they may."""
    if viewer_did is not None and viewer_did == artist_did:
        return None
    if policy == ANYONE:
        return None
    if policy == SIGNED_IN:
        return None if viewer_did is not None else Unauthenticated("sign in to download this track")
    return Forbidden("the artist keeps downloads of this track to themselves")


def track_refusal(row: Mapping[str, Any], viewer_did: str | None) -> PlyrdError | None:
    """download_refusal for a track row of the read model. Another repo's track (remote) is downloaded where its
    artist publishes it: this node only plays it."""
    if row["source"] == "remote":
        return Forbidden("this track is another node's: download it where its artist publishes it")
    return download_refusal(effective_policy(row), artist_did=row["artist_did"], viewer_did=viewer_did)


def check_download(row: Mapping[str, Any], viewer_did: str | None) -> None:
    """Raise the refusal when `viewer_did` may not download this track's original."""
    if (refusal := track_refusal(row, viewer_did)) is not None:
        raise refusal


def downloadable(row: Mapping[str, Any], viewer_did: str | None) -> bool:
    """Whether `viewer_did` may download the track (the track JSON's `downloadable`)."""
    return track_refusal(row, viewer_did) is None
