"""The node's labeler over HTTP: com.atproto.label.queryLabels, com.atproto.label.subscribeLabels (DAG-CBOR frames
over a WebSocket) and the node's did:web document (plyrd.moderation.labels holds the rules)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import libipld
from quart import Blueprint, Response, jsonify, request, websocket

from ..db import DatabaseError
from ..errors import InvalidInput
from ..inputs import whole_number
from ..moderation import labels
from .context import node
from .errors import error_response

bp = Blueprint("labeler", __name__)

MAX_SUBSCRIBERS = 200  # open subscribeLabels streams; each re-reads the labels table at least once a second
CLOSE_POLICY = 1008  # how XRPC streams close after an error frame


def _public(response: Response) -> Response:
    # Public, signed data that any ATProto app (a browser one too) may read.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/did.json")
async def did_document() -> Response:
    return _public(jsonify(node().labeler.did_document()))


@bp.get("/xrpc/com.atproto.label.queryLabels")
async def query_labels() -> Response:
    args = request.args
    try:
        query = labels.LabelQuery.parse(args.getlist("uriPatterns"), args.getlist("sources"), args.get("limit"),
                                        args.get("cursor"))
    except InvalidInput as e:  # XRPC's error shape, beside plyrd's own `detail`
        return error_response(400, e.detail, error="InvalidRequest", message=e.detail)
    found, cursor = await labels.query_labels(node().db, query)
    body: dict[str, Any] = {"labels": found}
    if cursor is not None:
        body["cursor"] = cursor
    return _public(jsonify(body))


def _frame(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


async def _refuse(error: str, message: str) -> None:
    await websocket.send(_frame({"op": -1}, {"error": error, "message": message}))
    await websocket.close(CLOSE_POLICY, message[:120])


async def _discard_incoming() -> None:
    # The stream only speaks; whatever a client sends is read and dropped so it cannot pile up in memory.
    while True:
        await websocket.receive()


@bp.websocket("/xrpc/com.atproto.label.subscribeLabels")
async def subscribe_labels() -> Any:
    labeler = node().labeler
    if labeler.subscribers >= MAX_SUBSCRIBERS:
        return Response("too many label subscribers, try again later", status=503)
    labeler.subscribers += 1
    drain: asyncio.Task[None] | None = None
    try:
        await websocket.accept()
        raw = websocket.args.get("cursor")
        try:
            cursor = None if raw is None else whole_number(raw, field="cursor")
        except InvalidInput as e:
            await _refuse("InvalidRequest", e.detail)
            return None
        newest = await labeler.newest_seq()
        if cursor is not None and cursor > newest:
            await _refuse("FutureCursor", f"cursor {cursor} is ahead of the newest label ({newest})")
            return None
        drain = asyncio.create_task(_discard_incoming())
        # No cursor: live only (what is signed from now on); a cursor: everything after it, then live.
        async for batch in labeler.follow(newest if cursor is None else cursor):
            for item in batch:
                await websocket.send(_frame({"op": 1, "t": "#labels"}, {"seq": item["seq"], "labels": [item["label"]]}))
        await websocket.close(1001, "the node is stopping")  # the labeler closed
    except DatabaseError:  # the node is stopping
        with contextlib.suppress(Exception):
            await websocket.close(1001, "the node is stopping")
    finally:
        labeler.subscribers -= 1
        if drain is not None:
            drain.cancel()
    return None
