-- Media storage and background work: content-addressed blobs with reference counts, and a durable job queue.
-- Times are unix seconds (REAL) in UTC.

-- One row per stored file, named by the SHA-256 of its bytes (blobs/ab/cd/<sha256>); identical bytes are stored once.
-- A row is written only after its file is durably in place, so a row always has a file (plyrd.storage explains the
-- order). Rows that own a blob increment refcount in their own transaction; garbage collection removes blobs whose
-- refcount has been 0 for a grace period (touched_at says since when), so a blob just uploaded is not collected
-- before the row that will reference it is written.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    size       INTEGER NOT NULL CHECK (size >= 0),
    mime       TEXT NOT NULL DEFAULT 'application/octet-stream',
    refcount   INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    touched_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)  -- last ingest, incref or decref
) STRICT;

-- Garbage collection looks only at unreferenced blobs.
CREATE INDEX blobs_unreferenced ON blobs(touched_at) WHERE refcount = 0;

-- Background jobs (transcodes, waveforms, publishing to a PDS...), run by plyrd.jobs.JobRunner.
-- queued -> running -> done, or back to queued with a later run_after (a retry), or failed once attempts run out.
-- A job found `running` at start-up was interrupted by a crash and is re-queued (or failed when out of attempts).
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),  -- attempts started, including the current one
    max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    progress     REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    phase        TEXT,                                               -- what the job is doing now, for people
    error        TEXT,                                               -- why the last attempt failed
    run_after    REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    updated_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

-- Picking the next job: the queued ones in run_after order (a partial index stays small as done jobs pile up).
CREATE INDEX jobs_next ON jobs(run_after, id) WHERE state = 'queued';
-- Start-up recovery finds interrupted jobs without scanning the history.
CREATE INDEX jobs_running ON jobs(id) WHERE state = 'running';
