-- Replacing a track's audio (PUT /tracks/{id}/audio) keeps the audio it displaced as a revision, restorable
-- (POST /tracks/{id}/revisions/{n}/restore). A revision holds the audio columns the track had, and holds the
-- references on their blobs that the track held: the references move between the track and its revisions, so a
-- file is released only when the last revision or track using it lets go (plyrd.catalog.revisions). At most 10
-- revisions per track are kept, the oldest pruned, as plyr.fm. No cascade from tracks: a track is removed only by
-- plyrd.catalog.tracks.remove_track, which drops its revisions and their references first.

CREATE TABLE track_revisions (
    id              INTEGER PRIMARY KEY,
    track_id        INTEGER NOT NULL REFERENCES tracks(id),
    -- the track's audio columns (0004) as they were when this audio was displaced
    original_sha    TEXT NOT NULL REFERENCES blobs(sha256),
    original_ext    TEXT NOT NULL,
    original_mime   TEXT NOT NULL,
    web_sha         TEXT REFERENCES blobs(sha256),
    container       TEXT NOT NULL,
    codec           TEXT NOT NULL,
    duration        REAL NOT NULL,
    sample_rate     INTEGER NOT NULL,
    channels        INTEGER NOT NULL,
    bit_depth       INTEGER,
    bitrate         INTEGER,
    lossless        INTEGER NOT NULL DEFAULT 0,
    file_tags       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(file_tags)),
    peaks           TEXT CHECK (peaks IS NULL OR json_valid(peaks)),
    loudness_lufs   REAL,
    track_gain_db   REAL,
    sample_peak     REAL,
    -- when this audio stopped being the track's (the revision was made)
    created_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE INDEX track_revisions_track ON track_revisions(track_id, created_at DESC, id DESC);

-- A replacement is an upload row too (its id is what the client follows at /tracks/uploads/{id}/progress, and a
-- failed one releases its files like any upload), naming the track whose audio it replaces. Its track_id stays
-- NULL: an upload's track is deleted when the upload fails, a replaced track never is.
ALTER TABLE uploads ADD COLUMN replaces INTEGER REFERENCES tracks(id) ON DELETE SET NULL;
CREATE INDEX uploads_replaces ON uploads(replaces) WHERE replaces IS NOT NULL;
