"""Ingest: following the ATProto network live (a relay's or PDS's firehose, or Jetstream), one event handler behind
both transports (plyrd.network.events)."""
