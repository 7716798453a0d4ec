-- Sign-in: sessions (browser and developer tokens) and OAuth authorizations in flight.
-- Credentials are sealed with AES-256-GCM under secrets.token_key; session tokens are stored only as hashes.

CREATE TABLE auth_sessions (
    id_hash      TEXT PRIMARY KEY,             -- sha256 of the opaque token the client holds
    did          TEXT NOT NULL,
    handle       TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('browser', 'developer')),
    auth_type    TEXT NOT NULL CHECK (auth_type IN ('oauth', 'password')),
    name         TEXT,                         -- developer tokens: the name their owner gave
    prefix       TEXT,                         -- developer tokens: the token's first characters, to list and revoke
    scope        TEXT NOT NULL DEFAULT '',     -- what the grant covers (OAuth), for scope checks without unsealing
    credentials  BLOB NOT NULL,                -- sealed JSON: OAuth TokenSet (with the DPoP key) or app-password JWTs
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_used_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    expires_at   REAL                          -- NULL: a developer token without expiry
) STRICT;

CREATE INDEX auth_sessions_did ON auth_sessions(did, kind);
CREATE UNIQUE INDEX auth_sessions_prefix ON auth_sessions(prefix) WHERE prefix IS NOT NULL;
CREATE INDEX auth_sessions_expiry ON auth_sessions(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE oauth_pending (
    state        TEXT PRIMARY KEY,             -- the OAuth state parameter; consumed once
    purpose      TEXT NOT NULL CHECK (purpose IN ('login', 'developer_token', 'scope_upgrade')),
    session_hash TEXT,                         -- scope upgrade and developer tokens: the browser session asking
    params       TEXT NOT NULL DEFAULT '{}',   -- purpose details: token name and lifetime, where to return
    sealed       BLOB NOT NULL,                -- sealed PendingAuth: PKCE verifier and DPoP key
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    expires_at   REAL NOT NULL
) STRICT;
