"""Alembic's environment for every component's migrations (one branch per component)."""
