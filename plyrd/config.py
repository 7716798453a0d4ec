"""plyrd's configuration: one typed `Config` built from defaults, config.toml, PLYRD_* variables and command-line flags.

Every option is declared once in `OPTIONS`; the loader, the env overrides, `plyrd init` and config.example.toml all come
from that table, so documentation and behaviour cannot drift apart.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

DEFAULT_DATA_DIR = "./plyrd-data"
CONFIG_FILENAME = "config.toml"


class ConfigError(Exception):
    """A configuration problem, reported to the operator as one line (never a traceback)."""


@dataclass(frozen=True)
class Option:
    section: str
    key: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None when the value is fine
    secret: bool = False

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"PLYRD_{self.section.upper()}_{self.key.upper()}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number from 0 to 65535"


def _public_url(v: str) -> str | None:
    if not v:
        return None
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL such as https://music.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be the node's origin without a path, query or fragment"
    return None


def _http_url(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    return None


def _optional_http_url(v: str) -> str | None:
    return _http_url(v) if v else None


def _optional_ws_url(v: str) -> str | None:
    if not v:
        return None
    parsed = urlsplit(v)
    return None if parsed.scheme in ("ws", "wss") and parsed.hostname else "must be a ws:// or wss:// URL, or empty"


def _folders(v: list[str]) -> str | None:
    relative = [f for f in v if not Path(f).expanduser().is_absolute()]
    return f"must be absolute paths ({relative[0]!r} is not)" if relative else None


def _uploaders(v: list[str]) -> str | None:
    return None if v == ["*"] or "*" not in v else 'use ["*"] alone for everyone, or a list of DIDs and handles'


OPTIONS: tuple[Option, ...] = (
    # [server]
    Option("server", "host", str, "127.0.0.1",
           "Address to listen on. 127.0.0.1 keeps the node private to this machine (put a reverse proxy in front);\n"
           "0.0.0.0 listens on every interface, :: on every IPv6 (and usually IPv4) interface."),
    Option("server", "port", int, 8000, "TCP port to listen on.", _port),
    Option("server", "public_url", str, "",
           "The address listeners use to reach this node, e.g. https://music.example.com (no path).\n"
           "Empty means http://host:port. Over https, plyrd marks cookies Secure and signs in as an OAuth\n"
           "confidential client; over plain http it uses ATProto's loopback client form (development only).",
           _public_url),
    Option("server", "behind_proxy", bool, False,
           "Trust X-Forwarded-For / X-Forwarded-Proto from one reverse proxy in front of the node.\n"
           "Turn on only when the node is reachable solely through that proxy."),
    Option("server", "hsts", bool, False,
           "Send Strict-Transport-Security (one year) when public_url is https. Off by default: the reverse proxy\n"
           "that terminates TLS usually owns this header. Browsers then refuse plain http for this host for a year."),
    Option("server", "graceful_timeout", float, 10.0,
           "Seconds that in-flight requests get to finish after SIGTERM or SIGINT before the node stops.", _positive),
    Option("server", "read_timeout", float, 60.0,
           "Seconds a client may stay silent while sending a request before its connection is closed.", _positive),
    # [storage]
    Option("storage", "data_dir", str, DEFAULT_DATA_DIR,
           "Where the node keeps everything: plyrd.db (SQLite), blobs/ (audio and images by hash), tmp/.\n"
           "A relative path is taken from the directory of this file. Also set by --data or PLYRD_DATA."),
    Option("storage", "max_upload_mb", int, 1536,
           "Largest audio file accepted, in MiB (1536 = 1.5 GiB), enforced while the upload streams in.", _positive),
    # [media]
    Option("media", "workers", int, 0,
           "Transcodes, waveforms and image work run in this many threads at once; 0 means one per CPU core.",
           lambda v: None if v >= 0 else "must be 0 or more"),
    Option("media", "max_duration_minutes", int, 240, "Longest track accepted, in minutes.", _positive),
    Option("media", "wav_rendition_mb", int, 100,
           "WAV files bigger than this (MiB) also get an MP3 rendition for listeners; smaller ones play as they are.",
           _positive),
    Option("media", "max_image_mb", int, 20, "Largest artwork image accepted, in MiB.", _positive),
    # [database]
    Option("database", "busy_timeout_ms", int, 5000,
           "How long a database statement waits for a lock before failing, in milliseconds.", _positive),
    Option("database", "read_connections", int, 2,
           "Read-only SQLite connections kept open beside the single writer.", _positive),
    # [log]
    Option("log", "level", str, "info", "Log level: debug, info, warning or error.",
           _one_of("debug", "info", "warning", "error")),
    Option("log", "format", str, "text",
           "text for people (key=value lines), json for log collectors (one JSON object per line).",
           _one_of("text", "json")),
    Option("log", "requests", bool, True, "Log every request: method, path, status, duration and request id."),
    # [auth]
    Option("auth", "admins", list, [],
           "DIDs or handles of the node's admins, e.g. [\"did:plc:abc...\", \"artist.bsky.social\"]."),
    Option("auth", "uploaders", list, ["*"],
           "Who may upload: [\"*\"] for everyone who signs in, or a list of DIDs and handles (a small label).\n"
           "Everyone may listen without signing in.", _uploaders),
    Option("auth", "session_days", int, 30, "Days a browser session lasts without use before it ends.", _positive),
    Option("auth", "library_listeners", list, [],
           "Who may see and play the music folder's tracks (library.folders): [] for everyone who signs in, or a\n"
           "list of DIDs and handles. Admins always may; visitors who are not signed in never do."),
    # [atproto]
    Option("atproto", "plc_url", str, "https://plc.directory",
           "The DID PLC directory used to resolve did:plc identities.", _http_url),
    Option("atproto", "handle_resolver_url", str, "",
           "Resolve handles by asking this service's com.atproto.identity.resolveHandle instead of DNS and\n"
           "https://<handle>/.well-known/atproto-did. Empty uses DNS and HTTPS, as the protocol intends.",
           _optional_http_url),
    Option("atproto", "allow_private_addresses", bool, False,
           "Let outbound requests reach loopback and private-network addresses (a PDS on your LAN, tests).\n"
           "Off by default so a hostile handle or PDS cannot make the node probe your network."),
    Option("atproto", "pds_blob_limit_mb", int, 100,
           "Audio up to this size (MiB) is also stored on the artist's own PDS as the record's audioBlob, so it\n"
           "plays without this node. Bigger files are referenced by URL only. PDSes set their own limit (the\n"
           "reference PDS defaults to 5 MB; many run 100 MB).", _positive),
    # [subsonic]
    Option("subsonic", "max_transcodes", int, 0,
           "Live transcodes (a Subsonic app asking for a lower bitrate or another format, the web player playing a\n"
           "music-folder file browsers cannot play) running at once; a request past that waits a few seconds,\n"
           "then is refused. 0 means 24 per CPU core.",
           lambda v: None if v >= 0 else "must be 0 or more"),
    Option("subsonic", "transcode_cache_mb", int, 4096,
           "Finished transcodes of whole tracks are kept up to this many MiB in total (least recently played go\n"
           "first), so a second play is a file read. 0 keeps none.",
           lambda v: None if v >= 0 else "must be 0 or more"),
    # [library]
    Option("library", "folders", list, [],
           "Folders of music you already own, read in place: scanned into the node's library (private to its\n"
           "signed-in listeners, never published), never copied, modified or deleted. Absolute paths, e.g.\n"
           "[\"/srv/music\"]; `plyrd library add PATH` adds one without editing this file.", _folders),
    Option("library", "scan_interval_minutes", int, 60,
           "Rescan the folders this often (unchanged files are skipped without being opened); 0 scans only at\n"
           "start-up, when the watcher sees a change, and on demand (`plyrd library scan`).",
           lambda v: None if v >= 0 else "must be 0 or more"),
    Option("library", "watch", bool, True,
           "Watch the folders (inotify) and rescan what changed within seconds, while the node runs."),
    Option("library", "move_grace_seconds", float, 30.0,
           "A file the watcher sees vanish keeps its track this long, so a move seen in two halves (out of one\n"
           "folder, later into another) keeps its likes and playlist entries; then it is forgotten.",
           lambda v: None if 0 <= v <= 3600 else "must be between 0 and 3600"),
    # [network]
    Option("network", "remote_audio_cache_mb", int, 2048,
           "Audio of other nodes' tracks (their artists' PDS blobs, verified by hash) is kept up to this many MiB;\n"
           "the least recently played go first. 0 keeps none: every play fetches it again.",
           lambda v: None if v >= 0 else "must be 0 or more"),
    Option("network", "profile_refresh_hours", int, 24,
           "Bluesky profiles (display name, avatar, description) of the people the node shows are read again this\n"
           "often.", _positive),
    # [ingest]
    Option("ingest", "enabled", bool, False,
           "Follow the network live: likes, comments and playlist entries anyone writes about this node's tracks,\n"
           "its users' records written in other apps, and followed artists' new tracks. Off: records are read\n"
           "only when someone signs in."),
    Option("ingest", "jetstream_url", str, "wss://jetstream2.us-east.bsky.network/subscribe",
           "The Jetstream (JSON) endpoint followed when ingest is on: light enough for a Raspberry Pi.",
           _optional_ws_url),
    Option("ingest", "firehose_url", str, "",
           "Follow a relay's or a PDS's com.atproto.sync.subscribeRepos (CBOR) instead of Jetstream, e.g.\n"
           "wss://bsky.network. Empty uses jetstream_url.", _optional_ws_url),
    # [moderation]
    Option("moderation", "purge_grace_days", int, 30,
           "A taken-down track's files stay this many days (so a mistaken takedown can be undone) before an admin\n"
           "may purge them.", lambda v: None if v >= 0 else "must be 0 or more"),
    Option("moderation", "fingerprints", bool, True,
           "Fingerprint new uploads (Chromaprint, when libchromaprint is installed) and flag for review one that\n"
           "sounds like another uploader's track."),
    Option("moderation", "acoustid_key", str, "",
           "An AcoustID application key: also look new uploads up in AcoustID's public database (needs network).",
           secret=True),
    Option("moderation", "audd_key", str, "",
           "An AudD API token: also ask AudD whether a new upload is a known recording (paid; needs network).",
           secret=True),
    # [secrets]
    Option("secrets", "cookie_key", str, "", "Signs session cookies. Generated by `plyrd init`; keep it private.",
           secret=True),
    Option("secrets", "token_key", str, "",
           "Encrypts OAuth tokens and DPoP keys at rest. Changing it signs everyone out.", secret=True),
    Option("secrets", "oauth_client_key", str, "",
           "The OAuth client's ES256 private key (PEM), published as a JWK at /.well-known/jwks.json.", secret=True),
    Option("secrets", "labeler_key", str, "",
           "The labeler's secp256k1 private key (hex), for signing moderation labels.", secret=True),
)

SECTIONS: dict[str, str] = {
    "server": "How the node listens and where people reach it.",
    "storage": "Where files live and how big they may be.",
    "media": "Audio and artwork processing.",
    "database": "SQLite tuning; the defaults suit a Raspberry Pi.",
    "log": "What the node writes to standard error.",
    "auth": "Who runs the node and who may upload to it.",
    "atproto": "How the node finds identities and talks to PDSes.",
    "subsonic": "Live transcoding: Subsonic apps (/rest) on mobile data, music-folder files in the web player.",
    "library": "Your music folder: files on this machine, scanned in place into the node's private library.",
    "network": "Other nodes' tracks and Bluesky profiles, read from the artists' own PDSes.",
    "ingest": "Live updates from the ATProto network (Jetstream or a firehose).",
    "moderation": "Keeping a shared node clean: takedowns, duplicate recordings, outside lookups.",
    "secrets": "Keys generated by `plyrd init`. This file must stay private (mode 0600).\n"
               "Left empty, plyrd generates them once into <data_dir>/secrets.toml.",
}

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Resolved settings. `values` maps "section.key" to a typed value; attribute helpers cover the common ones."""

    values: Mapping[str, Any]
    source: Path | None = None  # the config file read, if any
    data_dir: Path = field(default=Path(DEFAULT_DATA_DIR))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def host(self) -> str:
        return self.values["server.host"]

    @property
    def port(self) -> int:
        return self.values["server.port"]

    @property
    def public_url(self) -> str:
        if self.values["server.public_url"]:
            return self.values["server.public_url"].rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "plyrd.db"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def replace(self, **values: Any) -> Config:
        """A copy with some options changed, given as section__key=value (for tests and CLI flags)."""
        merged = dict(self.values)
        for k, v in values.items():
            merged[k.replace("__", ".")] = v
        return build_config(merged, source=self.source)


