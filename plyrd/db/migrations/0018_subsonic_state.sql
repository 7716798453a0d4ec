-- What Subsonic apps keep about a listener that plyr.fm has no record type for: node-local, never on a PDS
-- (plyrd.subsonic.state). Stars of songs are likes (fm.plyr.like); stars of albums and artists are here. Playlists
-- and the play queue are the web player's own (0008, 0007); only what Subsonic adds to them lives here.

-- Positions inside a song, one per listener and song (createBookmark overwrites).
CREATE TABLE subsonic_bookmarks (
    did          TEXT NOT NULL,
    track_id     INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    position_ms  INTEGER NOT NULL CHECK (position_ms >= 0),
    comment      TEXT CHECK (comment IS NULL OR length(comment) <= 1000),
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    changed_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (did, track_id)
) STRICT;

-- Starred albums by their Subsonic id (`sid`): a node album (al-<uuid>, which album_id also names so the star goes
-- with the album), an album the tracks' tags name (al-<did>~<name>), or an artist's Singles (al-singles-<did>).
-- A star whose album no longer has songs the caller may see is simply not listed.
CREATE TABLE subsonic_starred_albums (
    did          TEXT NOT NULL,
    sid          TEXT NOT NULL CHECK (length(sid) <= 2100),
    album_id     TEXT REFERENCES albums(id) ON DELETE CASCADE,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (did, sid)
) STRICT;

CREATE TABLE subsonic_starred_artists (
    did          TEXT NOT NULL,
    artist_did   TEXT NOT NULL,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (did, artist_did)
) STRICT;

-- Which Subsonic client (`c`) saved the listener's queue, and at which queue_state revision: getPlayQueue's
-- changedBy names it while that revision is the current one (a later save by the web player supersedes it).
CREATE TABLE subsonic_queue_saves (
    did          TEXT PRIMARY KEY,
    revision     INTEGER NOT NULL,
    client       TEXT NOT NULL CHECK (length(client) <= 100)
) STRICT;

-- A playlist's comment (updatePlaylist's `comment`): shown by Subsonic apps, not part of the fm.plyr.list record.
CREATE TABLE subsonic_playlist_comments (
    playlist_id  TEXT PRIMARY KEY REFERENCES playlists(id) ON DELETE CASCADE,
    comment      TEXT NOT NULL CHECK (length(comment) <= 1000)
) STRICT;
