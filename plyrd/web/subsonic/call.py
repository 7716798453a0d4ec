"""One Subsonic call as the method handlers see it, and the registry `@method` fills.

Handlers live in the modules beside this one, by area (system, browsing, files, listening, playlists...); each is a
plain coroutine that takes a `Call` and answers a response body (a dict, see plyrd.subsonic.envelope) or a Response
for binary methods. The dispatcher in `__init__` authenticates, finds the handler and renders the envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quart import Response
from werkzeug.datastructures import MultiDict

from ...auth.service import Session
from ...catalog.tracks import Audience
from ...node import Node
from ...subsonic.envelope import MISSING_PARAMETER, SubsonicError


@dataclass
class Call:
    params: MultiDict[str, str]
    session: Session
    node: Node

    @property
    def did(self) -> str:
        return self.session.did

    @property
    def audience(self) -> Audience:
        """The caller as the catalog's visibility rules see them."""
        return self.node.auth.audience(self.did, self.session.handle)

    def one(self) -> dict[str, str]:
        return {k: v for k, v in self.params.items()}

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if not value:
            raise SubsonicError(MISSING_PARAMETER, f"Required parameter is missing: {name}")
        return value


Handler = Callable[[Call], Awaitable[dict[str, Any] | Response]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name.lower()] = fn
        return fn
    return register

