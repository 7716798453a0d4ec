-- Moderation (plyrd.moderation): reports, takedowns, sensitive-artwork flags, suspensions and the audit log of a shared
-- node's admins. The owner's PDS records are never touched: a takedown is this node's hosting decision.

-- A taken-down track, comment or playlist disappears from every API and page for everyone but the node's admins and
-- its owner, who sees why (plyrd.catalog.tracks `visible`; comments and playlists read the same columns). Its files
-- stay until an admin purges them (after moderation.purge_grace_days). NULL: not taken down.
ALTER TABLE tracks ADD COLUMN taken_down TEXT;           -- why, as the owner reads it
ALTER TABLE tracks ADD COLUMN taken_down_at REAL;
-- A purged track: its files are gone (it holds no blob references any more) and it stays taken down, its row kept as
-- a tombstone so that reconciliation, import and remote resolution never bring its record back in.
ALTER TABLE tracks ADD COLUMN purged_at REAL;
-- Labels the node's admins put on a track (the node's labeler signs them): 'sensitive' artwork is blurred for whoever
-- has not opted in, exactly as the artist's own content notice (self_labels) is.
ALTER TABLE tracks ADD COLUMN operator_labels TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(operator_labels));
ALTER TABLE comments ADD COLUMN taken_down TEXT;
ALTER TABLE comments ADD COLUMN taken_down_at REAL;
ALTER TABLE playlists ADD COLUMN taken_down TEXT;
ALTER TABLE playlists ADD COLUMN taken_down_at REAL;

-- A suspended uploader signs in and listens, and cannot upload or comment. NULL: not suspended.
ALTER TABLE users ADD COLUMN suspended TEXT;             -- why
ALTER TABLE users ADD COLUMN suspended_at REAL;

CREATE INDEX tracks_taken_down ON tracks(taken_down_at) WHERE taken_down IS NOT NULL;

-- A case: one subject (a track, comment, playlist, artist...) that listeners reported; reports of the same subject
-- while its case is open fold into it (report_entries), so an admin acts once.
CREATE TABLE reports (
    id           INTEGER PRIMARY KEY,
    target_type  TEXT NOT NULL CHECK (target_type IN ('track', 'comment', 'playlist', 'artist', 'album', 'tag')),
    target_id    TEXT NOT NULL,                     -- track/comment id, playlist/album uuid, artist DID, tag
    state        TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved', 'dismissed')),
    reason       TEXT NOT NULL,                     -- the first report's reason
    entries      INTEGER NOT NULL DEFAULT 0,        -- how many reports folded into it
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    closed_by    TEXT,                              -- the admin's DID
    closed_at    REAL,
    resolution   TEXT                               -- what was done, in the admin's words
) STRICT;

CREATE UNIQUE INDEX reports_open ON reports(target_type, target_id) WHERE state = 'open';
CREATE INDEX reports_state ON reports(state, updated_at DESC);

-- Each listener's report inside a case: one per reporter per case (a second one from them updates it). `reporter` is
-- a DID, or 'did:plyrd:node' for what the node itself flags (a duplicate recording).
CREATE TABLE report_entries (
    id          INTEGER PRIMARY KEY,
    report_id   INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    reporter    TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('copyright', 'abuse', 'spam', 'explicit', 'other', 'duplicate')),
    description TEXT CHECK (description IS NULL OR length(description) <= 1000),
    created_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    UNIQUE (report_id, reporter)
) STRICT;

CREATE INDEX report_entries_reporter ON report_entries(reporter, created_at DESC);

-- Every admin action, kept: who, when, what, on what, why. Append-only.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    actor        TEXT NOT NULL,                     -- the admin's DID ('did:plyrd:node' for the node's own jobs)
    action       TEXT NOT NULL,                     -- takedown, restore, flag_sensitive, clear_sensitive, suspend...
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    reason       TEXT,
    detail       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE INDEX audit_log_time ON audit_log(created_at DESC);
CREATE INDEX audit_log_target ON audit_log(target_type, target_id, created_at DESC);
