"""The running node: configuration, secrets, database and workers, wired together without any HTTP.

The web layer holds one `Node`; command-line tools and tests can build one too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from . import __version__, keys
from .config import CONFIG_FILENAME, Config
from .db import Database
from .workers import Workers, sleep_or_stop

if TYPE_CHECKING:
    import httpx

    from .atproto.identity import IdentityResolver
    from .atproto.outbox import Outbox
    from .auth.service import AuthService
    from .catalog.reconcile import ReconcileReport
    from .catalog.revisions import AudioReplacements
    from .catalog.track_import import TrackImporter
    from .catalog.uploads import Uploads
    from .ingest.subscriber import Subscriber
    from .library.schedule import LibraryTasks
    from .library.service import Library
    from .moderation.labels import Labeler
    from .network.follows import Follows
    from .network.remote_audio import RemoteAudio
    from .network.remote_tracks import RemoteTracks
    from .search import Search
    from .storage import BlobStore

log = logging.getLogger("plyrd.node")

HOUSEKEEPING_INTERVAL = 3600.0
REMOTE_REFRESH_SECONDS = 86400.0  # a remote track's record is read again after a day


# The files the node keeps at the top of its data directory (with SQLite's -wal, -shm and -journal beside the
# databases; search.db.new is `plyrd reindex`'s file in the making) and the directories whose whole tree is its own.
OWN_FILES = frozenset({"plyrd.db", "search.db", "search.db.new", "search.lock", "library.lock",
                       keys.SECRETS_FILENAME, CONFIG_FILENAME})
OWN_DIRS = ("blobs", "tmp")
_SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")


def make_private(data_dir: Path) -> None:
    """Create the data directory with mode 0700, or tighten one that an older plyrd left open to others.

    New files are private anyway (the plyrd command runs with umask 077, and the library creates its databases,
    secrets and blobs 0600). A data directory that is not 0700 yet was made by an older version under the usual
    umask 022: its own files become 0600 and its own directories 0700 (blobs/ walked once, here), symlinks and
    files it does not know left alone; the directory itself is tightened last, so an interrupted pass runs again.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0:
        return  # the usual case: one stat per start
    failed: list[str] = []

    def restrict(path: str, want: int, is_dir: bool, follow: bool = False) -> None:
        try:
            st = os.stat(path, follow_symlinks=follow)
            if (stat.S_ISDIR(st.st_mode) if is_dir else stat.S_ISREG(st.st_mode)) \
                    and stat.S_IMODE(st.st_mode) != want:
                os.chmod(path, want)
        except FileNotFoundError:
            pass
        except OSError as e:
            failed.append(f"{path}: {e.strerror}")

    for entry in os.scandir(data_dir):
        name = entry.name
        for suffix in _SQLITE_SUFFIXES:
            name = name.removesuffix(suffix)
        if name in OWN_FILES:
            restrict(entry.path, 0o600, is_dir=False)
    for name in OWN_DIRS:
        for top, _dirs, files in os.walk(data_dir / name):  # does not follow symlinks
            restrict(top, 0o700, is_dir=True)
            for f in files:
                restrict(os.path.join(top, f), 0o600, is_dir=False)
    restrict(str(data_dir), 0o700, is_dir=True, follow=True)
    if failed:
        log.warning("could not make the data directory private", extra={"fields": {
            "data": str(data_dir), "failures": len(failed), "first": failed[0]}})
    else:
        log.info("data directory made private (mode 0700, files 0600)", extra={"fields": {"data": str(data_dir)}})


def prepare_data_dir(config: Config) -> None:
    """Create the data directory layout, private to the node's user, and clear temporary leftovers of a crash."""
    make_private(config.data_dir)
    for path in (config.blobs_dir, config.tmp_dir):
        path.mkdir(mode=0o700, exist_ok=True)
    for leftover in config.tmp_dir.iterdir():
        # tmp/ only ever holds partial uploads and renditions; a file here at start-up was interrupted.
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