def _coerce(opt: Option, value: Any, where: str) -> Any:
    """Check a value from TOML against the option's type; ints are accepted where floats are expected."""
    ok: bool
    if opt.type is bool:
        ok = isinstance(value, bool)
    elif opt.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif opt.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif opt.type is list:
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        kind = {bool: "true or false", int: "a whole number", float: "a number", list: "a list of strings"}.get(
            opt.type, "a string")
        raise ConfigError(f"{where}: {opt.name} must be {kind}, got {value!r}")
    return value


def _parse_env(opt: Option, raw: str, var: str) -> Any:
    try:
        if opt.type is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if opt.type is int:
            return int(raw)
        if opt.type is float:
            return float(raw)
        if opt.type is list:
            return [x.strip() for x in raw.split(",") if x.strip()]
        return raw
    except ValueError:
        raise ConfigError(f"environment variable {var}: {raw!r} is not a valid {opt.type.__name__}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a config file into {"section.key": value}, rejecting unknown sections, keys and wrong types."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    out: dict[str, Any] = {}
    for section, table in doc.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a [section] table")
        for key, value in table.items():
            opt = _BY_NAME.get(f"{section}.{key}")
            if opt is None:
                known = ", ".join(o.key for o in OPTIONS if o.section == section)
                raise ConfigError(f"{path}: unknown key {section}.{key} (known in [{section}]: {known})")
            out[opt.name] = _coerce(opt, value, str(path))
    return out


def build_config(values: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Fill defaults, run each option's check and resolve the data directory."""
    merged = {o.name: o.default for o in OPTIONS}
    merged.update(values)
    where = str(source) if source else "configuration"
    for opt in OPTIONS:
        merged[opt.name] = _coerce(opt, merged[opt.name], where)
        if opt.check and (problem := opt.check(merged[opt.name])):
            raise ConfigError(f"{where}: {opt.name} {problem}")
    data_dir = Path(merged["storage.data_dir"]).expanduser()
    return Config(values=merged, source=source, data_dir=data_dir.resolve())


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < config file < PLYRD_* environment < command-line overrides ("section.key": value).

    Without an explicit path, PLYRD_CONFIG names the file, else <data_dir>/config.toml is read when it exists.
    """
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}

    # The data directory decides where an implicit config file is looked for, so settle it first.
    data_hint = overrides.get("storage.data_dir") or env.get("PLYRD_DATA") or env.get("PLYRD_STORAGE_DATA_DIR")
    if path is None and env.get("PLYRD_CONFIG"):
        path = Path(env["PLYRD_CONFIG"])
    if path is None:
        implicit = Path(data_hint or DEFAULT_DATA_DIR) / CONFIG_FILENAME
        path = implicit if implicit.is_file() else None

    if path is not None:
        path = path.expanduser().resolve()
        values.update(read_toml(path))
        # Relative paths inside a config file are relative to that file, not to wherever plyrd was started.
        if "storage.data_dir" in values and not Path(values["storage.data_dir"]).expanduser().is_absolute():
            values["storage.data_dir"] = str(path.parent / values["storage.data_dir"])

    for opt in OPTIONS:
        if opt.env in env:
            values[opt.name] = _parse_env(opt, env[opt.env], opt.env)
    if env.get("PLYRD_DATA"):
        values["storage.data_dir"] = env["PLYRD_DATA"]

    for name, value in overrides.items():
        if name not in _BY_NAME:
            raise ConfigError(f"unknown option {name}")
        if value is not None:
            values[name] = value
    return build_config(values, source=path)


def render_toml(values: Mapping[str, Any] | None = None, *, header: str = "") -> str:
    """A commented config.toml: every option with its help text, in OPTIONS order.

    tomli-w writes the values (so quoting and escaping are always right); the comments are ours.
    """
    values = values or {}
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for section, about in SECTIONS.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"# {line}" for line in about.splitlines())
        for opt in (o for o in OPTIONS if o.section == section):
            lines.append("")
            lines.extend(f"# {line}" for line in opt.help.splitlines())
            value = values.get(opt.name, opt.default)
            if not opt.secret and value != opt.default:
                lines.append(f"# default: {tomli_w.dumps({opt.key: opt.default}).strip().split(' = ', 1)[1]}")
            lines.append(tomli_w.dumps({opt.key: value}, multiline_strings=True).rstrip())
    return "\n".join(lines) + "\n"


def example_toml() -> str:
    """The text of config.example.toml (a test keeps the committed file equal to this)."""
    return render_toml(header=(
        "plyrd configuration: every option with its default.\n"
        "Copy to <data_dir>/config.toml (or run `plyrd init`, which also generates the secrets) and edit.\n"
        "Any option can be overridden by an environment variable PLYRD_<SECTION>_<KEY>,\n"
        "e.g. PLYRD_SERVER_PORT=9000 or PLYRD_AUTH_ADMINS=did:plc:abc,label.example.com (lists: comma-separated)."
    ))
