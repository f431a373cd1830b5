"""Identity's adapters: SQL storage and argon2 hashing."""
