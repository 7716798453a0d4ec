-- The first schema: the people the node knows and the node's own small settings.
-- Times are unix seconds (REAL) in UTC; DIDs are the identity of a person everywhere in plyrd.

CREATE TABLE users (
    did          TEXT PRIMARY KEY,             -- did:plc:... or did:web:...
    handle       TEXT,                         -- last verified handle; NULL when it no longer resolves back
    display_name TEXT,
    avatar_url   TEXT,
    pds_url      TEXT,                         -- where this user's records live
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

CREATE UNIQUE INDEX users_handle ON users(handle) WHERE handle IS NOT NULL;

-- Small node-wide values (the node's creation time, last housekeeping run...).
CREATE TABLE node_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

INSERT INTO node_state(key, value) VALUES ('created_at', CAST((julianday('now') - 2440587.5) * 86400.0 AS TEXT));
