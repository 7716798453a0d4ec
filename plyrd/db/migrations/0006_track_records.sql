-- A track's life as an ATProto record, and what the catalog issue adds to tracks.

ALTER TABLE tracks ADD COLUMN rkey TEXT;                  -- the fm.plyr.track record key (a TID)
ALTER TABLE tracks ADD COLUMN record_uri TEXT;            -- at://did/fm.plyr.track/rkey
ALTER TABLE tracks ADD COLUMN record_cid TEXT;            -- CID of the latest version plyrd wrote (computed locally)
ALTER TABLE tracks ADD COLUMN unlisted INTEGER NOT NULL DEFAULT 0;     -- kept out of feeds and discovery
ALTER TABLE tracks ADD COLUMN features TEXT NOT NULL DEFAULT '[]';     -- featured artists: [{did, handle}]
ALTER TABLE tracks ADD COLUMN self_labels TEXT NOT NULL DEFAULT '[]';  -- the artist's own content labels
ALTER TABLE tracks ADD COLUMN play_count INTEGER NOT NULL DEFAULT 0;   -- counted plays (events live in play_events)

CREATE UNIQUE INDEX tracks_record ON tracks(artist_did, rkey) WHERE rkey IS NOT NULL;
CREATE INDEX tracks_record_uri ON tracks(record_uri) WHERE record_uri IS NOT NULL;
CREATE INDEX tracks_feed ON tracks(created_at DESC, id DESC) WHERE unlisted = 0 AND status = 'ready';

-- Tags as rows, so "tracks with this tag" is an index lookup, not a scan of every track's JSON.
CREATE TABLE track_tags (
    tag      TEXT NOT NULL,
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, track_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX track_tags_track ON track_tags(track_id);

INSERT INTO track_tags(tag, track_id) SELECT DISTINCT j.value, t.id FROM tracks t, json_each(t.tags) j;
