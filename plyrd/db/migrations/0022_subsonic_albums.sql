-- Subsonic's albums (plyrd.subsonic.catalog `members`) group every track the caller may see by album, then order
-- and page the groups. A track row holds its waveform peaks (several KB) before status, unlisted, source,
-- created_at and play_count, so reading those from the table walks each row's overflow pages: 10,000 tracks cost
-- 25-50 ms before any grouping. This index carries every column that pass reads (the artist and album text that
-- name a track's album, the file tags a library track's artist comes from, visibility, date and plays), so it reads
-- the index alone: all albums by scanning it (`INDEXED BY tracks_albums`), an artist's by searching it.
CREATE INDEX tracks_albums ON tracks(artist_did, album, file_tags, source, status, unlisted, created_at, play_count);
