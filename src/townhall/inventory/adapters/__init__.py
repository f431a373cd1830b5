"""Inventory's adapters: its tables on SQLAlchemy Core, and its answers through the outbox."""
