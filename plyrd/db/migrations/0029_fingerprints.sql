-- Acoustic fingerprints of uploaded tracks (plyrd.moderation.duplicates, Chromaprint through plyrd.media.chromaprint):
-- a new upload that sounds like another uploader's track is flagged for the admins' review (a report with the reason
-- 'duplicate'). Only uploads (and imports of the node's users' own records) are fingerprinted: music-folder tracks and
-- other repos' tracks are not, so library scans stay fast.

CREATE TABLE track_fingerprints (
    track_id    INTEGER PRIMARY KEY REFERENCES tracks(id) ON DELETE CASCADE,
    audio_sha   TEXT NOT NULL,            -- the audio it was made from (a replaced audio leaves it stale)
    duration    REAL NOT NULL,            -- the track's whole length, seconds
    seconds     REAL NOT NULL,            -- how much of it the fingerprint covers (the first 120 s at most)
    fp          BLOB NOT NULL,            -- Chromaprint's raw fingerprint: uint32 items, little-endian
    created_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE INDEX track_fingerprints_duration ON track_fingerprints(duration);

-- A few items of each fingerprint (about one distinct value in eight, chosen by value), so a new upload's candidates
-- are found by index lookups rather than by reading every fingerprint: two encodings of one recording share many.
CREATE TABLE track_fingerprint_keys (
    key       INTEGER NOT NULL,
    track_id  INTEGER NOT NULL REFERENCES track_fingerprints(track_id) ON DELETE CASCADE,
    PRIMARY KEY (key, track_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX track_fingerprint_keys_track ON track_fingerprint_keys(track_id);
