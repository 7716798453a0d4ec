"""The records plyrd writes to users' PDSes, built as plain dicts with their `$type` and already validated.

    record = like_record(track_uri, track_cid, created_at=now)      # raises RecordInvalid if it breaks the lexicon

Validation against the lexicons is plyrd.atproto.lexicon, record keys plyrd.atproto.tids, CIDs and blob refs
plyrd.atproto.cbor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import __version__
from ..errors import InvalidInput
from .lexicon import validate

DateLike = datetime | str
TEAL_STATUS_TTL = 600  # seconds a "now playing" status stays true, as plyr.fm writes it
LIST_TYPES = ("album", "playlist", "liked")


def at_uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def strong_ref(uri: str, cid: str) -> dict[str, str]:
    """A com.atproto.repo.strongRef: one exact version of a record."""
    return {"uri": uri, "cid": cid}


def format_datetime(when: DateLike) -> str:
    """UTC, millisecond precision, `Z`: the form atproto apps write (`2026-08-20T12:34:56.789Z`). Naive = UTC.
    A string is passed through (validation checks it)."""
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Optional fields are left out rather than written empty."""
    if value is not None and value != "" and value != [] and value != {}:
        out[key] = value


def _built(collection: str, record: dict[str, Any]) -> dict[str, Any]:
    validate(collection, record)
    return record


def track_record(
    *,
    title: str,
    artist: str,
    file_type: str,
    created_at: DateLike,
    audio_url: str | None = None,
    audio_blob: Mapping[str, Any] | None = None,
    album: str | None = None,
    duration: float | None = None,
    features: Sequence[Mapping[str, Any]] | None = None,
    image_url: str | None = None,
    support_gate: str | Mapping[str, Any] | None = None,
    description: str | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """An fm.plyr.track record. `audio_url` is the node's public URL for the audio; `audio_blob` (from `blob_ref`)
    the audio on the artist's PDS. Every rewrite of a track must pass the blob again: a record rewritten without
    it lets the PDS delete the audio. `features` are {did, handle?, displayName?}; `labels` self-label values."""
    if not audio_url and not audio_blob:
        raise InvalidInput("a track record needs audioUrl or audioBlob")
    record: dict[str, Any] = {"$type": "fm.plyr.track", "title": title, "artist": artist}
    _put(record, "audioUrl", audio_url)
    record["fileType"] = file_type
    _put(record, "album", album)
    if duration is not None:
        record["duration"] = max(0, round(duration))  # whole seconds: floats are not in the data model
    if features:
        record["features"] = [
            {k: f[k] for k in ("did", "handle", "displayName") if f.get(k) not in (None, "")} for f in features
        ]
    _put(record, "imageUrl", image_url)
    record["createdAt"] = format_datetime(created_at)
    if support_gate is not None:
        record["supportGate"] = {"type": support_gate} if isinstance(support_gate, str) else dict(support_gate)
    _put(record, "description", description)
    if labels:
        record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in labels]}
    if audio_blob:
        record["audioBlob"] = dict(audio_blob)
    return _built("fm.plyr.track", record)


def like_record(subject_uri: str, subject_cid: str, created_at: DateLike) -> dict[str, Any]:
    """An fm.plyr.like of one version of a track."""
    return _built("fm.plyr.like", {
        "$type": "fm.plyr.like",
        "subject": strong_ref(subject_uri, subject_cid),
        "createdAt": format_datetime(created_at),
    })


def comment_record(
    subject: Mapping[str, str], text: str, timestamp_ms: int, created_at: DateLike, updated_at: DateLike | None = None
) -> dict[str, Any]:
    """An fm.plyr.comment on `subject` (a strongRef) at a playback position in milliseconds."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.comment",
        "subject": strong_ref(subject["uri"], subject["cid"]),
        "text": text,
        "timestampMs": timestamp_ms,
        "createdAt": format_datetime(created_at),
    }
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.comment", record)


def list_record(
    list_type: str,
    name: str | None,
    items: Sequence[Mapping[str, str]],
    created_at: DateLike,
    updated_at: DateLike | None = None,
) -> dict[str, Any]:
    """An fm.plyr.list (album, playlist or liked) of strongRefs, in order."""
    if list_type not in LIST_TYPES:
        # The lexicon's set is open, but plyr.fm only understands these; plyrd writes nothing else.
        raise InvalidInput(f"listType must be one of {', '.join(LIST_TYPES)}")
    record: dict[str, Any] = {"$type": "fm.plyr.list"}
    _put(record, "name", name)
    record["listType"] = list_type
    record["items"] = [{"subject": strong_ref(i["uri"], i["cid"])} for i in items]
    record["createdAt"] = format_datetime(created_at)
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.list", record)


def profile_record(
    *, created_at: DateLike, bio: str | None = None, avatar: str | None = None, updated_at: DateLike | None = None
) -> dict[str, Any]:
    """The fm.plyr.actor.profile record (rkey `self`)."""
    record: dict[str, Any] = {"$type": "fm.plyr.actor.profile"}
    _put(record, "avatar", avatar)
    _put(record, "bio", bio)
    record["createdAt"] = format_datetime(created_at)
    if updated_at is not None:
        record["updatedAt"] = format_datetime(updated_at)
    return _built("fm.plyr.actor.profile", record)


def _play_fields(
    track_name: str,
    artists: Sequence[str],
    played_time: DateLike,
    music_service_uri: str,
    submission_client_agent: str,
    duration: float | None,
    release_name: str | None,
    origin_uri: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "trackName": track_name,
        "artists": [{"artistName": name} for name in artists],
        "musicServiceUri": music_service_uri,
        "submissionClientAgent": submission_client_agent,
        "playedTime": format_datetime(played_time),
    }
    if duration is not None:
        fields["duration"] = max(0, round(duration))
    _put(fields, "releaseName", release_name)
    _put(fields, "originUri", origin_uri)
    return fields


def teal_play_record(
    *,
    track_name: str,
    artists: Sequence[str],
    played_time: DateLike,
    music_service_uri: str,
    submission_client_agent: str = f"plyrd/{__version__}",
    duration: float | None = None,
    release_name: str | None = None,
    origin_uri: str | None = None,
) -> dict[str, Any]:
    """An fm.teal.feed.play (a scrobble). Key it with `tid_for_time(played_time)` so a retry is idempotent."""
    fields = _play_fields(track_name, artists, played_time, music_service_uri, submission_client_agent, duration,
                          release_name, origin_uri)
    return _built("fm.teal.feed.play", {"$type": "fm.teal.feed.play", **fields})


def teal_status_record(
    *, item: Mapping[str, Any], time: DateLike | None = None, expiry: DateLike | None = None
) -> dict[str, Any]:
    """The fm.teal.actor.status record (rkey `self`): `item` is a play record (its $type is dropped) or the same
    fields; `expiry` defaults to `time` + 10 minutes."""
    now = time if time is not None else datetime.now(UTC)
    if expiry is None:
        base = now if isinstance(now, datetime) else datetime.fromisoformat(now.replace("Z", "+00:00"))
        expiry = base + timedelta(seconds=TEAL_STATUS_TTL)
    return _built("fm.teal.actor.status", {
        "$type": "fm.teal.actor.status",
        "time": format_datetime(now),
        "expiry": format_datetime(expiry),
        "item": {k: v for k, v in item.items() if k != "$type"},
    })