T = TypeVar("T")


class Service(Generic[T]):
    """One of the node's services, which `Node.start` builds (they need the secrets, and importing the ATProto and
    media stacks is not free). Reading one before then raises an error that says so, rather than handing out None."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, node: None, owner: type) -> Service[T]: ...
    @overload
    def __get__(self, node: Node, owner: type) -> T: ...
    def __get__(self, node: Node | None, owner: type) -> T | Service[T]:
        if node is None:
            return self
        try:
            value: T = node.__dict__[self.name]
        except KeyError:
            raise RuntimeError(f"Node.{self.name} is used before Node.start() built it") from None
        return value

    def __set__(self, node: Node, value: T) -> None:
        node.__dict__[self.name] = value

    def built(self, node: Node) -> bool:
        return self.name in node.__dict__


class Node:
    http: Service[httpx.AsyncClient] = Service()
    identity: Service[IdentityResolver] = Service()
    auth: Service[AuthService] = Service()
    blobs: Service[BlobStore] = Service()
    uploads: Service[Uploads] = Service()
    replacements: Service[AudioReplacements] = Service()
    track_importer: Service[TrackImporter] = Service()
    remote_audio: Service[RemoteAudio] = Service()
    remote_tracks: Service[RemoteTracks] = Service()
    outbox: Service[Outbox] = Service()
    search: Service[Search] = Service()
    library_tasks: Service[LibraryTasks] = Service()
    library: Service[Library] = Service()
    ingest: Service[Subscriber] = Service()
    follows: Service[Follows] = Service()
    labeler: Service[Labeler] = Service()

    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = __version__
        self.secrets: dict[str, str] = {}
        self.db = Database(
            config.db_path,
            busy_timeout_ms=config["database.busy_timeout_ms"],
            read_connections=config["database.read_connections"],
        )
        self.workers = Workers()
        self.started_at = time.time()
        self._running = False
        self._tasks: set[asyncio.Task[Any]] = set()  # short background tasks (reconciliation after sign-in)

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    async def start(self) -> None:
        prepare_data_dir(self.config)
        self.secrets = keys.resolve(self.config)
        self._running = True
        await self.db.open()
        self._start_labeler()  # before anything that could take a moderation action
        self._start_auth()
        await self.auth.purge_expired()
        self._start_media()
        await self.remote_audio.evict()  # the cap may have shrunk since the last run
        await self._start_library()
        self._start_outbox()
        self._start_search()
        self._start_follows()
        self.workers.start("housekeeping", self._housekeeping)
        self._start_library_tasks()
        if self.config["ingest.enabled"]:
            self._start_ingest()

    def _start_ingest(self) -> None:
        from .ingest.subscriber import Subscriber, source_for
        from .network.events import NetworkEvents

        # One stream (a firehose when ingest.firehose_url is set, else Jetstream), one handler behind either.
        source, transport = source_for(self.config)
        self.ingest = Subscriber(self.db, source, transport, NetworkEvents(self))
        self.workers.start("ingest", self.ingest.run)

    def ingest_status(self) -> dict[str, Any] | None:
        """The live subscriber's state (connected?, cursor, counters, last error), or None when ingest is off; what
        earlier runs stored is in plyrd.ingest.cursor.stored_status."""
        return self.ingest.status() if Node.ingest.built(self) else None

    def _start_library_tasks(self) -> None:
        from .library.analysis import LibraryAnalysis
        from .library.schedule import LibraryTasks

        # Scans at start-up (after serving begins), on a schedule, on request and on changes the watcher sees; then
        # waveforms and loudness in the background, at the lowest priority.
        analysis = LibraryAnalysis(self.db, self.blobs.path_for, self.uploads.slots, lambda: self.library.scanning)
        self.library_tasks = LibraryTasks(self.library, analysis, watch=self.config["library.watch"],
                                          interval_minutes=self.config["library.scan_interval_minutes"])
        self.library_tasks.start(self.workers)

    def _start_outbox(self) -> None:
        from .atproto.outbox import Outbox

        # Records go to users' PDSes through their own sessions; blobs are read from the local store.
        self.outbox = Outbox(self.db, self.auth.pds_session_for_did, self.blobs.path_for)
        self.workers.start("outbox", self.outbox.run)
        self.auth.on_sign_in.append(self._signed_in)

    def _start_follows(self) -> None:
        from .network.follows import Follows

        # Whom the node's users follow on Bluesky: read from their PDS on sign-in and daily (the "follows" worker).
        self.follows = Follows(self.db, self.http, self.identity, self.remote_tracks)
        self.workers.start("follows", self.follows.run)

    def _start_labeler(self) -> None:
        from .moderation.labels import Labeler

        # Signs the labels admins' actions emit (did:web of public_url, secrets.labeler_key); serves the streams.
        self.labeler = Labeler(self.db, self.config.public_url, self.secrets["labeler_key"])
        self.labeler.start()

    def _start_search(self) -> None:
        from .search import Search

        # search.db is opened (apsw, in a thread) by the worker itself; requests wait for it briefly.
        self.search = Search(self.db, self.config.data_dir, self.config.public_url)
        self.workers.start("search", self.search.run)

    def _signed_in(self, did: str) -> None:
        """After a sign-in: send what waited for this user's session, and catch up with their PDS."""
        self.outbox.wake(did)
        self.follows.signed_in(did)
        task = asyncio.create_task(self._catch_up(did), name=f"plyrd-reconcile-{did}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, did: str) -> None:
        await self.reconcile_did(did)
        # After reconciliation: a bio adopted from their fm.plyr.actor.profile is theirs, which Bluesky never replaces.
        await self.sync_bsky_profile(did)

    async def _profile_soon(self, did: str) -> None:
        """Read a newly met artist's Bluesky profile in the background (the track that brought them is not held)."""
        task = asyncio.create_task(self.sync_bsky_profile(did), name=f"plyrd-profile-{did}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync_bsky_profile(self, did: str) -> str:
        """Read `did`'s Bluesky profile into their users row (plyrd.network.bsky_profiles). Never raises."""
        from .network.bsky_profiles import ProfileSync, sync_bsky_profile

        return await sync_bsky_profile(ProfileSync.of(self), did)

    def importer_for(self, did: str, handle: str | None) -> TrackImporter | None:
        """The track importer when this user may upload here (a listener's track records are not imported)."""
        return self.track_importer if self.auth.can_upload(did, handle) else None

    async def reconcile_did(self, did: str) -> ReconcileReport | None:
        from .catalog.reconcile import reconcile
        from .errors import PlyrdError

        session = await self.auth.pds_session_for_did(did)
        if session is None:
            return None
        user = await self.db.fetchone("SELECT handle FROM users WHERE did = ?", (did,))
        try:
            importer = self.importer_for(did, user["handle"] if user else None)
            return await reconcile(self.db, session, self.blobs, importer, self.remote_tracks)
        except PlyrdError as e:  # a PDS that is down now is reconciled at the next sign-in or on demand
            log.info("reconcile failed", extra={"fields": {"did": did, "error": e.detail}})
            return None

    def _start_media(self) -> None:
        from .catalog import revisions
        from .catalog.track_import import TrackImporter
        from .catalog.uploads import JOB_KIND, Uploads
        from .jobs import JobRunner
        from .moderation import duplicates
        from .network.remote_audio import RemoteAudio
        from .network.remote_tracks import RemoteTracks
        from .storage import BlobStore
        from .threads import ThreadSlots

        self.blobs = BlobStore(self.config.blobs_dir, self.config.tmp_dir, self.db)
        if (notice := duplicates.start_up_notice(self.config)) is not None:
            log.warning(notice)  # said once; uploads go on without the duplicate-recording check
        slots = ThreadSlots(self.config["media.workers"])
        self.uploads = Uploads(self.db, self.blobs, slots, self.config)
        self.replacements = revisions.AudioReplacements(self.uploads)
        # Other repos' audio, fetched on first play into the blob store, kept up to the cap.
        self.remote_audio = RemoteAudio(self.db, self.blobs, self.http, self.identity,
                                        self.config["network.remote_audio_cache_mb"] * 1024 * 1024)
        self.track_importer = TrackImporter(self.db, self.blobs, self.uploads, self.http, self.config)
        self.remote_tracks = RemoteTracks(self.db, self.blobs, self.uploads, self.http, self.identity, self.config)
        self.remote_tracks.on_new_artist.append(self._profile_soon)  # a remote artist first seen: their profile
        runner = JobRunner(self.db, {JOB_KIND: self.uploads.process, revisions.JOB_KIND: self.replacements.process},
                           concurrency=slots.size)

        async def run_jobs(stop: asyncio.Event) -> None:
            # Recovery first (interrupted jobs re-queued or failed), then release what failed uploads still hold.
            await runner.recover()
            await self.uploads.reconcile()
            await runner.run(stop)

        self.workers.start("jobs", run_jobs)

    async def _start_library(self) -> None:
        from .library.service import Library

        # The music folder's scans share the media thread slots with uploads: one CPU budget for the node.
        self.library = Library(self.db, self.blobs, self.config, slots=self.uploads.slots)
        await self.library.start()

    def _start_auth(self) -> None:
        from .atproto.identity import IdentityResolver
        from .atproto.net import make_http_client
        from .auth.client import build_oauth_client
        from .auth.service import FULL_SCOPE, AuthService

        cfg = self.config
        self.http = make_http_client(
            allow_private=cfg["atproto.allow_private_addresses"],
            timeout=15.0,
            user_agent=f"plyrd/{self.version} (+{cfg.public_url})",
        )
        self.identity = IdentityResolver(
            self.http, plc_url=cfg["atproto.plc_url"], handle_resolver_url=cfg["atproto.handle_resolver_url"] or None
        )
        oauth, problem = build_oauth_client(cfg, self.secrets["oauth_client_key"], FULL_SCOPE, self.http, self.identity)
        if problem:
            log.warning("oauth sign-in unavailable", extra={"fields": {"reason": problem}})
        self.auth = AuthService(self.db, cfg, self.secrets, self.http, self.identity, oauth, problem)

    def draining(self) -> None:
        """The server stops taking connections and waits for the open ones: close what never ends by itself (the
        subscribeLabels streams), so requests still running can finish and the node stops within seconds."""
        if Node.labeler.built(self):
            self.labeler.close_streams()

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        if Node.labeler.built(self):
            self.labeler.close()  # subscribeLabels streams end
        if Node.uploads.built(self):
            self.uploads.cancel.set()  # a transcode in a thread stops at its next packet instead of running on
        await self.workers.stop(grace=self.config["server.graceful_timeout"])
        if Node.http.built(self):
            await self.http.aclose()
        await self.db.close()
        log.info("node stopped", extra={"fields": {"data": str(self.data_dir)}})

    async def _refresh_bsky_profiles(self) -> int:
        from .network.bsky_profiles import ProfileSync, refresh_due_profiles

        return await refresh_due_profiles(ProfileSync.of(self),
                                          max_age_hours=self.config["network.profile_refresh_hours"])

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Hourly upkeep that keeps a long-running node small and quick."""
        while not await sleep_or_stop(stop, HOUSEKEEPING_INTERVAL):
            await self.auth.purge_expired()
            await self.uploads.reconcile()
            await self.blobs.collect_garbage()
            await self._refresh_bsky_profiles()
            # the next sync of other repos' tracks: changed records read again, deleted ones unavailable
            await self.remote_tracks.refresh_stale(REMOTE_REFRESH_SECONDS)
            await self.db.optimize()
