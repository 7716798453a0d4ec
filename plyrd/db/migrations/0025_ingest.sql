-- Ingest (plyrd.ingest): where the node is in each stream it follows, so a restart resumes there, and what the
-- stream has brought so far (for `plyrd status` and the admin pages). One row per source: the configured URL of a
-- firehose (com.atproto.sync.subscribeRepos) or a Jetstream. The cursor advances only after the event handler
-- has applied everything up to it (at-least-once: an event may be handled twice after a crash, never skipped).
CREATE TABLE ingest_sources (
    source          TEXT PRIMARY KEY,                  -- the URL as configured, without cursor or filters
    transport       TEXT NOT NULL CHECK (transport IN ('firehose', 'jetstream')),
    cursor          INTEGER,                           -- firehose seq or Jetstream time_us; NULL: live tail
    seen            INTEGER NOT NULL DEFAULT 0,        -- messages read
    kept            INTEGER NOT NULL DEFAULT 0,        -- events handed to the handler (wanted collections, accounts)
    malformed       INTEGER NOT NULL DEFAULT 0,        -- messages that were not what the wire format says: skipped
    skipped         INTEGER NOT NULL DEFAULT 0,        -- messages of types ingest does not use (#sync, #info...)
    last_event_at   REAL,                              -- the newest handled message's own time (unix seconds)
    last_error      TEXT,                              -- why the last connection ended, if it failed
    last_error_at   REAL,
    updated_at      REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT, WITHOUT ROWID;
