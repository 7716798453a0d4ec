"""A real ATProto PDS (npm `@atproto/pds`) plus an in-memory PLC directory on loopback, for tests.

`tests/pds/start.mjs` runs both servers; this module installs its npm packages on demand,
starts and stops it, creates accounts, and drives the PDS's own OAuth sign-in and consent
screens headlessly. `stop_pds()` / `start_pds()` simulate an outage: the PDS goes away (PLC stays)
and comes back on the same port with the same data, accounts and tokens. Loaded as a pytest plugin
(`pytest_plugins = ["pds_harness"]`), it provides the session fixture `pds` and the per-test fixture
`pds_account`.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

PDS_DIR = Path(__file__).resolve().parent / "pds"
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund"]
# Written after a successful `npm ci`: the lockfile hash and Node version it was installed for
# (better-sqlite3 is a native module built for one Node ABI).
STAMP_NAME = ".plyrd-installed"
OAUTH_API = "/@atproto/oauth-provider/~api"
START_TIMEOUT = 60.0


class PDSHarnessError(RuntimeError):
    """The harness could not install, start or drive the PDS."""


@dataclass(frozen=True)
class Account:
    did: str
    handle: str
    password: str
    access_jwt: str
    refresh_jwt: str
    email: str


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PDSHarnessError(
            f"`{tool}` not found on PATH: the PDS test harness needs Node.js >= 18.7 and npm "
            f"(it runs @atproto/pds from {PDS_DIR})"
        )
    return path


class PDSHarness:
    """Runs `node tests/pds/start.mjs` (PLC + PDS on 127.0.0.1) for the duration of a test session."""

    def __init__(self, pds_dir: Path = PDS_DIR) -> None:
        self.pds_dir = pds_dir
        self.pds_url = ""
        self.plc_url = ""
        self.data_dir = ""
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stdout_buf = b""  # read past the last line returned (start.mjs answers commands line by line)
        self.pds_running = False

    # -- install ---------------------------------------------------------------------------------

    def _wanted_stamp(self, node: str) -> str:
        lock = (self.pds_dir / "package-lock.json").read_bytes()
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
        return f"{hashlib.sha256(lock).hexdigest()} node-{version.strip()}\n"

    def needs_install(self) -> bool:
        node = _require("node")
        stamp = self.pds_dir / "node_modules" / STAMP_NAME
        # Compare contents, not mtimes: a git checkout touches package-lock.json without changing it.
        return not stamp.is_file() or stamp.read_text() != self._wanted_stamp(node)

    def ensure_installed(self, log: Callable[[str], None] = print) -> None:
        """Run `npm ci` in tests/pds when node_modules is missing or was installed from another lockfile."""
        if not self.needs_install():
            return
        npm = _require("npm")
        log(f"pds_harness: node_modules missing or stale, running `{' '.join(NPM_CI)}` in {self.pds_dir}")
        t0 = time.monotonic()
        env = dict(os.environ)
        # better-sqlite3 compiles against Node's headers when its prebuilt download is unreachable (no GitHub here);
        # point npm at the system's headers so this works without a ~/.npmrc saying so.
        if "npm_config_nodedir" not in env and Path("/usr/include/node/node.h").is_file():
            env["npm_config_nodedir"] = "/usr"
        done = subprocess.run([npm, *NPM_CI[1:]], cwd=self.pds_dir, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise PDSHarnessError(
                f"`npm ci` failed in {self.pds_dir} (exit {done.returncode}):\n{done.stdout[-3000:]}"
                f"\n{done.stderr[-3000:]}"
            )
        (self.pds_dir / "node_modules" / STAMP_NAME).write_text(self._wanted_stamp(_require("node")))
        log(f"pds_harness: npm ci done in {time.monotonic() - t0:.1f} s")

    # -- run -------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start PLC + PDS on two free loopback ports; return once start.mjs prints its JSON line."""
        if self._proc is not None:
            raise PDSHarnessError("PDS already started")
        node = _require("node")
        # The ports are free when picked but could be taken before node binds them: retry on that race.
        for attempt in range(3):
            try:
                self._spawn(node, timeout)
                return
            except PDSHarnessError as err:
                if "EADDRINUSE" not in str(err) or attempt == 2:
                    raise

    def _spawn(self, node: str, timeout: float) -> None:
        env = dict(
            os.environ,
            PLC_PORT=str(free_port()),
            PDS_PORT=str(free_port()),
            # start.mjs exits when our end of its stdin closes, even if pytest is SIGKILLed.
            PDS_EXIT_ON_STDIN_EOF="1",
        )
        # stderr goes to a file: nobody drains a pipe once the PDS runs, and a full pipe would block it.
        self._stderr = tempfile.TemporaryFile(prefix="plyrd-pds-stderr-")
        self._stdout_buf = b""
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [node, "start.mjs"],
            cwd=self.pds_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            info = json.loads(self._read_ready_line(timeout))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        self.pds_url, self.plc_url, self.data_dir = info["pds"], info["plc"], info["dir"]
        self.pds_running = True

    def _read_ready_line(self, timeout: float) -> str:
        return self._read_line(timeout, "PDS not ready")

    def _read_line(self, timeout: float, what: str) -> str:
        """The next line start.mjs prints on stdout (a JSON object)."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._stdout_buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PDSHarnessError(f"{what} after {timeout:.0f} s; stderr:\n{self.stderr_text()}")
                if not sel.select(left):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 65536)
                if not chunk:  # EOF: the process died
                    rc = self._proc.wait(5)
                    raise PDSHarnessError(f"start.mjs exited with {rc} ({what}); stderr:\n{self.stderr_text()}")
                self._stdout_buf += chunk
        line, self._stdout_buf = self._stdout_buf.split(b"\n", 1)
        return line.decode()

    def _command(self, name: str, event: str, timeout: float) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise PDSHarnessError("PDS not started")
        self._proc.stdin.write(f"{name}\n".encode())
        self._proc.stdin.flush()
        answer = json.loads(self._read_line(timeout, f"no answer to {name}"))
        if answer.get("event") != event:
            raise PDSHarnessError(f"{name}: {answer.get('message') or answer}")

    def stop_pds(self, timeout: float = 30.0) -> None:
        """Take the PDS down (its port refuses connections); PLC keeps running. Returns once it is down."""
        self._command("stop-pds", "pds-stopped", timeout)
        self.pds_running = False

    def start_pds(self, timeout: float = START_TIMEOUT) -> None:
        """Bring the PDS back on the same URL with the same data; returns once it listens. No-op when running."""
        self._command("start-pds", "pds-started", timeout)
        self.pds_running = True

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-5000:]

    def stop(self) -> None:
        """SIGTERM start.mjs (it removes its data dir) and wait; SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        self.pds_running = False
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> PDSHarness:
        self.ensure_installed()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers bound to this PDS -----------------------------------------------------------------

    def create_account(self, handle_prefix: str = "user") -> Account:
        return create_account(self.pds_url, handle_prefix)


