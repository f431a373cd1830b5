"""The carriers: an in-memory simulator (the default)."""
