"""The music folder: files the node's admins already own, scanned in place into library tracks.

Library tracks are tracks (plyrd.catalog.tracks) with `source = 'library'`, owned by the node's library
(`LIBRARY_DID`), private to the node's signed-in people, never published; see
plyrd/db/migrations/0021_library.sql for how they are stored.
"""

LIBRARY_DID = "did:plyrd:library"
