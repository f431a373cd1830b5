"""Townhall: an open, self-hostable backend for community platforms."""

__version__ = "0.1.0"
