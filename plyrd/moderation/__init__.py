"""Moderation on a shared node: listeners' reports (reports.py), admins' actions with their audit log (actions.py),
suspended uploaders (suspension.py) and the node's labeler (labels.py). A takedown works through the one visibility
rule (plyrd.catalog.tracks `visible`), never through another WHERE clause; the owner's PDS records are left alone."""

# The node itself, as the actor of what it flags on its own (a duplicate recording) and in the audit log.
NODE_ACTOR = "did:plyrd:node"
