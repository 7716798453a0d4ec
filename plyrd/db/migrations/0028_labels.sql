-- The node's labeler (plyrd.moderation.labels): every label it signed, in the order it signed them. `seq` is the
-- com.atproto.label.subscribeLabels sequence (AUTOINCREMENT: a number is never handed out twice, even if the newest
-- rows were ever removed, so a subscriber's cursor always means the same label). Append-only: a restore is a new
-- negation label (neg = 1), never an edit, because subscribers may already hold the label it cancels.
CREATE TABLE labels (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    src         TEXT NOT NULL,                      -- the labeler's DID (did:web of the node's public_url)
    uri         TEXT NOT NULL,                      -- the AT URI labelled
    cid         TEXT,                               -- the record version labelled, when known
    val         TEXT NOT NULL CHECK (length(val) BETWEEN 1 AND 128),
    neg         INTEGER NOT NULL DEFAULT 0 CHECK (neg IN (0, 1)),
    cts         TEXT NOT NULL,                      -- exactly as signed (ISO 8601, milliseconds, Z)
    exp         TEXT,                               -- as signed; NULL: never expires
    sig         BLOB NOT NULL CHECK (length(sig) = 64), -- secp256k1 r||s (low-S) over the label's DAG-CBOR
    created_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) STRICT;

-- queryLabels: a full URI or a prefix (`at://did:plc:x/*`) is a range on uri; seq orders the page and the cursor.
CREATE INDEX labels_uri ON labels(uri, seq);
CREATE INDEX labels_src ON labels(src, seq);
