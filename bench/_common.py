"""Small helpers the benchmarks share: a free loopback port, a process's resident memory, and what `--against REV`
needs to run a benchmark side by side with another revision.

Side by side (`--against REV`): REV is checked out with `git worktree add --detach` in a temporary directory (removed
afterwards), and the code under test of each tree runs in its own process with PYTHONPATH=<tree> and a working
directory outside both trees. The venv has plyrd installed editable from this checkout, but PYTHONPATH comes first on
sys.path, and so does SOURCE below: a bench script started with BENCH_PLYRD_TREE=<tree> imports plyrd from that tree.
`plyrd_file` checks it: each side prints the plyrd.__file__ it imports. The measured phases alternate between the
trees (REV, this tree, REV, this tree...), so that whatever else the machine does hits both alike.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TREE_ENV = "BENCH_PLYRD_TREE"
# The tree a bench script imports plyrd from: this checkout, unless a side-by-side run started it for another one.
SOURCE = Path(os.environ.get(TREE_ENV) or REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """VmRSS of a live process in MB (NaN once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- side by side with another revision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A source tree to import plyrd from."""

    label: str  # as printed in the column headers
    path: Path
    commit: str  # its HEAD, abbreviated
    schema: int  # the newest migration it ships (the schema version its code migrates a database to)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a process that imports plyrd from this tree."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", TREE_ENV)}
        env.update(PYTHONPATH=str(self.path), **{TREE_ENV: str(self.path)}, **extra)
        return env


def git(*args: str, cwd: Path = REPO) -> str:
    """A git command in this checkout; retried while another process holds one of its lock files."""
    for attempt in range(20):
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
        if ".lock" not in done.stderr or attempt == 19:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
        time.sleep(0.5)
    raise AssertionError("unreachable")


def schema_version(tree: Path) -> int:
    names = (p.name for p in (tree / "plyrd" / "db" / "migrations").iterdir())
    return max((int(m.group(1)) for n in names if (m := re.match(r"^(\d{4})_\w+\.sql$", n))), default=0)


@contextmanager
def against(rev: str) -> Iterator[tuple[Tree, Tree, Path]]:
    """(REV's tree, this tree, a scratch directory outside both). REV is a temporary detached worktree, removed on
    the way out with the scratch directory."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    scratch = Path(tempfile.mkdtemp(prefix="plyrd-against-")).resolve()
    where = scratch / "tree"
    try:
        git("worktree", "add", "--detach", str(where), commit)
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "plyrd")
        old = Tree(rev if commit.startswith(rev) else f"{rev} ({commit[:7]})", where, commit[:7],
                   schema_version(where))
        this = Tree("this tree", REPO, head + ("+changes" if dirty else ""), schema_version(REPO))
        yield old, this, scratch
    finally:
        try:
            if where.exists():
                git("worktree", "remove", "--force", str(where))
        except RuntimeError as e:
            print(f"(could not remove the worktree: {e}; `git worktree prune` will)", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)


def plyrd_file(tree: Tree, cwd: Path) -> str:
    """The plyrd.__file__ a process started as the benches start one for `tree` imports; fails unless it is the
    tree's own."""
    found = subprocess.run([sys.executable, "-c", "import plyrd; print(plyrd.__file__)"], cwd=cwd, env=tree.env(),
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.path.resolve()):
        raise SystemExit(f"{tree.label}: plyrd imported from {found}, not from {tree.path}")
    return found


def describe(trees: Sequence[Tree], cwd: Path) -> None:
    for tree in trees:
        print(f"  {tree.label}: {tree.path} at {tree.commit}, schema {tree.schema};"
              f" imports {plyrd_file(tree, cwd)}")


def print_log_tails(logs: dict[str, Path], lines: int = 25) -> None:
    """The end of each server's log, printed when a side-by-side run fails: the logs go with the scratch directory,
    and a 500 says nothing of which tree failed or why."""
    for label, log in logs.items():
        text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log)"]
        print(f"--- {label}'s server log ({log}), its last {len(text)} lines:", file=sys.stderr)
        print("\n".join(text), file=sys.stderr)


def alternating(rounds: int, trees: Sequence[Tree]) -> Iterator[tuple[int, Tree]]:
    """A B A B...: each round runs every tree once, in the same order."""
    for r in range(rounds):
        for tree in trees:
            yield r, tree


def ratio(new: float, old: float) -> str:
    return f"{new / old:.2f}" if old and old == old and new == new else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> None:
    """Rows of strings, the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print(indent + "  ".join(cells).rstrip())
