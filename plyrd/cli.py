"""The `plyrd` command."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__

DESCRIPTION = """\
plyrd runs a music node on the AT Protocol: upload, stream and share music whose
tracks, likes, comments and playlists live in each listener's own PDS.

Everything a node keeps is in one data directory (default ./plyrd-data):
  plyrd.db       the SQLite database
  blobs/         audio and images, stored by content hash
  search.db      the search index, derived from plyrd.db (plyrd reindex)
  config.toml    settings (optional; `plyrd init` writes one)
  secrets.toml   generated keys, when config.toml does not hold them

Settings come from, lowest to highest: built-in defaults, config.toml,
PLYRD_<SECTION>_<KEY> environment variables, then command-line flags.
"""

EPILOG = """\
examples:
  plyrd serve                         start on 127.0.0.1:8000 with ./plyrd-data
  plyrd serve --data /srv/music --host 0.0.0.0 --port 8080
  plyrd init --data /srv/music        write /srv/music/config.toml with fresh secrets
  plyrd serve --config /etc/plyrd.toml
  plyrd backup /mnt/usb/plyrd-backup  copy the database and blobs while the node runs
  plyrd subsonic-password alice.example.com   a Subsonic app password for alice (shown once)
  plyrd library add /srv/music        add a folder of music you own; then: plyrd library scan

