"""The orders module's adapters: the event store's orders, the SQL saga store and timeline,
and the outbox its messages leave through. Only the module's wiring imports them."""
