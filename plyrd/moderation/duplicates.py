"""Duplicate recordings on a shared node: a new upload that sounds like another uploader's track is flagged for the
admins' review, the self-hosted stand-in for plyr.fm's AuDD scan.

Each uploaded track gets an acoustic fingerprint (Chromaprint, plyrd.media.chromaprint) of its first two minutes,
kept in track_fingerprints with a few of its items as keys (track_fingerprint_keys). A new one is compared with the
fingerprints of OTHER users' tracks (an artist re-uploading their own track is not a case): candidates come from the
key index (items two encodings of one recording share exactly) and from tracks of about the same length, then each
is aligned and its bit error rate measured. A match opens (or joins) a report case on the new track with the reason
"duplicate", naming the earlier track (plyrd.moderation.reports.flag_by_node); an admin decides.

Not fingerprinted: music-folder tracks (source 'library': scans must stay fast, and the folder is the operator's own),
other repos' tracks (source 'remote': the node does not host them) and tracks under 10 s. A node without libchromaprint
says so once at start-up and skips the check (`available`), as it goes without the system LAME; so does
moderation.fingerprints = false. The check never fails an upload: what goes wrong is logged, the track stays as it is.

Optional outside lookups (an operator's keys in config, needing network, NOT exercised by the tests): AcoustID
(moderation.acoustid_key) with the same fingerprint, and AudD (moderation.audd_key) with a 20-second excerpt. A
recording either knows is flagged with the reason "copyright" (unless its artist is the uploader by name).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..db import Database
from ..threads import ThreadSlots
from .reports import flag_by_node

if TYPE_CHECKING:
    import numpy as np

    from ..media.chromaprint import Comparison, Fingerprint

log = logging.getLogger("plyrd.moderation.duplicates")

MATCH_BIT_ERROR = 0.15  # at most this share of differing bits: the same recording (measured: re-encodings 0-5 %,
#                         a 3 s shift 4 %, different recordings 42-45 %)
MIN_SHARED_KEYS = 2  # key-index candidates share at least this many keys with the new fingerprint
KEY_CANDIDATES = 20  # the most key-sharing tracks compared
DURATION_CANDIDATES = 20  # and the tracks nearest in length, within DURATION_WINDOW seconds (a heavy re-encoding may
DURATION_WINDOW = 3.0  # keep too few exact items for the index, but rarely changes the length)
MIN_DURATION = 10.0  # shorter tracks are not fingerprinted: too little to tell one recording from another


@functools.cache
def available() -> bool:
    """Whether the check can run: pyacoustid's binding is installed and the system has libchromaprint. Looked up
    once, without loading the library: Debian's links FFmpeg's libavcodec (a second copy beside PyAV's, ~20 MB of
    RSS), which an idle node does without; the first fingerprint loads it (plyrd.media.chromaprint.library)."""
    import ctypes.util
    import importlib.util

    try:
        if importlib.util.find_spec("chromaprint") is None:  # None also when its import is blocked
            return False
    except ValueError:
        return False
    return ctypes.util.find_library("chromaprint") is not None


def enabled(config: Config) -> bool:
    return bool(config["moderation.fingerprints"]) and available()


def start_up_notice(config: Config) -> str | None:
    """What the node says once at start-up about the check, when it cannot run though configured to."""
    if config["moderation.fingerprints"] and not available():
        return ("duplicate-recording check off: libchromaprint not found (install libchromaprint1; "
                "or set moderation.fingerprints = false)")
    return None


@dataclass(frozen=True)
class Match:
    track_id: int
    title: str
    artist_did: str
    handle: str | None
    comparison: Comparison

    def describe(self) -> str:
        by = f"@{self.handle}" if self.handle else self.artist_did
        c = self.comparison
        shift = f", shifted {c.offset_seconds:+.1f} s" if abs(c.offset_seconds) >= 0.5 else ""
        return (f"sounds like track {self.track_id} \u201c{self.title}\u201d by {by}: the same recording "
                f"({c.bit_error:.1%} of fingerprint bits differ over {c.overlap_seconds:.0f} s{shift})")


async def check_upload(db: Database, slots: ThreadSlots, config: Config, track_id: int, src: Path) -> list[Match]:
    """Fingerprint an uploaded track's audio and flag it when it matches another user's track (or an outside
    service knows it). Returns the matches. Never raises (but lets a cancellation through): a failure is logged and
    the upload goes on. Done once per audio: a resumed job finds the fingerprint already there."""
    try:
        return await _check(db, slots, config, track_id, src)
    except Exception as e:
        log.warning("duplicate check failed", extra={"fields": {"track_id": track_id, "error": str(e)}})
        return []


async def _check(db: Database, slots: ThreadSlots, config: Config, track_id: int, src: Path) -> list[Match]:
    if not enabled(config):
        return []
    track = await db.fetchone("SELECT id, artist_did, original_sha, duration, source FROM tracks WHERE id = ?",
                              (track_id,))
    if track is None or track["source"] != "upload" or (track["duration"] or 0.0) < MIN_DURATION:
        return []
    if await db.fetchone("SELECT 1 FROM track_fingerprints WHERE track_id = ? AND audio_sha = ?",
                         (track_id, track["original_sha"])) is not None:
        return []  # done before this job was interrupted
    from ..media.chromaprint import fingerprint

    started = time.perf_counter()
    fp = await slots.run(fingerprint, src)
    outside = await outside_findings(db, config, track["artist_did"], fp, src, track["duration"])
    async with db.write() as conn:
        # Stored and compared in one transaction: of two uploads of one recording at the same moment, the second to
        # get here sees the first.
        await store(conn, track_id, track["original_sha"], track["duration"], fp)
        matches = await find_matches(conn, track_id, track["artist_did"], track["duration"], fp)
        notes = [m.describe() for m in matches[:3]] + outside
        if notes:
            reason = "duplicate" if matches else "copyright"
            await flag_by_node(conn, "track", str(track_id), reason, "; ".join(notes))
    log.info("fingerprinted", extra={"fields": {
        "track_id": track_id, "items": len(fp.items), "matches": [m.track_id for m in matches],
        "outside": len(outside), "ms": round((time.perf_counter() - started) * 1000)}})
    return matches


async def store(conn: Any, track_id: int, audio_sha: str, duration: float, fp: Fingerprint) -> None:
    """Keep a track's fingerprint and its keys (replacing what an earlier audio of the track left)."""
    from ..media.chromaprint import keys

    await conn.execute("DELETE FROM track_fingerprints WHERE track_id = ?", (track_id,))
    await conn.execute(
        "INSERT INTO track_fingerprints(track_id, audio_sha, duration, seconds, fp) VALUES (?, ?, ?, ?, ?)",
        (track_id, audio_sha, float(duration or 0.0), fp.seconds, fp.to_bytes()))
    await conn.executemany("INSERT OR IGNORE INTO track_fingerprint_keys(key, track_id) VALUES (?, ?)",
                           [(k, track_id) for k in keys(fp.items)])


