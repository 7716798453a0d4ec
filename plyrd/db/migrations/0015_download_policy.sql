-- Who may download a track's original: GET /audio/{id}/download, album zips and Subsonic `download` obey it;
-- streaming (/audio/{id}, Subsonic `stream`) never does. Three tiers, the same values in both columns:
--   'anyone'       anybody, signed in or not (plyr.fm's `open`, and `ask`, which never refuses)
--   'signed_in'    any signed-in listener; anonymous visitors get 401
--   'artist_only'  nobody but the artist (plyr.fm's `off`); others get 403
-- The artist may always download their own tracks. plyrd.catalog.downloads holds the rule and the input aliases.

-- The artist's own default for their tracks: the `download_policy` of GET/POST /preferences/.
ALTER TABLE users ADD COLUMN download_policy TEXT NOT NULL DEFAULT 'anyone'
    CHECK (download_policy IN ('anyone', 'signed_in', 'artist_only'));

-- A track's own setting (the upload and PATCH /tracks/{id} field `download_policy`); NULL follows the artist's.
-- The policy in force is coalesce(tracks.download_policy, users.download_policy).
ALTER TABLE tracks ADD COLUMN download_policy TEXT
    CHECK (download_policy IS NULL OR download_policy IN ('anyone', 'signed_in', 'artist_only'));
