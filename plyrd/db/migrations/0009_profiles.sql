-- Artist profiles: the bio of fm.plyr.actor.profile, mirrored locally so pages do not ask the PDS.
ALTER TABLE users ADD COLUMN bio TEXT;
ALTER TABLE users ADD COLUMN profile_created_at REAL;  -- the record's createdAt, kept across rewrites
