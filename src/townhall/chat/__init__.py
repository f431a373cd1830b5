"""Real-time chat (issue 22); so far only its consistent-hash ring (`ring.py`)."""
