"""A Subsonic app's side of /rest for tests: a signed-in artist (helpers.Artist, for the portal's own calls) who
also holds a developer token (POST /auth/app-password with a token_name) and calls /rest with it as OpenSubsonic's
apiKey. Test modules import these from here, never from each other; a module's own calls go in a subclass."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from helpers import Artist, sign_in
from pds_harness import Account
from subsonic_contract import same_content, validate_json


@dataclass
class Listener:
    artist: Artist  # the portal session (cookie + CSRF) of the same account
    account: Account
    token: str  # the developer token, sent as apiKey
    rest: httpx.Client

    @property
    def handle(self) -> str:
        return self.account.handle

    @property
    def url(self) -> str:
        return str(self.rest.base_url).rstrip("/")

    def upload(self, path: Path, *, wait: float = 60, **fields: Any) -> int:
        """The artist uploads a file with the portal's form fields (title, tags, image, ...); the upload must
        complete within `wait` seconds: the new track's id."""
        r = self.artist.upload(path, **fields)
        assert r.status_code == 200, r.text
        events = self.artist.wait(r.json()["upload_id"], timeout=wait)
        assert events[-1]["status"] == "completed", events
        return int(events[-1]["track_id"])

    def params(self, **extra: Any) -> dict[str, Any]:
        """A JSON call's query: the token and f=json, then the call's own."""
        return {"apiKey": self.token, "f": "json", **extra}

    def raw(self, name: str, /, **params: Any) -> httpx.Response:
        """The response as it comes (XML unless params say f=json; binary methods' bytes)."""
        return self.rest.get(f"/rest/{name}", params={"apiKey": self.token, **params})

    def _json(self, name: str, params: dict[str, Any]) -> httpx.Response:
        """A JSON call answered with HTTP 200 (as every /rest answer is, a failure too)."""
        r = self.rest.get(f"/rest/{name}", params=self.params(**params))
        assert r.status_code == 200, r.text
        return r

    def answer(self, name: str, /, **params: Any) -> dict[str, Any]:
        """A JSON call's answer: the inside of subsonic-response."""
        return self._json(name, params).json()["subsonic-response"]

    def call(self, name: str, /, **params: Any) -> dict[str, Any]:
        """A JSON call that must succeed; the inside of subsonic-response."""
        body = self.answer(name, **params)
        assert body["status"] == "ok", body
        return body

    def error(self, name: str, /, **params: Any) -> int:
        """A JSON call that must fail: its Subsonic error code."""
        body = self.answer(name, **params)
        assert body["status"] == "failed", body
        return body["error"]["code"]

    def checked(self, name: str, /, **params: Any) -> dict[str, Any]:
        """A JSON call validated against the method's OpenSubsonic schema, whose XML form carries the same content
        (random lists compared as multisets); the inside of subsonic-response."""
        r = self._json(name, params)
        validate_json(name, r.json())
        same_content(r.json(), self.raw(name, **params).content,
                     unordered=name == "getRandomSongs" or params.get("type") == "random")
        return r.json()["subsonic-response"]

    def xml(self, name: str, /, **params: Any) -> ET.Element:
        """An XML call that must succeed: its root element."""
        r = self.raw(name, **params)
        assert r.status_code == 200, r.text
        root = ET.fromstring(r.content)
        assert root.attrib["status"] == "ok", r.text
        return root


class CheckedListener(Listener):
    """A listener whose every JSON answer (call, error) is checked against the schema and the XML form."""

    def answer(self, name: str, /, **params: Any) -> dict[str, Any]:
        return self.checked(name, **params)


L = TypeVar("L", bound=Listener)


def rest_listener(url: str, account: Account, kind: type[L] = Listener, *, timeout: float = 30) -> L:
    """`account` signed in to the node at `url`, with a new developer token and a client for /rest (`kind`: a
    module's subclass)."""
    artist = sign_in(url, account)
    r = httpx.post(url + "/auth/app-password", json={"handle": account.handle, "app_password": account.password,
                                                     "token_name": "subsonic"}, timeout=30)
    assert r.status_code == 201, r.text
    return kind(artist, account, r.json()["token"], httpx.Client(base_url=url, timeout=timeout))