async def find_matches(conn: Any, track_id: int, artist_did: str, duration: float, fp: Fingerprint) -> list[Match]:
    """Other users' tracks that are the same recording as `fp`, best first (inside the caller's transaction)."""
    from ..media.chromaprint import distinctive, keys

    if not distinctive(fp.items):
        return []  # a steady tone or silence "matches" every other one: nothing to tell an admin
    candidates: dict[int, None] = {}
    async with conn.execute(
        "SELECT k.track_id FROM track_fingerprint_keys k JOIN tracks t ON t.id = k.track_id"
        " WHERE k.key IN (SELECT value FROM json_each(?)) AND k.track_id != ? AND t.artist_did != ?"
        " GROUP BY k.track_id HAVING count(*) >= ? ORDER BY count(*) DESC LIMIT ?",
        (json.dumps(keys(fp.items)), track_id, artist_did, MIN_SHARED_KEYS, KEY_CANDIDATES)) as cur:
        candidates.update((row[0], None) for row in await cur.fetchall())
    async with conn.execute(
        "SELECT f.track_id FROM track_fingerprints f JOIN tracks t ON t.id = f.track_id"
        " WHERE f.duration BETWEEN ? AND ? AND f.track_id != ? AND t.artist_did != ?"
        " ORDER BY abs(f.duration - ?) LIMIT ?",
        (duration - DURATION_WINDOW, duration + DURATION_WINDOW, track_id, artist_did, duration,
         DURATION_CANDIDATES)) as cur:
        candidates.update((row[0], None) for row in await cur.fetchall())
    if not candidates:
        return []
    async with conn.execute(
        "SELECT f.track_id, f.fp, t.title, t.artist_did, u.handle FROM track_fingerprints f"
        " JOIN tracks t ON t.id = f.track_id LEFT JOIN users u ON u.did = t.artist_did"
        " WHERE f.track_id IN (SELECT value FROM json_each(?))", (json.dumps(list(candidates)),)) as cur:
        rows = [dict(zip(r.keys(), tuple(r), strict=True)) for r in await cur.fetchall()]
    # A few milliseconds of numpy for ~40 candidates: a thread, so the event loop keeps answering requests.
    compared = await asyncio.to_thread(_compare_all, fp.items, [r["fp"] for r in rows])
    found = [Match(r["track_id"], r["title"], r["artist_did"], r["handle"], c)
             for r, c in zip(rows, compared, strict=True) if c.bit_error <= MATCH_BIT_ERROR]
    return sorted(found, key=lambda m: (m.comparison.bit_error, m.track_id))


