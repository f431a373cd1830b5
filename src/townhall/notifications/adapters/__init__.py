"""Notifications adapters: providers, sinks and storage."""
