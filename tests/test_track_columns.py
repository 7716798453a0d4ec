"""The read model lists every column of `tracks` but the waveform peaks by name (plyrd.catalog.tracks TRACK_COLUMNS:
lists leave the ~8 KB of peaks unread). A column a migration adds must be named there too, or lists would lose it."""

from __future__ import annotations

import sqlite3

from plyrd.catalog.tracks import TRACK_ALBUM_SELECT, TRACK_COLUMNS, TRACK_LIST_SELECT
from plyrd.db.migrations import migrate


def test_track_columns_are_every_column_but_the_peaks() -> None:
    conn = sqlite3.connect(":memory:")
    migrate(conn)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(tracks)")]
    assert [c for c in columns if c != "peaks"] == list(TRACK_COLUMNS)
    conn.row_factory = sqlite3.Row
    for select in (TRACK_LIST_SELECT, TRACK_ALBUM_SELECT):
        cursor = conn.execute(select + " WHERE 0")
        names = [d[0] for d in cursor.description]
        assert set(columns) <= set(names) and names.count("peaks") == 1  # peaks is there, as NULL
