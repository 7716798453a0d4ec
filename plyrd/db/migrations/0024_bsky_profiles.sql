-- Bluesky profiles (plyrd.network.bsky_profiles): a person's app.bsky.actor.profile, read from their own PDS on
-- sign-in, when a remote artist is first seen and daily, fills display_name, bio and avatar_url where the person
-- set nothing on the node. The bsky_* columns remember what Bluesky gave last, which is how a value that came from
-- Bluesky (and may be replaced by a newer one) is told from one the person chose (which is never overwritten).
--
-- avatar_sha: the node's own copy of the Bluesky avatar (a small WebP re-encoded from the verified blob), served
-- at /avatars/<sha> and referenced (one blobs.refcount) while the row holds it. NULL: no Bluesky avatar held.
ALTER TABLE users ADD COLUMN avatar_sha TEXT REFERENCES blobs(sha256);
ALTER TABLE users ADD COLUMN bsky_display_name TEXT;    -- the displayName last applied from Bluesky
ALTER TABLE users ADD COLUMN bsky_description TEXT;     -- the description last applied from Bluesky
ALTER TABLE users ADD COLUMN bsky_avatar_cid TEXT;      -- the avatar blob CID avatar_sha was made from
ALTER TABLE users ADD COLUMN bsky_profile_cid TEXT;     -- the record's CID when it was last applied
ALTER TABLE users ADD COLUMN profile_refreshed_at REAL; -- last read of the profile (found or not); NULL: never
CREATE INDEX users_avatar ON users(avatar_sha) WHERE avatar_sha IS NOT NULL;
CREATE INDEX users_profile_refresh ON users(coalesce(profile_refreshed_at, 0));
