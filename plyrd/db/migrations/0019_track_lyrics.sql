-- A track's lyrics: taken from the file's lyrics tag at upload (ID3 USLT, MP4 ©lyr, Vorbis LYRICS), editable by
-- the artist (PATCH /tracks/{id}), kept when the track's audio is replaced. Plain text, or LRC when timed. Not in
-- the fm.plyr.track record (its lexicon has no lyrics field): the node's own, served by Subsonic's getLyrics.
ALTER TABLE tracks ADD COLUMN lyrics TEXT;
