"""Access to the running Node from request handlers."""

from __future__ import annotations

from quart import current_app

from ..node import Node


def node() -> Node:
    return current_app.extensions["plyrd"]
