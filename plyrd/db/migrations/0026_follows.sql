-- Following and discovery (plyrd.network.follows): whom the node's users follow on Bluesky, read from their own
-- PDS (their app.bsky.graph.follow records; no AppView), for "artists you follow" and the network feed.

-- The node's users: the accounts that have signed in here. A users row alone does not say so any more (remote
-- artists, featured artists and people met through the network have one too). Their follows are read; their likes
-- of other nodes' tracks make the network feed. Filled on every sign-in; seeded from the sessions the node holds
-- and the records it keeps for its users.
CREATE TABLE node_users (
    did              TEXT PRIMARY KEY,
    signed_in_at     REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),  -- the latest sign-in
    follows_read_at  REAL,                          -- when their follows were last read (or tried); NULL: never
    follows_count    INTEGER NOT NULL DEFAULT 0,    -- how many follow records that read kept
    follows_complete INTEGER NOT NULL DEFAULT 1     -- 0: they follow more than the node reads; the newest are kept
) STRICT;

INSERT OR IGNORE INTO node_users(did)
    SELECT did FROM auth_sessions UNION SELECT did FROM pds_records;

CREATE INDEX node_users_follows_read ON node_users(coalesce(follows_read_at, 0));

-- A node user's follow records as their PDS holds them: one row per record (its rkey), so a single create or delete
-- (ingest) applies as it is; the same subject twice is two records, and still one followed artist.
CREATE TABLE follows (
    did         TEXT NOT NULL,                      -- who follows (a node user)
    rkey        TEXT NOT NULL,                      -- the app.bsky.graph.follow record's key in their repo
    subject_did TEXT NOT NULL,                      -- whom they follow
    created_at  REAL NOT NULL,                      -- the record's createdAt (unix seconds)
    PRIMARY KEY (did, rkey)
) STRICT, WITHOUT ROWID;

CREATE INDEX follows_follower ON follows(did, subject_did);   -- whom someone follows (their artists, their feed)
CREATE INDEX follows_subject ON follows(subject_did, did);    -- who follows someone (which artists to read)
