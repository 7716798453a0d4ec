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


COMMANDS = {"serve": cmd_serve, "init": cmd_init, "migrate": cmd_migrate, "backup": cmd_backup,
            "reindex": cmd_reindex, "subsonic-password": cmd_subsonic_password}


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
