"""plyrd's own copies of the lexicons it writes, one `<nsid>.json` per lexicon, loaded by plyrd.atproto.lexicon.

Ids, fields, types and limits follow the published schemas (plyr.fm's `fm.plyr.*`, teal.fm's current `fm.teal.*`
shapes, the atproto `com.atproto.*` defs they reference); the descriptions are plyrd's. Never edit a field here
without the upstream schema changing first: other apps validate what plyrd writes against theirs.
"""
