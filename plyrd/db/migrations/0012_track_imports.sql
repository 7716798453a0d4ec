-- Imports: an upload can adopt an fm.plyr.track record the artist made with another client (plyr.fm, another
-- plyrd) instead of publishing a new one (plyrd.catalog.track_import). The upload remembers which record, so an
-- import that fails is not retried for the same version of the record, and a failed import never deletes that
-- record from the artist's PDS (it was never this node's to delete).

ALTER TABLE uploads ADD COLUMN record_uri TEXT;  -- the at://did/fm.plyr.track/rkey it adopts; NULL: a form upload
ALTER TABLE uploads ADD COLUMN record_cid TEXT;  -- the version of that record the import read

CREATE INDEX uploads_record ON uploads(did, record_uri) WHERE record_uri IS NOT NULL;
