"""The catalog's domain logic: tracks, uploads and (later) albums, lists, likes, comments, plays. No HTTP here."""
