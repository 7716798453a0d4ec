"""A Subsonic-compatible API (plyr.fm's `/rest`), without HTTP: credentials, the response envelope, and the mapping
of plyrd's catalog onto Subsonic's artists, albums, songs and playlists. plyrd.web.subsonic is the thin blueprint.

Mapping (ids are stable strings, so clients can cache them):
- artist `ar-<did>`: a user with at least one listed, ready track;
- album `al-<uuid>`: a plyrd album; a track outside any album belongs to its artist's "Singles" pseudo-album
  `al-singles-<did>`, so ID3-browsing clients (artist -> albums -> songs) reach every track;
- song `tr-<id>`, playlist `pl-<uuid>`; cover art ids are the ids of what carries the artwork.
"""
