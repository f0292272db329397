"""pytest plugin (placeholder during bootstrap)."""
