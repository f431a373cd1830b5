"""Chat's adapters: presence in process or in Redis."""
