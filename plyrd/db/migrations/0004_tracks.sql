-- Tracks and the uploads that make them. Files are blobs (0003): a track references its original, its web
-- rendition and its artwork by sha256 and holds a reference count on each.

CREATE TABLE tracks (
    id              INTEGER PRIMARY KEY,
    artist_did      TEXT NOT NULL REFERENCES users(did),
    title           TEXT NOT NULL,
    album           TEXT,
    description     TEXT,
    tags            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    -- the file as uploaded, always kept and downloadable
    original_sha    TEXT NOT NULL REFERENCES blobs(sha256),
    original_ext    TEXT NOT NULL,
    original_mime   TEXT NOT NULL,
    -- MP3 320k rendition, only for originals that browsers cannot all play
    web_sha         TEXT REFERENCES blobs(sha256),
    -- artwork: the original image and its WebP renditions
    image_sha       TEXT REFERENCES blobs(sha256),
    image_mime      TEXT,
    thumb_sha       TEXT REFERENCES blobs(sha256),
    display_sha     TEXT REFERENCES blobs(sha256),
    -- what the file is
    container       TEXT NOT NULL,
    codec           TEXT NOT NULL,
    duration        REAL NOT NULL,
    sample_rate     INTEGER NOT NULL,
    channels        INTEGER NOT NULL,
    bit_depth       INTEGER,
    bitrate         INTEGER,
    lossless        INTEGER NOT NULL DEFAULT 0,
    file_tags       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(file_tags)),  -- artist, track number, year, genre
    -- analysis
    peaks           TEXT CHECK (peaks IS NULL OR json_valid(peaks)),
    loudness_lufs   REAL,
    track_gain_db   REAL,
    sample_peak     REAL,
    -- processing: playable as soon as one rendition browsers play exists
    status          TEXT NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
    created_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE INDEX tracks_artist ON tracks(artist_did, created_at DESC);
CREATE INDEX tracks_created ON tracks(created_at DESC);
CREATE INDEX tracks_original ON tracks(original_sha);
CREATE INDEX tracks_web ON tracks(web_sha) WHERE web_sha IS NOT NULL;

-- An upload in flight. Its id is a capability: whoever holds it may watch the progress.
-- The upload holds its own references on the stored files until a track takes them over, so nothing it stored
-- can be collected while it waits for a retry, and a failed upload releases everything.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    did         TEXT NOT NULL,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    track_id    INTEGER REFERENCES tracks(id) ON DELETE SET NULL,
    blob_refs   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(blob_refs)),  -- sha256s this upload still references
    created_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE INDEX uploads_did ON uploads(did, created_at DESC);
