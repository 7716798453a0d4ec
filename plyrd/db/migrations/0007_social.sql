-- The social layer: likes, timed comments, counted plays, preferences and the server-kept play queue.
-- Times are unix seconds (REAL) in UTC. Likes and comments are mirrors of records in the author's PDS (written
-- through the outbox); plays, preferences and queues are node-local state.

-- One like per person per track. `position` orders the person's "Liked Tracks" list (ascending): a new like goes
-- in front (one less than the current smallest), and a reorder rewrites 0..n-1.
CREATE TABLE likes (
    id         INTEGER PRIMARY KEY,
    did        TEXT NOT NULL,                          -- who liked
    track_id   INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    rkey       TEXT NOT NULL,                          -- the fm.plyr.like record key (a TID)
    position   INTEGER NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    UNIQUE (did, track_id)
) STRICT;

CREATE UNIQUE INDEX likes_record ON likes(did, rkey);
CREATE INDEX likes_list ON likes(did, position);              -- a person's liked list, in their order
CREATE INDEX likes_track ON likes(track_id, created_at DESC);  -- who liked a track, counts

-- Timed comments, anchored to a playback position. At most 20 per track (checked in plyrd.catalog.comments).
CREATE TABLE comments (
    id           INTEGER PRIMARY KEY,
    track_id     INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    did          TEXT NOT NULL,                        -- the author
    text         TEXT NOT NULL CHECK (length(text) >= 1),
    timestamp_ms INTEGER NOT NULL CHECK (timestamp_ms >= 0),
    rkey         TEXT NOT NULL,                        -- the fm.plyr.comment record key (a TID)
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL                                  -- NULL until edited
) STRICT;

CREATE UNIQUE INDEX comments_record ON comments(did, rkey);
CREATE INDEX comments_track ON comments(track_id, timestamp_ms);

-- Every counted play (plyr.fm keeps only a counter; the history here feeds artist analytics).
-- `listener` is 'did:...' for a signed-in listener or 'anon:<plyr_play_id cookie>' for everyone else.
CREATE TABLE play_events (
    id          INTEGER PRIMARY KEY,
    track_id    INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    listener    TEXT NOT NULL,
    played_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    listened_ms INTEGER CHECK (listened_ms IS NULL OR listened_ms >= 0)  -- what the client reported, if anything
) STRICT;

-- Dedup: "did this listener play this track within the window?" is one index seek.
CREATE INDEX play_events_dedup ON play_events(listener, track_id, played_at DESC);
-- Analytics: plays of an artist's tracks per day over a period.
CREATE INDEX play_events_track ON play_events(track_id, played_at);

-- Preferences as one JSON object per person; defaults live in code, so a new field needs no migration.
CREATE TABLE preferences (
    did        TEXT PRIMARY KEY,
    prefs      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(prefs)),
    updated_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

-- The play queue a person's devices share. `revision` is the ETag; a PUT must name the revision it replaces.
CREATE TABLE queue_state (
    did        TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (json_valid(state)),
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    updated_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;
