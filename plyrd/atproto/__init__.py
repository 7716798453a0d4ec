"""ATProto: identity, OAuth, XRPC sessions, records, outbox and ingest."""
