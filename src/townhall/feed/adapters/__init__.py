"""The feed's adapters: SQL stores, timelines (Redis, in process), identity, outbox."""
