-- The PDS outbox: record writes to users' PDSes, queued in the same transaction as the local change that causes
-- them, and what plyrd believes each PDS holds (plyrd.atproto.outbox).

-- One row per pending write. Rows leave the table once the PDS has accepted them; a row the PDS refused for good
-- stays, state 'failed', with its error. At most one 'pending' row per record: new writes coalesce into it.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order; AUTOINCREMENT so a seq is never reused
    did             TEXT NOT NULL,
    collection      TEXT NOT NULL,
    rkey            TEXT NOT NULL,
    op              TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    record          TEXT CHECK (record IS NULL OR json_valid(record)),  -- the record JSON (put only)
    cid             TEXT,                                               -- its CID, computed locally (put only)
    blobs           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(blobs)),  -- [[sha256, mime, size]] to ensure first
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_error      TEXT,
    created_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    CHECK ((op = 'put') = (record IS NOT NULL))
) STRICT;

CREATE INDEX outbox_due ON outbox(did, state, seq);
CREATE INDEX outbox_record ON outbox(did, collection, rkey, seq);
CREATE INDEX outbox_pending ON outbox(state, next_attempt_at) WHERE state = 'pending';

-- What plyrd believes is on each PDS (the last version it wrote and the PDS accepted): for reconciliation, and
-- the CID half of strongRefs. `blob_cids` lists the blobs the record references, which keep them alive there.
CREATE TABLE pds_records (
    did         TEXT NOT NULL,
    collection  TEXT NOT NULL,
    rkey        TEXT NOT NULL,
    uri         TEXT NOT NULL,
    cid         TEXT NOT NULL,
    record      TEXT NOT NULL CHECK (json_valid(record)),
    blob_cids   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(blob_cids)),
    synced_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (did, collection, rkey)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX pds_records_uri ON pds_records(uri);

-- Blobs uploaded to each user's PDS, so a blob is sent once. A PDS deletes a blob no record references after
-- about an hour, so an upload counts as "there" only while fresh or while a record in pds_records references it.
CREATE TABLE pds_blobs (
    did          TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    cid          TEXT NOT NULL,
    size         INTEGER NOT NULL,
    uploaded_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    PRIMARY KEY (did, sha256)
) STRICT, WITHOUT ROWID;
