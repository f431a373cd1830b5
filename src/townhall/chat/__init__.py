"""Real-time chat (issue 22): rooms, messages with a per-room gap-free seq, stateless WebSocket
gateways relayed by the pub/sub port, presence, and rooms placed on message-store shards by a
consistent-hash ring (`ring.py`). Being built; see README.md once it lands."""
