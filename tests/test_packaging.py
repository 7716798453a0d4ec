"""A non-editable install must carry static/, templates and migrations inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_ships_static_templates_and_migrations(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("plyrd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (p for p in (ROOT / "static").rglob("*") if p.is_file()):
        assert f"plyrd/static/{path.relative_to(ROOT / 'static').as_posix()}" in names
    assert "plyrd/templates/home.html" in names
    assert "plyrd/db/migrations/0001_initial.sql" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "plyrd = plyrd.cli:main" in entry
