-- Finished transcodes of whole tracks, kept so a second play of the same song at the same settings is a file read
-- (Subsonic's stream; plyrd.subsonic.transcode_cache). Keyed by the source's bytes, not by track: a transcode is
-- valid for as long as those bytes exist, whichever track or revision holds them. Each row holds one reference on
-- its blob. When the source blob itself is freed, plyrd.storage drops its rows (and their references) in the same
-- transaction: no foreign key on the source, since the rows go after the source row does. The cache is bounded in
-- total size (subsonic.transcode_cache_mb), least recently used first out.
CREATE TABLE transcodes (
    source_sha256 TEXT NOT NULL CHECK (length(source_sha256) = 64),
    format        TEXT NOT NULL CHECK (format IN ('mp3', 'opus')),
    bitrate       INTEGER NOT NULL CHECK (bitrate > 0),  -- kbit/s
    blob_sha256   TEXT NOT NULL REFERENCES blobs(sha256),
    size          INTEGER NOT NULL CHECK (size >= 0),
    created_at    REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_used_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (source_sha256, format, bitrate)
) STRICT;

CREATE INDEX transcodes_lru ON transcodes(last_used_at);