def create_account(pds_url: str, handle_prefix: str = "user") -> Account:
    """Create an account with a unique `<prefix><random>.test` handle via com.atproto.server.createAccount."""
    # The PDS limits the first label of a service handle to 3..18 chars of [a-z0-9-].
    prefix = re.sub(r"[^a-z0-9]", "", handle_prefix.lower())[:10] or "user"
    handle = f"{prefix}{secrets.token_hex(4)}.test"
    email = f"{handle.split('.')[0]}@mail.test"
    password = secrets.token_urlsafe(16)
    resp = httpx.post(
        f"{pds_url}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": email, "password": password},
        timeout=30,
    )
    if resp.status_code != 200:
        raise PDSHarnessError(f"createAccount {handle}: {resp.status_code} {resp.text}")
    body = resp.json()
    return Account(
        did=body["did"],
        handle=body["handle"],
        password=password,
        access_jwt=body["accessJwt"],
        refresh_jwt=body["refreshJwt"],
        email=email,
    )


# -- headless OAuth sign-in ----------------------------------------------------------------------


class _Cookies:
    """A by-hand cookie jar for one sign-in.

    http.cookiejar never sends the PDS's `Secure` csrf-token cookie over http:// (browsers treat
    http://localhost as secure), and a jar shared between sign-ins replays an old dev-id, which makes
    the PDS answer "This request was initiated from another device".
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def update(self, resp: httpx.Response) -> None:
        for set_cookie in resp.headers.get_list("set-cookie"):
            name, _, rest = set_cookie.partition("=")
            self.values[name.strip()] = rest.split(";", 1)[0]

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.values.items() if v)


def _no_cookie_jar() -> http.cookiejar.CookieJar:
    # httpx would otherwise store Set-Cookie itself and send stale duplicates next to ours.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def authorize_headless(authorize_url: str, handle: str, password: str, timeout: float = 30.0) -> str:
    """Sign in and consent on the PDS's authorization page without a browser.

    `authorize_url` is the `/oauth/authorize?client_id=...&request_uri=...` URL a client sends the
    user to (after PAR); it must be on the issuer's origin. Calls the JSON endpoints the page's
    script uses (@atproto/oauth-provider 0.15.x: `~api/sign-in` then `~api/consent`), follows the
    provider's own `/oauth/authorize/redirect` and returns the final redirect URL: the client's
    redirect_uri with `code`, `state` and `iss` (or `error` if the provider refused).
    Raises PDSHarnessError when a step fails (e.g. wrong password).
    """
    parts = urllib.parse.urlsplit(authorize_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    jar = _Cookies()
    # A fresh client per call is a fresh "browser": new device id, no cookies from earlier flows.
    with httpx.Client(timeout=timeout, cookies=_no_cookie_jar(), follow_redirects=False) as client:
        navigate = {
            "sec-fetch-mode": "navigate",
            "sec-fetch-dest": "document",
            "accept": "text/html",
            "user-agent": "plyrd-tests",
        }
        page = client.get(authorize_url, headers={**navigate, "sec-fetch-site": "none"})
        if page.status_code in (302, 303) and "location" in page.headers:
            return page.headers["location"]  # the provider answered without a sign-in (e.g. an error)
        if page.status_code != 200:
            raise PDSHarnessError(f"GET authorize page: {page.status_code} {page.text[:500]}")
        jar.update(page)
        # Any 24-hex value works as long as the cookie and the header match.
        csrf = jar.values.get("csrf-token") or secrets.token_hex(12)
        jar.values["csrf-token"] = csrf

        def api(endpoint: str, body: dict[str, Any], bearer: str | None = None) -> dict[str, Any]:
            headers = {
                "sec-fetch-mode": "same-origin",
                "sec-fetch-site": "same-origin",
                "sec-fetch-dest": "empty",
                "origin": origin,
                # The provider finds the OAuth request from the referer's request_uri.
                "referer": authorize_url,
                "x-csrf-token": csrf,
                "cookie": jar.header(),
                "content-type": "application/json",
                "user-agent": "plyrd-tests",
            }
            if bearer:
                headers["authorization"] = f"Bearer {bearer}"
            resp = client.post(f"{origin}{OAUTH_API}{endpoint}", headers=headers, content=json.dumps(body))
            jar.update(resp)  # sign-in rotates the device cookies
            if resp.status_code != 200:
                raise PDSHarnessError(f"OAuth {endpoint}: {resp.status_code} {resp.text}")
            result: dict[str, Any] = resp.json()
            return result

        signed_in = api("/sign-in", {"locale": "en", "username": handle, "password": password, "remember": True})
        consent = api("/consent", {"sub": signed_in["account"]["sub"]}, bearer=signed_in.get("ephemeralToken"))
        if "url" not in consent:
            raise PDSHarnessError(f"OAuth /consent gave no redirect: {consent}")
        # The page navigates to this provider URL, which 303s to the client's redirect_uri.
        done = client.get(
            urllib.parse.urljoin(origin, consent["url"]),
            headers={**navigate, "sec-fetch-site": "same-origin", "referer": authorize_url},
        )
        location = done.headers.get("location")
        if done.status_code != 303 or not location:
            raise PDSHarnessError(
                f"OAuth redirect: expected a 303 (response_mode=query), got {done.status_code} {done.text[:500]}"
            )
        return location


# -- pytest fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pds(request: pytest.FixtureRequest) -> Iterator[PDSHarness]:
    """A running PDS + PLC for the whole session (npm ci on first use). Fails, never skips, without Node."""
    harness = PDSHarness()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    failure = ""
    try:
        # Show the (slow, first-run only) npm ci progress even while pytest captures output.
        if capture is not None:
            with capture.global_and_fixture_disabled():
                harness.ensure_installed(log=lambda msg: print(msg, file=sys.stderr, flush=True))
        else:
            harness.ensure_installed()
        harness.start()
    except PDSHarnessError as err:
        failure = str(err)
    if failure:  # failed outside the except block, so pytest shows only the message
        pytest.fail(failure, pytrace=False)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def pds_account(pds: PDSHarness) -> Account:
    """A fresh account on the session PDS (brought back first if an outage test left it down)."""
    if not pds.pds_running:
        pds.start_pds()
    return pds.create_account("plyrd")