README.md documents reverse proxies, TLS, containers and every option (config.example.toml).
"""


# Every command writes into the data directory (or a backup of it): what it creates is its user's alone, files 0600
# and directories 0700, whoever runs it and whatever umask they run it under. Set for the command's run in main(),
# not by the library, which tests and other programs use in their own processes.
PRIVATE_UMASK = 0o077


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="config file to read (default: PLYRD_CONFIG, else <data>/config.toml if it exists)")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="data directory (default: PLYRD_DATA, else storage.data_dir, else ./plyrd-data)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="plyrd", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"plyrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the node (web UI, API, workers) until SIGTERM or Ctrl+C",
                           formatter_class=fmt, description=(
                               "Run the node in this process. Migrations are applied at start-up.\n"
                               "SIGTERM or Ctrl+C stops it gracefully: in-flight requests finish,\n"
                               "background workers stop, the database is closed."))
    _common(serve)
    serve.add_argument("--host", help="address to listen on (server.host; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port; default 8000)")

    init = sub.add_parser("init", help="write a commented config.toml with fresh secrets", formatter_class=fmt,
                          description=(
                              "Write a config file listing every option with its help text, and generate\n"
                              "fresh secrets: the cookie signing key, the key encrypting OAuth tokens at rest,\n"
                              "the OAuth client's ES256 key and the labeler's secp256k1 key.\n"
                              "The file is created with mode 0600. An existing file is never overwritten\n"
                              "unless --force is given (its secrets would be lost)."))
    _common(init)
    init.add_argument("--force", action="store_true", help="overwrite an existing config file")
    init.add_argument("--public-url", help="the https address people will use, e.g. https://music.example.com")

    migrate = sub.add_parser("migrate", help="bring the database schema up to date and exit",
                             description="Apply pending schema migrations (serve also does this at start-up).")
    _common(migrate)

    backup = sub.add_parser("backup", help="copy the database and blobs to PATH, safely, while the node runs",
                            formatter_class=fmt, description=(
                                "Copy a consistent snapshot of plyrd.db (SQLite's online backup API), the blobs\n"
                                "and the config and secrets into PATH. Run it again into the same PATH to copy\n"
                                "only new blobs. To restore: stop the node and copy PATH's contents into an\n"
                                "empty data directory."))
    _common(backup)
    backup.add_argument("path", type=Path, metavar="PATH", help="directory to write the backup into")

    reindex = sub.add_parser("reindex", help="rebuild the search index (search.db) from the database",
                             formatter_class=fmt, description=(
                                 "Rebuild <data>/search.db from plyrd.db with the node stopped: into a new file,\n"
                                 "which then replaces the old one. The node keeps the index in step by itself\n"
                                 "(and rebuilds it when it finds it missing or out of step); this is for when\n"
                                 "search.db was damaged or deleted, or after restoring a backup."))
    _common(reindex)

    subsonic = sub.add_parser("subsonic-password", help="make (or revoke) a user's password for Subsonic apps",
                              formatter_class=fmt, description=(
                                  "Make a new Subsonic password for a user of this node and print it, once: apps\n"
                                  "such as DSub, Symfonium or Feishin sign in with it and the user's handle. A new\n"
                                  "password ends the old one. The node keeps it sealed under secrets.token_key and\n"
                                  "never shows it again. Users can do the same in their settings. Safe to run while\n"
                                  "the node runs."))
    _common(subsonic)
    subsonic.add_argument("user", metavar="HANDLE_OR_DID", help="the user (who must have signed in here once)")
    subsonic.add_argument("--revoke", action="store_true", help="delete the user's password instead")

    library = sub.add_parser("library", help="your music folder: add folders, scan them, see what was found",
                             formatter_class=fmt, description=(
                                 "The node's library: music you already own, read in place from folders on this\n"
                                 "machine (library.folders in config.toml, or `plyrd library add PATH`), never\n"
                                 "copied, modified or deleted. Library tracks are visible to the node's signed-in\n"
                                 "listeners only and never published. Safe to run while the node runs; a scan\n"
                                 "waits for one the node is running."))
    lib_sub = library.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    lib_add = lib_sub.add_parser("add", help="add a folder to the library (then scan it)")
    _common(lib_add)
    lib_add.add_argument("path", type=Path, metavar="PATH", help="a directory of music files")
    lib_scan = lib_sub.add_parser("scan", help="scan the folders now (unchanged files are skipped)",
                                  description="Scan every library folder, or only the files and directories given,\n"
                                  "with a progress bar on a terminal (files, files/s, ETA) and a summary line.",
                                  formatter_class=fmt)
    _common(lib_scan)
    lib_scan.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="only these files or directories")
    lib_status = lib_sub.add_parser("status", help="the last scan, the library's counts and the unreadable files")
    _common(lib_status)
    lib_status.add_argument("--all", action="store_true", help="list every unreadable file (default: the first 50)")
    return parser


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from .config import load_config

    overrides: dict[str, Any] = {"storage.data_dir": str(args.data) if args.data else None, **extra}
    return load_config(args.config, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .server import run

    config = _load(args, **{"server.host": args.host, "server.port": args.port})
    setup_logging(config["log.level"], config["log.format"])
    run(config)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from . import keys
    from .config import CONFIG_FILENAME, ConfigError, build_config, render_toml
    from .node import make_private

    data_dir = (args.data or Path("plyrd-data")).expanduser().resolve()
    target = (args.config or data_dir / CONFIG_FILENAME).expanduser().resolve()
    if target.exists() and not args.force:
        raise ConfigError(f"{target} already exists; pass --force to replace it (its secrets will be lost)")
    values: dict[str, Any] = {"storage.data_dir": str(data_dir)}
    if args.public_url:
        values["server.public_url"] = args.public_url
    values.update({f"secrets.{k}": v for k, v in keys.generate().items()})
    build_config(values)  # refuse to write a file that would not load
    text = render_toml(values, header=(
        f"plyrd {__version__} configuration, written by `plyrd init`.\n"
        "Every option is listed with its help; change what you need. This file holds secrets: keep it private."
    ))
    make_private(data_dir)  # before the config file, which usually goes inside it
    keys.write_private(target, text)
    print(f"wrote {target} (mode 0600) with fresh secrets")
    print(f"start the node with: plyrd serve --config {target}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from .db.database import create_private
    from .db.migrations import migrate
    from .node import make_private

    config = _load(args)
    make_private(config.data_dir)
    create_private(config.db_path)
    conn = sqlite3.connect(config.db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        before, after = migrate(conn)
    finally:
        conn.close()
    if before == after:
        print(f"{config.db_path}: schema is up to date (version {after})")
    else:
        print(f"{config.db_path}: schema upgraded from version {before} to {after}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup

    config = _load(args)
    r = backup(config, args.path)
    print(f"backed up to {r.dest}: database {r.db_bytes / 1e6:.1f} MB, {r.blobs_copied} new blobs "
          f"({r.blob_bytes / 1e6:.1f} MB), {r.blobs_skipped} already there, in {r.seconds:.1f} s")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    import time

    from .db.migrations import migrate
    from .node import make_private
    from .search.index import SearchIndex
    from .search.indexer import rebuild_sync
    from .search.service import INDEX_FILE, IndexLocked, lock_index

    config = _load(args)
    if not config.db_path.exists():
        print(f"plyrd: {config.db_path} does not exist: nothing to index", file=sys.stderr)
        return 2
    make_private(config.data_dir)
    try:
        lock = lock_index(config.data_dir)
    except IndexLocked as e:
        print(f"plyrd: {e}; stop it first (a running node keeps its index in step by itself)", file=sys.stderr)
        return 2
    started = time.monotonic()
    target = config.data_dir / INDEX_FILE
    fresh = config.data_dir / (INDEX_FILE + ".new")
    try:
        conn = sqlite3.connect(config.db_path, isolation_level=None)
        try:
            migrate(conn)  # the change log the index follows comes with a migration
            for suffix in ("", "-wal", "-shm"):
                Path(f"{fresh}{suffix}").unlink(missing_ok=True)
            index = SearchIndex(fresh, readers=1)
            try:
                high, counts = rebuild_sync(index, conn)
            finally:
                index.close()
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):  # the old file's journal must not be applied to the new one
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, target)
    finally:
        os.close(lock)
    total = sum(counts.values())
    print(f"rebuilt {target}: {total} entries ({', '.join(f'{n} {k}' for k, n in counts.items())}) "
          f"up to change {high}, in {time.monotonic() - started:.1f} s")
    return 0


def cmd_subsonic_password(args: argparse.Namespace) -> int:
    import asyncio

    from . import keys
    from .auth.sealing import Sealer
    from .db import Database
    from .node import make_private
    from .subsonic.passwords import SubsonicPasswords

    config = _load(args)
    if not config.db_path.exists():
        print(f"plyrd: {config.db_path} does not exist: no users yet", file=sys.stderr)
        return 2
    make_private(config.data_dir)
    sealer = Sealer(keys.resolve(config)["token_key"])

    async def run() -> int:
        db = Database(config.db_path, busy_timeout_ms=config["database.busy_timeout_ms"], read_connections=1)
        await db.open()
        try:
            passwords = SubsonicPasswords(db, sealer)
            account = await passwords.find_account(args.user)
            if account is None:
                print(f"plyrd: no user {args.user!r} on this node (they must sign in here once)", file=sys.stderr)
                return 2
            username = account.handle or account.did
            if args.revoke:
                had = await passwords.revoke(account.did)
                print(f"revoked the Subsonic password of {username}" if had
                      else f"{username} had no Subsonic password")
                return 0
            password = await passwords.create(account.did)
        finally:
            await db.close()
        print(f"a new Subsonic password for {username} ({account.did}); any earlier one no longer works.\n"
              f"in a Subsonic app:\n"
              f"  server    {config.public_url}\n"
              f"  username  {username}\n"
              f"  password  {password}\n"
              f"it is shown this once: plyrd keeps it sealed and cannot show it again.")
        return 0

    return asyncio.run(run())


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _progress_bar(p: Any, width: int = 30) -> str:
    total = max(p.total_estimate, p.seen, 1)
    filled = min(width, round(width * p.seen / total))
    return (f"\r[{'#' * filled}{'.' * (width - filled)}] {p.seen}/{p.total_estimate} files"
            f"  {p.per_second:.0f} files/s  ETA {_fmt_seconds(p.eta_seconds)} ")


def cmd_library(args: argparse.Namespace) -> int:
    import asyncio

    from .db import Database
    from .errors import PlyrdError
    from .library.service import Library
    from .node import make_private
    from .storage import BlobStore

    config = _load(args)
    make_private(config.data_dir)
    for d in (config.blobs_dir, config.tmp_dir):
        d.mkdir(mode=0o700, exist_ok=True)

    async def run() -> int:
        db = Database(config.db_path, busy_timeout_ms=config["database.busy_timeout_ms"], read_connections=1)
        await db.open()
        try:
            library = Library(db, BlobStore(config.blobs_dir, config.tmp_dir, db), config)
            # Only adds the configured folders: this command's environment may not be the running node's.
            await library.sync_config(forget=False)
            if args.library_command == "add":
                try:
                    folder_id = await library.add_folder(args.path)
                except PlyrdError as e:
                    print(f"plyrd: {e.detail}", file=sys.stderr)
                    return 2
                print(f"library folder {folder_id}: {args.path.expanduser().resolve()}; "
                      "scan it with `plyrd library scan` (a running node also scans it at its next scheduled scan)")
                return 0
            if args.library_command == "scan":
                return await _library_scan(library, args.paths)
            return await _library_status(library, args.all)
        finally:
            await db.close()

    return asyncio.run(run())


async def _library_scan(library: Any, paths: list[Path]) -> int:
    if not await library.folders():
        print("plyrd: no library folders: add one with `plyrd library add PATH` or library.folders in config.toml",
              file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()

    def progress(p: Any) -> None:
        sys.stderr.write(_progress_bar(p))
        sys.stderr.flush()

    only = [p.expanduser().absolute() for p in paths] or None
    report = await library.scan(trigger="cli", only=only, progress=progress if tty else None)
    if tty:
        sys.stderr.write("\n")
    rate = report.seen / report.elapsed if report.elapsed > 0 else 0.0
    print(f"scanned {report.seen} files in {report.elapsed:.1f} s ({rate:.0f} files/s): {report.added} added, "
          f"{report.updated} updated, {report.moved} moved, {report.removed} removed, {report.unchanged} unchanged, "
          f"{report.errors} unreadable")
    for note in report.notes:
        print(f"note: {note}")
    if report.errors:
        print("see them with `plyrd library status`")
    return 0


async def _library_status(library: Any, everything: bool) -> int:
    from datetime import UTC, datetime

    def when(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"

    status = await library.status()
    folders = status["folders"]
    print("folders:" if folders else "folders: none (plyrd library add PATH, or library.folders in config.toml)")
    for f in folders:
        print(f"  {f['path']}{' (config)' if f['from_config'] else ''}")
    if (running := status["running"]) is not None:
        print(f"scanning now ({running['trigger']}, since {when(running['started_at'])}): {running['seen']} files")
    last = status["last"]
    if last is None:
        print("last scan: never")
    else:
        took = (last["finished_at"] or last["started_at"]) - last["started_at"]
        print(f"last scan: {last['state']} ({last['trigger']}), {when(last['started_at'])}, {last['seen']} files in "
              f"{took:.1f} s: {last['added']} added, {last['updated']} updated, {last['moved']} moved, "
              f"{last['removed']} removed, {last['unchanged']} unchanged, {last['errors']} unreadable")
        for note in last["detail"].get("notes", []):
            print(f"  note: {note}")
        if last["detail"].get("error"):
            print(f"  failed: {last['detail']['error']}")
    c = status["counts"]
    print(f"library: {c['tracks']} tracks, {c['albums']} albums, {c['files']} files, {c['errors']} unreadable")
    limit = c["errors"] if everything else 50
    errors = await library.errors(limit=limit) if c["errors"] else []
    if errors:
        print("unreadable files:")
        for e in errors:
            print(f"  {e['file']}: {e['why']}")
        if len(errors) < c["errors"]:
            print(f"  ... and {c['errors'] - len(errors)} more (--all lists them all)")
    return 0


COMMANDS = {"serve": cmd_serve, "init": cmd_init, "migrate": cmd_migrate, "backup": cmd_backup,
            "reindex": cmd_reindex, "subsonic-password": cmd_subsonic_password, "library": cmd_library}


def main(argv: Sequence[str] | None = None) -> int:
    from .backup import BackupError
    from .config import ConfigError
    from .db import DatabaseError, MigrationError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    umask = os.umask(PRIVATE_UMASK)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, MigrationError, DatabaseError, BackupError) as e:
        print(f"plyrd: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"plyrd: permission denied: {e.filename or e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno == 98:  # EADDRINUSE
            print(f"plyrd: cannot listen: {e.strerror}; is another node running on that port?", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(umask)  # for a caller of main() in its own process


if __name__ == "__main__":
    sys.exit(main())
