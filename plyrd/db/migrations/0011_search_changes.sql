-- The change log that keeps the search index (search.db, a separate file opened only through apsw) in step with the
-- catalog. Triggers write a row in the same transaction as every change that alters what search shows, so a
-- committed change always has its row and a rolled-back one never does, whichever code path made it (the API,
-- reconciliation with a PDS, account deletion). The indexer applies rows in `seq` order, records the last one it
-- applied inside search.db and deletes the rows it has applied. A row says only what changed; the indexer reads the
-- current state, so applying a row twice is harmless.

CREATE TABLE search_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, so a pruned log still shows a gap
    entity TEXT NOT NULL CHECK (entity IN ('track', 'artist', 'album', 'tag', 'playlist')),
    key    TEXT NOT NULL                       -- tracks.id, users.did, albums.id, the tag, playlists.id
) STRICT;

-- Users: their name and handle show in their tracks', albums' and playlists' results.
CREATE TRIGGER search_users_insert AFTER INSERT ON users BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('artist', new.did);
END;
CREATE TRIGGER search_users_update AFTER UPDATE OF did, handle, display_name ON users
WHEN old.did IS NOT new.did OR old.handle IS NOT new.handle OR old.display_name IS NOT new.display_name BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('artist', old.did);
    INSERT INTO search_changes(entity, key) SELECT 'artist', new.did WHERE new.did IS NOT old.did;
END;
CREATE TRIGGER search_users_delete AFTER DELETE ON users BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('artist', old.did);
END;

-- Tracks: only columns search reads (a play, a new waveform or a record CID is no change to it).
CREATE TRIGGER search_tracks_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(new.id AS TEXT));
END;
CREATE TRIGGER search_tracks_update AFTER UPDATE OF id, artist_did, title, album, tags, features, unlisted, status
ON tracks
WHEN old.id IS NOT new.id OR old.artist_did IS NOT new.artist_did OR old.title IS NOT new.title
  OR old.album IS NOT new.album OR old.tags IS NOT new.tags OR old.features IS NOT new.features
  OR old.unlisted IS NOT new.unlisted OR old.status IS NOT new.status BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(old.id AS TEXT));
    INSERT INTO search_changes(entity, key) SELECT 'track', CAST(new.id AS TEXT) WHERE new.id IS NOT old.id;
END;
CREATE TRIGGER search_tracks_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('track', CAST(old.id AS TEXT));
END;

-- Tags as rows: a tag's result exists while a visible track carries it (foreign-key cascades fire these too).
CREATE TRIGGER search_track_tags_insert AFTER INSERT ON track_tags BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('tag', new.tag);
END;
CREATE TRIGGER search_track_tags_delete AFTER DELETE ON track_tags BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('tag', old.tag);
END;

-- Albums, and their membership: an album is found once it holds a visible track, and a track is found by its album.
CREATE TRIGGER search_albums_insert AFTER INSERT ON albums BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('album', new.id);
END;
CREATE TRIGGER search_albums_update AFTER UPDATE OF id, artist_did, title ON albums
WHEN old.id IS NOT new.id OR old.artist_did IS NOT new.artist_did OR old.title IS NOT new.title BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('album', old.id);
    INSERT INTO search_changes(entity, key) SELECT 'album', new.id WHERE new.id IS NOT old.id;
END;
CREATE TRIGGER search_albums_delete AFTER DELETE ON albums BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('album', old.id);
END;
CREATE TRIGGER search_album_tracks_insert AFTER INSERT ON album_tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('album', new.album_id), ('track', CAST(new.track_id AS TEXT));
END;
CREATE TRIGGER search_album_tracks_delete AFTER DELETE ON album_tracks BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('album', old.album_id), ('track', CAST(old.track_id AS TEXT));
END;

-- Playlists: a private one is found only by its owner, so going private or public is a change too.
CREATE TRIGGER search_playlists_insert AFTER INSERT ON playlists BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('playlist', new.id);
END;
CREATE TRIGGER search_playlists_update AFTER UPDATE OF id, owner_did, name, is_private ON playlists
WHEN old.id IS NOT new.id OR old.owner_did IS NOT new.owner_did OR old.name IS NOT new.name
  OR old.is_private IS NOT new.is_private BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('playlist', old.id);
    INSERT INTO search_changes(entity, key) SELECT 'playlist', new.id WHERE new.id IS NOT old.id;
END;
CREATE TRIGGER search_playlists_delete AFTER DELETE ON playlists BEGIN
    INSERT INTO search_changes(entity, key) VALUES ('playlist', old.id);
END;
