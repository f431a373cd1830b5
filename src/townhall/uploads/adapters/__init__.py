"""Adapters of uploads' ports."""
