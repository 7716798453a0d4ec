-- Each person's "Liked Tracks" list record (fm.plyr.list, listType liked): which rkey it lives at.
CREATE TABLE liked_lists (
    did        TEXT PRIMARY KEY,
    rkey       TEXT NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;
