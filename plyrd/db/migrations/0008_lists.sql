-- Albums and playlists. Both are published as fm.plyr.list records (listType album / playlist) on the owner's PDS;
-- a private playlist never leaves the node. Covers are blobs (0003): each row holds a reference on its cover's
-- original and renditions, taken and dropped in the same transaction that changes the columns.

CREATE TABLE albums (
    id           TEXT PRIMARY KEY,                 -- UUID string, as plyr.fm's album ids are strings
    artist_did   TEXT NOT NULL REFERENCES users(did),
    slug         TEXT NOT NULL,                    -- from the title at creation; unique per artist
    title        TEXT NOT NULL,
    description  TEXT,
    -- cover: the original image and its WebP renditions
    image_sha    TEXT REFERENCES blobs(sha256),
    image_mime   TEXT,
    thumb_sha    TEXT REFERENCES blobs(sha256),
    display_sha  TEXT REFERENCES blobs(sha256),
    -- the fm.plyr.list record; NULL until the album first has a track (an empty shell is not a release)
    rkey         TEXT,
    record_uri   TEXT,
    record_cid   TEXT,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE UNIQUE INDEX albums_slug ON albums(artist_did, slug);
CREATE INDEX albums_record_uri ON albums(record_uri) WHERE record_uri IS NOT NULL;

-- An album's explicit track order. A track is on at most one album; deleting a track drops it from its album.
CREATE TABLE album_tracks (
    album_id  TEXT NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position >= 0),
    track_id  INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    PRIMARY KEY (album_id, position)
) STRICT;

CREATE UNIQUE INDEX album_tracks_track ON album_tracks(track_id);

CREATE TABLE playlists (
    id               TEXT PRIMARY KEY CHECK (length(id) = 36),  -- UUID string
    owner_did        TEXT NOT NULL REFERENCES users(did),
    name             TEXT NOT NULL,
    is_private       INTEGER NOT NULL DEFAULT 0 CHECK (is_private IN (0, 1)),   -- private: never on a PDS
    show_on_profile  INTEGER NOT NULL DEFAULT 0 CHECK (show_on_profile IN (0, 1)),
    image_sha        TEXT REFERENCES blobs(sha256),
    image_mime       TEXT,
    thumb_sha        TEXT REFERENCES blobs(sha256),
    display_sha      TEXT REFERENCES blobs(sha256),
    -- the fm.plyr.list record of a public playlist; always NULL while private
    rkey             TEXT,
    record_uri       TEXT,
    record_cid       TEXT,
    created_at       REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at       REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    CHECK (is_private = 0 OR rkey IS NULL)
) STRICT;

CREATE INDEX playlists_owner ON playlists(owner_did, created_at DESC);
CREATE UNIQUE INDEX playlists_record_uri ON playlists(record_uri) WHERE record_uri IS NOT NULL;

-- A playlist's items in order, each the strongRef it was added with. track_id points at the local track while it
-- exists; when the track is deleted the item stays (the published record still names it) with track_id NULL.
CREATE TABLE playlist_items (
    playlist_id  TEXT NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL CHECK (position >= 0),
    track_id     INTEGER REFERENCES tracks(id) ON DELETE SET NULL,
    track_uri    TEXT NOT NULL,
    track_cid    TEXT NOT NULL,
    added_at     REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (playlist_id, position)
) STRICT;

CREATE UNIQUE INDEX playlist_items_uri ON playlist_items(playlist_id, track_uri);
-- Deleting a track finds its items without a scan (ON DELETE SET NULL).
CREATE INDEX playlist_items_track ON playlist_items(track_id) WHERE track_id IS NOT NULL;
