"""Rate limits: the token buckets themselves (plyrd.ratelimit, on a fake clock), then through a real node process
and the real PDS: now-playing reports (plyr.fm's 120 a minute) and uploads (20 a minute) per signed-in person,
answered 429 with Retry-After and a {"detail"} that says when to try again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from audio_samples import make_audio
from conftest import ServedNode, node_fixture
from helpers import Artist, sign_in

from plyrd.errors import RateLimited
from plyrd.ratelimit import RateLimiter, describe_rate

# ---- the buckets, without a node --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(120, per=60, clock=clock)
    assert [limiter.take("did:plc:a") for _ in range(120)] == [0.0] * 120  # a burst of the whole budget
    assert limiter.take("did:plc:a") == pytest.approx(0.5)  # then one every half second
    assert limiter.take("did:plc:a") == pytest.approx(0.5)  # refused: nothing taken, the wait does not grow
    assert limiter.take("did:plc:b") == 0.0  # everyone has their own bucket
    clock.now += 0.5
    assert limiter.take("did:plc:a") == 0.0
    assert limiter.take("did:plc:a") == pytest.approx(0.5)
    clock.now += 3600  # refills up to the limit, never beyond
    assert sum(limiter.take("did:plc:a") == 0.0 for _ in range(200)) == 120


def test_check_raises_with_the_wait_in_whole_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(20, per=60, clock=clock)
    for _ in range(20):
        limiter.check("did:plc:a", "uploads")
    with pytest.raises(RateLimited) as refused:
        limiter.check("did:plc:a", "uploads")
    assert refused.value.retry_after == 3
    assert refused.value.detail == "too many uploads: at most 20 a minute; try again in 3 s"
    clock.now += 2.2
    with pytest.raises(RateLimited) as refused:
        limiter.check("did:plc:a", "uploads")
    assert refused.value.retry_after == 1  # 0.8 s left: rounded up, never 0
    assert [describe_rate(10, 3600), describe_rate(5, 30), describe_rate(1, 1)] == [
        "10 an hour", "5 every 30 s", "1 a second"]


def test_memory_is_bounded_and_forgetting_is_lenient() -> None:
    clock = Clock()
    limiter = RateLimiter(2, per=60, max_keys=100, clock=clock)
    for _ in range(2):
        limiter.take("did:plc:spent")
    assert limiter.take("did:plc:spent") > 0
    for i in range(1000):
        limiter.take(f"did:plc:{i}")
    assert len(limiter) == 100
    assert limiter.take("did:plc:spent") == 0.0  # evicted: as if new, never stricter
    with pytest.raises(ValueError):
        RateLimiter(0, per=60)


# ---- through a node ---------------------------------------------------------------------------------------------


node = node_fixture("ratelimit")


def call(who: Artist, method: str, path: str, **kw: object) -> httpx.Response:
    return who.http.request(method, path, headers={"X-CSRF-Token": who.csrf}, **kw)  # type: ignore[arg-type]


def until_refused(send: object, most: int) -> tuple[list[int], httpx.Response, float]:
    """Send until a 429 (at most `most` times): the statuses before it, the refusal, and the seconds it took."""
    statuses: list[int] = []
    started = time.monotonic()
    for _ in range(most):
        r = send()  # type: ignore[operator]
        if r.status_code == 429:
            return statuses, r, time.monotonic() - started
        statuses.append(r.status_code)
    raise AssertionError(f"no 429 after {most} requests: {statuses[-5:]}")


def test_now_playing_is_limited_per_person(node: ServedNode, pds, tmp_path: Path) -> None:
    listener = sign_in(node.url, pds.create_account("limited"))
    other = sign_in(node.url, pds.create_account("unlimited"))
    song = make_audio(tmp_path / "song.mp3", "mp3", seconds=1, frequency=440)
    r = listener.upload(song, title="one of many")
    assert r.status_code == 200, r.text
    track_id = listener.wait(r.json()["upload_id"])[-1]["track_id"]
    report = {"track_id": track_id, "progress_ms": 0}

    # 120 reports at once pass (plus the refill while they are sent: two a second); then 429.
    passed, refused, took = until_refused(lambda: call(listener, "POST", "/now-playing/", json=report), 400)
    assert set(passed) == {200} and 120 <= len(passed) <= 120 + 2 * took + 1
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {"detail": "too many now-playing reports: at most 120 a minute; try again in 1 s"}
    assert refused.headers["content-type"].startswith("application/json")

    # Someone else, clearing, reading and anonymous callers are not held by it.
    assert call(other, "POST", "/now-playing/", json=report).status_code == 200
    assert httpx.get(f"{node.url}/now-playing/by-did/{listener.did}").status_code == 200
    assert httpx.post(f"{node.url}/now-playing/", json=report).status_code == 401
    assert call(listener, "DELETE", "/now-playing/").status_code == 200
    time.sleep(int(refused.headers["Retry-After"]))
    assert call(listener, "POST", "/now-playing/", json=report).status_code == 200  # the bucket refilled


def test_uploads_are_limited_per_person(node: ServedNode, pds) -> None:
    artist = sign_in(node.url, pds.create_account("prolific"))
    other = sign_in(node.url, pds.create_account("patient"))
    # 20 a minute, counted whether or not the upload is any good (these have no file: 400).
    passed, refused, took = until_refused(lambda: artist.upload(None, title="no file"), 100)
    assert set(passed) == {400} and 20 <= len(passed) <= 20 + took / 3 + 1
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert refused.json()["detail"].startswith("too many uploads: at most 20 a minute; try again in ")
    assert other.upload(None, title="no file").status_code == 400  # not refused: their own budget
    assert httpx.post(f"{node.url}/tracks/", files={"title": (None, "x")}).status_code == 401  # anonymous: not counted
