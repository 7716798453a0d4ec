"""Helpers several test modules share: a signed-in person who uploads, reading a node's database and blob files,
and reading records from the real PDS. Test modules import these from here, never from each other."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from audio_samples import make_audio
from conftest import ServedNode
from pds_harness import Account


@dataclass
class Artist:
    http: httpx.Client
    csrf: str
    did: str

    def upload(self, path: Path | None, *, image: tuple[str, bytes, str] | None = None,
               **fields: str) -> httpx.Response:
        files: dict[str, Any] = {}
        if path is not None:
            files["file"] = (path.name, path.read_bytes(), "application/octet-stream")
        if image is not None:
            files["image"] = image
        if not files:  # still multipart: text fields as parts without a filename
            files = {k: (None, v) for k, v in fields.items()}
            fields = {}
        return self.http.post("/tracks/", files=files, data=fields,
                              headers={"X-CSRF-Token": self.csrf}, timeout=60)

    def wait(self, upload_id: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Follow the server-sent progress events until the upload completes or fails."""
        events: list[dict[str, Any]] = []
        with self.http.stream("GET", f"/tracks/uploads/{upload_id}/progress", timeout=timeout) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["status"] in ("completed", "failed"):
                        break
        return events


def sign_in(url: str, account: Account) -> Artist:
    http = httpx.Client(base_url=url, timeout=30)
    r = http.post("/auth/app-password", json={"handle": account.handle, "app_password": account.password})
    assert r.status_code == 200, r.text
    me = r.json()
    return Artist(http, me["csrf_token"], me["did"])


def db_rows(node: ServedNode, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stored_files(node: ServedNode) -> set[str]:
    return {p.name for p in (node.data / "blobs").rglob("*") if p.is_file()}


def records(pds: Any, did: str, collection: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords", params={"repo": did, "collection": collection})
    return r.json()["records"]


def wait_for(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the PDS")
        time.sleep(0.1)


@dataclass
class Person:
    """A signed-in person (app-password browser session: cookie + CSRF header) and their PDS account."""

    me: Artist
    account: Account

    @property
    def did(self) -> str:
        return self.me.did

    @property
    def handle(self) -> str:
        return self.account.handle

    def _h(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-CSRF-Token": self.me.csrf, **(headers or {})}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.me.http.get(path, **kw)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.me.http.post(path, json=json, headers=self._h(headers))

    def put(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.me.http.put(path, json=json, headers=self._h(headers))

    def patch(self, path: str, json: Any = None) -> httpx.Response:
        return self.me.http.patch(path, json=json, headers=self._h())

    def delete(self, path: str) -> httpx.Response:
        return self.me.http.delete(path, headers=self._h())


def person(node: ServedNode, pds: Any, prefix: str) -> Person:
    account = pds.create_account(prefix)
    return Person(sign_in(node.url, account), account)


def anonymous(node: ServedNode) -> httpx.Client:
    return httpx.Client(base_url=node.url, timeout=30)


def db(node: ServedNode, sql: str, params: tuple = ()) -> list[tuple]:
    """Direct access to the node's database file (WAL: safe beside the running node) for checks and set-up."""
    conn = sqlite3.connect(node.data / "plyrd.db", timeout=10)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def upload(owner: Person, tmp_path: Path, name: str, *, seconds: float, frequency: float) -> dict[str, Any]:
    """A tone of `seconds` at `frequency` uploaded as an MP3 titled `name`, processed: its track JSON."""
    src = make_audio(tmp_path / f"{name}.mp3", "mp3", seconds=seconds, frequency=frequency)
    r = owner.me.upload(src, title=name)
    assert r.status_code == 200, r.text
    events = owner.me.wait(r.json()["upload_id"])
    assert events[-1]["status"] == "completed", events
    return owner.get(f"/tracks/{events[-1]['track_id']}").json()


def publish(node: ServedNode, pds: Any, track_id: int) -> tuple[str, str]:
    """The track's record (uri, cid): the node's own fm.plyr.track record, waited for until the artist's PDS
    holds it with the CID the node computed (so a publishing regression fails here)."""
    deadline = time.monotonic() + 20
    while True:
        uri, cid = db(node, "SELECT record_uri, record_cid FROM tracks WHERE id = ?", (track_id,))[0]
        if uri and cid:
            _, _, repo, collection, rkey = uri.split("/", 4)
            r = httpx.get(f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord",
                          params={"repo": repo, "collection": collection, "rkey": rkey}, timeout=30)
            if r.status_code == 200 and r.json()["cid"] == cid:
                return uri, cid
        assert time.monotonic() < deadline, f"track {track_id} never got its record on the PDS"
        time.sleep(0.2)


NOW = "2026-12-01T10:00:00.000Z"  # a record's createdAt in tests that write records as another client would


class Repo:
    """Another client writing to an account's repo directly, as plyr.fm itself would."""

    def __init__(self, pds: Any, account: Any) -> None:
        self.pds, self.account = pds, account
        s = httpx.post(f"{pds.pds_url}/xrpc/com.atproto.server.createSession",
                       json={"identifier": account.did, "password": account.password}).json()
        self.auth = {"Authorization": f"Bearer {s['accessJwt']}"}

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.pds.pds_url}/xrpc/com.atproto.repo.{method}",
                       json={"repo": self.account.did, **body}, headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()

    def blob(self, data: bytes, mime: str) -> dict[str, Any]:
        r = httpx.post(f"{self.pds.pds_url}/xrpc/com.atproto.repo.uploadBlob", content=data,
                       headers={**self.auth, "Content-Type": mime})
        assert r.status_code == 200, r.text
        return r.json()["blob"]

    def create(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.call("createRecord", {"collection": collection, "record": {"$type": collection, **record}})

    def server(self, method: str, body: dict[str, Any] | None = None) -> None:
        """com.atproto.server.<method> as the account (deactivateAccount, activateAccount...)."""
        r = httpx.post(f"{self.pds.pds_url}/xrpc/com.atproto.server.{method}", json=body, headers=self.auth)
        assert r.status_code == 200, r.text
