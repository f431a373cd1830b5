"""Adapters of the EventStore port."""
