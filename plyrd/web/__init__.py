"""HTTP: blueprints, request middleware and the one place errors become responses."""
