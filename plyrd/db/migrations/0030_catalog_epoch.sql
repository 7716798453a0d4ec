-- The catalog's change counter: one number that moves, inside the writing transaction, whenever something a
-- Subsonic album summary, album list or random-songs pick depends on changes (plyrd.subsonic.snapshot keeps those
-- per value of it, so a request reads one number instead of grouping every track). Triggers bump it, so every writer
-- (uploads, imports, the library scanner, moderation, plays, tests' direct SQL) moves it without knowing about it.
--
-- What the summaries read: tracks (any column; play_count through `plays`, below), album_tracks,
-- albums, track_tags (hidden tags, genres), library_files (music folders), and of users the columns that name an
-- artist or hide their repo (visibility: users.repo_status). A migration that rebuilds one of these tables (create,
-- copy, drop, rename) drops its triggers with it and must create them again.

-- Plays are counted apart (`plays`): every play a player reports adds to tracks.play_count, and a busy node would
-- otherwise throw its summaries away with each one. Readers may keep a summary for a little while after plays moved
-- (plyrd.subsonic.snapshot: play counts at most a minute behind), never after `n` moved. An UPDATE of tracks that
-- changes play_count counts as a play only: change play_count in a statement of its own (plyrd.catalog.plays does).
CREATE TABLE catalog_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    n     INTEGER NOT NULL,
    plays INTEGER NOT NULL
) STRICT;

INSERT INTO catalog_epoch(id, n, plays) VALUES (1, 0, 0);

CREATE TRIGGER catalog_epoch_tracks_insert AFTER INSERT ON tracks BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_tracks_update AFTER UPDATE ON tracks WHEN old.play_count IS new.play_count BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_tracks_played AFTER UPDATE OF play_count ON tracks
WHEN old.play_count IS NOT new.play_count BEGIN
    UPDATE catalog_epoch SET plays = plays + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_tracks_delete AFTER DELETE ON tracks BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER catalog_epoch_album_tracks_insert AFTER INSERT ON album_tracks BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_album_tracks_update AFTER UPDATE ON album_tracks BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_album_tracks_delete AFTER DELETE ON album_tracks BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER catalog_epoch_albums_insert AFTER INSERT ON albums BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_albums_update AFTER UPDATE ON albums BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_albums_delete AFTER DELETE ON albums BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER catalog_epoch_track_tags_insert AFTER INSERT ON track_tags BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_track_tags_update AFTER UPDATE ON track_tags BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_track_tags_delete AFTER DELETE ON track_tags BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER catalog_epoch_library_files_insert AFTER INSERT ON library_files BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_library_files_update AFTER UPDATE OF folder_id, rel_path, track_id ON library_files
WHEN old.folder_id IS NOT new.folder_id OR old.rel_path IS NOT new.rel_path OR old.track_id IS NOT new.track_id BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_library_files_delete AFTER DELETE ON library_files BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;

-- users: a new or removed account, a new name, a repo going inactive or coming back (not profile refreshes' other
-- columns, which change often and no summary reads).
CREATE TRIGGER catalog_epoch_users_insert AFTER INSERT ON users BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_users_update AFTER UPDATE OF did, handle, display_name, repo_status ON users
WHEN old.did IS NOT new.did OR old.handle IS NOT new.handle OR old.display_name IS NOT new.display_name
  OR old.repo_status IS NOT new.repo_status BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER catalog_epoch_users_delete AFTER DELETE ON users BEGIN
    UPDATE catalog_epoch SET n = n + 1 WHERE id = 1;
END;
