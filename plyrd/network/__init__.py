"""The node in the network: other repos' tracks by reference (remote tracks), Bluesky profiles, follows, sharing,
and what ingest hands over."""
