"""A small Jetstream-like websocket server for tests (the real one is not in the registries), and the conversion of
events captured from the real PDS firehose to Jetstream's JSON.

    server = JetstreamReplay()
    url = await server.start()          # ws://127.0.0.1:<port>/subscribe
    server.add(event)                   # a Jetstream JSON event (dict with time_us): sent to matching subscribers
    server.add_raw("not json")          # sent as-is (bytes: as a binary message) to every subscriber
    server.drop_after = 3               # abort each connection after it has sent 3 messages (no close frame)
    await server.stop()

It serves `/subscribe` as Jetstream does: `wantedCollections` (repeatable; exact NSIDs or `prefix.*`) filters commit
events (identity and account events always go out), `cursor` (time_us) replays from the first event at or after it,
then the connection follows new events live; without a cursor only events added after connecting are sent.

`to_jetstream` turns raw firehose frames into Jetstream events the way Jetstream does (one event per op), taking each
record's JSON from `com.atproto.repo.getRecord` (the reference PDS's own JSON form), not from plyrd's decoder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import libipld
from websockets.asyncio.server import Server, ServerConnection, serve


@dataclass
class Entry:
    time_us: int
    text: str | bytes  # bytes go out as a binary message
    collection: str | None  # commit events only
    raw: bool = False


class JetstreamReplay:
    def __init__(self) -> None:
        self.log: list[Entry] = []
        self.drop_after: int | None = None
        self.connections = 0
        self.queries: list[dict[str, list[str]]] = []
        self._server: Server | None = None
        self._changed = asyncio.Event()

    async def start(self) -> str:
        self._server = await serve(self._serve, "127.0.0.1", 0, compression=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/subscribe"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def add(self, event: Mapping[str, Any]) -> None:
        commit = event.get("commit") if event.get("kind") == "commit" else None
        collection = commit.get("collection") if isinstance(commit, Mapping) else None
        self._append(Entry(int(event["time_us"]), json.dumps(event), collection))

    def add_raw(self, text: str | bytes) -> None:
        last = self.log[-1].time_us if self.log else 0
        self._append(Entry(last, text, None, raw=True))

    def _append(self, entry: Entry) -> None:
        self.log.append(entry)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        if url.path != "/subscribe":
            await ws.close(1008, "not found")
            return
        query = parse_qs(url.query)
        self.connections += 1
        self.queries.append(query)
        wanted = query.get("wantedCollections", [])
        cursor = query.get("cursor")
        if cursor:
            start = int(cursor[0])
            index = next((i for i, e in enumerate(self.log) if e.time_us >= start), len(self.log))
        else:
            index = len(self.log)  # live tail
        sent = 0
        closed = asyncio.ensure_future(ws.wait_closed())
        while True:
            changed = self._changed
            while index < len(self.log):
                entry = self.log[index]
                index += 1
                if entry.collection is not None and wanted and not _matches(entry.collection, wanted):
                    continue
                await ws.send(entry.text)
                sent += 1
                if self.drop_after is not None and sent >= self.drop_after:
                    ws.transport.abort()  # the server goes away: no close frame
                    return
            waiting = asyncio.ensure_future(changed.wait())
            await asyncio.wait({waiting, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():  # the client left, or the server is closing
                waiting.cancel()
                return


def _matches(collection: str, wanted: list[str]) -> bool:
    for w in wanted:
        if w == collection or (w.endswith(".*") and collection.startswith(w[:-1])):
            return True
    return False


# --- firehose frames -> Jetstream events ---------------------------------------------------------------------------


def to_jetstream(frames: list[bytes], records: Mapping[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """Jetstream's events for firehose frames (#commit, #identity, #account; others dropped, as Jetstream does).
    `records` maps (at:// URI, CID) to the record's JSON as getRecord answered it. time_us is the frame's time,
    made strictly increasing."""
    events: list[dict[str, Any]] = []
    last = 0

    def stamp(body: Mapping[str, Any]) -> int:
        nonlocal last
        last = max(last + 1, int(datetime.fromisoformat(body["time"]).timestamp() * 1_000_000))
        return last

    for frame in frames:
        header, body = libipld.decode_dag_cbor_multi(frame)
        kind = header.get("t")
        if kind == "#commit":
            for op in body["ops"]:
                collection, rkey = op["path"].split("/", 1)
                commit: dict[str, Any] = {"rev": body["rev"], "operation": op["action"], "collection": collection,
                                          "rkey": rkey}
                if op["action"] != "delete":
                    cid = libipld.encode_cid(op["cid"])
                    commit["record"] = records[(f"at://{body['repo']}/{op['path']}", cid)]
                    commit["cid"] = cid
                events.append({"did": body["repo"], "time_us": stamp(body), "kind": "commit", "commit": commit})
        elif kind == "#identity":
            identity = {k: body[k] for k in ("did", "handle", "seq", "time") if k in body}
            events.append({"did": body["did"], "time_us": stamp(body), "kind": "identity", "identity": identity})
        elif kind == "#account":
            account = {k: body[k] for k in ("active", "did", "seq", "status", "time") if k in body}
            events.append({"did": body["did"], "time_us": stamp(body), "kind": "account", "account": account})
    return events