def _compare_all(items: np.ndarray, blobs: list[bytes]) -> list[Comparison]:
    from ..media.chromaprint import Fingerprint, compare

    return [compare(items, Fingerprint.items_of(b)) for b in blobs]


# ---- outside lookups: only with an operator's key in config; they need network, and the tests never call them

ACOUSTID_URL = "https://api.acoustid.org/v2/lookup"
AUDD_URL = "https://api.audd.io/"
ACOUSTID_MIN_SCORE = 0.9
AUDD_EXCERPT = (30.0, 20.0)  # start, seconds: past a typical intro, as long as AudD's recogniser wants


async def outside_findings(db: Database, config: Config, artist_did: str, fp: Fingerprint, src: Path,
                           duration: float) -> list[str]:
    """What AcoustID and AudD say about the recording, when their keys are set (else nothing, without a request).
    A recording credited to the uploader (by handle or display name) is theirs to upload, as plyr.fm has it."""
    acoustid_key, audd_key = config["moderation.acoustid_key"], config["moderation.audd_key"]
    if not acoustid_key and not audd_key:
        return []
    from ..atproto.net import make_http_client

    user = await db.fetchone("SELECT handle, display_name FROM users WHERE did = ?", (artist_did,))
    own = {n.casefold() for n in ((user["handle"] or "").split(".")[0], user["display_name"] or "") if n} \
        if user else set()
    found: list[tuple[str, str, str]] = []  # (service, title, artist)
    async with make_http_client(allow_private=False, timeout=20.0, user_agent="plyrd (duplicate check)") as http:
        for service, key, lookup in (("AcoustID", acoustid_key, _acoustid), ("AudD", audd_key, _audd)):
            if not key:
                continue
            try:
                found += [(service, t, a) for t, a in await lookup(http, key, fp, src, duration)]
            except Exception as e:  # an outside service down or refusing the key never holds up an upload
                log.warning("outside lookup failed", extra={"fields": {"service": service, "error": str(e)}})
    return [f"{service} knows this recording: \u201c{title}\u201d by {artist}"
            for service, title, artist in found if artist.casefold() not in own][:3]


async def _acoustid(http: Any, key: str, fp: Fingerprint, src: Path, duration: float) -> list[tuple[str, str]]:
    """(title, artist) of the recordings AcoustID matches with a score of at least ACOUSTID_MIN_SCORE.
    NOT exercised in tests (network)."""
    from ..atproto.net import get_json

    reply = await get_json(http, ACOUSTID_URL, service="AcoustID", params={
        "client": key, "format": "json", "meta": "recordings", "duration": str(int(duration)),
        "fingerprint": fp.encoded})
    out: list[tuple[str, str]] = []
    for result in reply.get("results") or []:
        if not isinstance(result, dict) or float(result.get("score") or 0) < ACOUSTID_MIN_SCORE:
            continue
        for rec in result.get("recordings") or []:
            if isinstance(rec, dict) and rec.get("title"):
                artists = ", ".join(str(a.get("name")) for a in rec.get("artists") or [] if isinstance(a, dict))
                out.append((str(rec["title"]), artists or "?"))
    return out


async def _audd(http: Any, key: str, fp: Fingerprint, src: Path, duration: float) -> list[tuple[str, str]]:
    """(title, artist) of what AudD recognises in a 20-second excerpt (mono 11 kHz WAV, ~440 kB).
    NOT exercised in tests (network)."""
    from ..media.chromaprint import excerpt_wav

    start = AUDD_EXCERPT[0] if duration > sum(AUDD_EXCERPT) else 0.0
    wav = await asyncio.to_thread(excerpt_wav, src, start=start, seconds=AUDD_EXCERPT[1])
    response = await http.post(AUDD_URL, data={"api_token": key}, files={"file": ("excerpt.wav", wav, "audio/wav")})
    response.raise_for_status()
    reply = response.json()
    result = reply.get("result") if isinstance(reply, dict) else None
    if reply.get("status") != "success" or not isinstance(result, dict) or not result.get("title"):
        return []
    return [(str(result["title"]), str(result.get("artist") or "?"))]
