-- Other repos' tracks (plyrd.network.remote_tracks): an fm.plyr.track record in any repo that a like, comment,
-- playlist item or follow brought to the node becomes a track row with source 'remote', so every reader (feeds,
-- pages, the player, likes, playlists, search, Subsonic) and the one visibility rule (plyrd.catalog.tracks) see it.
--
-- tracks is rebuilt (SQLite cannot change a column's constraints in place) for three changes:
-- * source may be 'remote';
-- * original_sha is no longer a foreign key of blobs: a remote track's original_sha is the SHA-256 its record's
--   audioBlob CID names, known before (and whether or not) the node holds those bytes. The audio is fetched on
--   first play, verified against it and kept in the blob store as a cache (remote_audio below), which holds the
--   blob's reference; remote tracks never hold references on their original_sha (plyrd.catalog.tracks
--   track_blobs). A record with only an audioUrl has no original_sha (NULL);
-- * status may be 'unavailable': a remote track whose record is gone (deleted, or its repo deactivated). Its row
--   stays so likes and playlist entries that point at it are not lost; it shows as unavailable and does not play.
-- Column order, defaults and every index and trigger are as before.
CREATE TABLE tracks_new (
    id              INTEGER PRIMARY KEY,
    artist_did      TEXT NOT NULL REFERENCES users(did),
    title           TEXT NOT NULL,
    album           TEXT,
    description     TEXT,
    tags            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    original_sha    TEXT,
    original_ext    TEXT NOT NULL,
    original_mime   TEXT NOT NULL,
    web_sha         TEXT REFERENCES blobs(sha256),
    image_sha       TEXT REFERENCES blobs(sha256),
    image_mime      TEXT,
    thumb_sha       TEXT REFERENCES blobs(sha256),
    display_sha     TEXT REFERENCES blobs(sha256),
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
    status          TEXT NOT NULL DEFAULT 'processing'
                    CHECK (status IN ('processing', 'ready', 'failed', 'unavailable')),
    created_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    rkey            TEXT,
    record_uri      TEXT,
    record_cid      TEXT,
    unlisted        INTEGER NOT NULL DEFAULT 0,
    features        TEXT NOT NULL DEFAULT '[]',
    self_labels     TEXT NOT NULL DEFAULT '[]',
    play_count      INTEGER NOT NULL DEFAULT 0,
    download_policy TEXT CHECK (download_policy IS NULL OR download_policy IN ('anyone', 'signed_in', 'artist_only')),
    lyrics          TEXT,
    source          TEXT NOT NULL DEFAULT 'upload' CHECK (source IN ('upload', 'library', 'remote')),
    -- uploads and library files always have their original; only a remote track may lack it
    CHECK (original_sha IS NOT NULL OR source = 'remote')
) STRICT;

INSERT INTO tracks_new SELECT id, artist_did, title, album, description, tags, original_sha, original_ext,
    original_mime, web_sha, image_sha, image_mime, thumb_sha, display_sha, container, codec, duration, sample_rate,
    channels, bit_depth, bitrate, lossless, file_tags, peaks, loudness_lufs, track_gain_db, sample_peak, status,
    created_at, updated_at, rkey, record_uri, record_cid, unlisted, features, self_labels, play_count,
    download_policy, lyrics, source FROM tracks;
DROP TABLE tracks;
ALTER TABLE tracks_new RENAME TO tracks;

CREATE INDEX tracks_artist ON tracks(artist_did, created_at DESC);
CREATE INDEX tracks_created ON tracks(created_at DESC);
CREATE INDEX tracks_original ON tracks(original_sha);
CREATE INDEX tracks_web ON tracks(web_sha) WHERE web_sha IS NOT NULL;
CREATE UNIQUE INDEX tracks_record ON tracks(artist_did, rkey) WHERE rkey IS NOT NULL;
CREATE INDEX tracks_record_uri ON tracks(record_uri) WHERE record_uri IS NOT NULL;
CREATE INDEX tracks_feed ON tracks(created_at DESC, id DESC) WHERE unlisted = 0 AND status = 'ready';
CREATE INDEX tracks_library ON tracks(source) WHERE source = 'library';
CREATE INDEX tracks_feed_public ON tracks(created_at DESC, id DESC)
    WHERE unlisted = 0 AND status = 'ready' AND source = 'upload';
CREATE INDEX tracks_albums ON tracks(artist_did, album, file_tags, source, status, unlisted, created_at, play_count);
-- the network feed: newest remote tracks
CREATE INDEX tracks_remote ON tracks(created_at DESC, id DESC) WHERE source = 'remote';

CREATE TRIGGER search_tracks_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(new.id AS TEXT));
END;

CREATE TRIGGER search_tracks_update AFTER UPDATE OF id, artist_did, title, album, tags, features, unlisted, status
ON tracks
WHEN old.id IS NOT new.id OR old.artist_did IS NOT new.artist_did OR old.title IS NOT new.title
  OR old.album IS NOT new.album OR old.tags IS NOT new.tags OR old.features IS NOT new.features
  OR old.unlisted IS NOT new.unlisted OR old.status IS NOT new.status BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(old.id AS TEXT));
    INSERT INTO search_changes(entity, key) SELECT 'track', CAST(new.id AS TEXT) WHERE new.id IS NOT old.id;
END;

CREATE TRIGGER search_tracks_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(old.id AS TEXT));
END;

-- Where a remote track comes from, beyond its tracks row: the record's audio as the record names it, and when the
-- node last read it. tracks.record_uri/record_cid/rkey hold the record's identity as for any published track.
CREATE TABLE remote_tracks (
    track_id    INTEGER PRIMARY KEY REFERENCES tracks(id) ON DELETE CASCADE,
    audio_cid   TEXT,                 -- the record's audioBlob (its digest is tracks.original_sha)
    audio_size  INTEGER,              -- what the record says; the fetch is capped by it
    audio_url   TEXT,                 -- the record's audioUrl (https only, checked), when it has one
    image_url   TEXT,                 -- the record's imageUrl (https only), fetched once into the artwork blobs
    fetched_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),  -- last read from the PDS
    gone_reason TEXT                  -- why it is unavailable (tracks.status = 'unavailable')
) STRICT;

-- The remote audio cache: bytes fetched from an artist's PDS (verified against the blob CID) kept in blobs/, one
-- reference each, least recently played evicted first above network.remote_audio_cache_mb.
CREATE TABLE remote_audio (
    sha256         TEXT PRIMARY KEY REFERENCES blobs(sha256),
    size           INTEGER NOT NULL CHECK (size >= 0),
    last_played_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;
CREATE INDEX remote_audio_lru ON remote_audio(last_played_at);

-- Repos that are not active (#account events, or a PDS answering RepoDeactivated/RepoTakendown): their tracks are
-- hidden from everyone but admins, as if gone. NULL: active.
ALTER TABLE users ADD COLUMN repo_status TEXT;
CREATE INDEX users_inactive ON users(did) WHERE repo_status IS NOT NULL;
