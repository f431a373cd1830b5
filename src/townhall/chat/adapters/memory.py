"""Presence in process (the embedded default): one gateway's view, on a clock it is given.

The rules are those of the Redis adapter, which the same contract suite checks: a connection
is live while its expiry (last connect or refresh + ttl) is after now; a user is online while
one of theirs is live; the call that removes a user's last connection, live or lapsed, is the
one that says they went offline, so each offline is told once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence


def check_ids(user_id: str, connection_id: str) -> None:
    """The Redis adapter joins the two with a unit separator, so a user id must not hold one."""
    if not user_id or "\x1f" in user_id:
        raise ValueError("user id must be non-empty, without \\x1f")
    if not connection_id:
        raise ValueError("connection id must be non-empty")


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError("ttl must be positive")


class MemoryPresence:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # user id -> connection id -> expiry (clock seconds)
        self._users: dict[str, dict[str, float]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("presence is closed")

    async def connect(self, user_id: str, connection_id: str, ttl: float) -> bool:
        self._check_open()
        check_ids(user_id, connection_id)
        check_ttl(ttl)
        now = self.clock()
        connections = self._users.setdefault(user_id, {})
        # Lapsed connections go silently: the user is told online again instead of offline.
        for lapsed in [c for c, expiry in connections.items() if expiry <= now]:
            del connections[lapsed]
        was_offline = not connections
        connections[connection_id] = now + ttl
        return was_offline

    async def refresh(self, connections: Sequence[tuple[str, str]], ttl: float) -> None:
        """Only live connections are extended: one disconnected, or lapsed, stays gone (its
        socket connects again to come back)."""
        self._check_open()
        check_ttl(ttl)
        for user_id, connection_id in connections:
            check_ids(user_id, connection_id)
        now = self.clock()
        for user_id, connection_id in connections:
            known = self._users.get(user_id, {})
            if known.get(connection_id, now) > now:
                known[connection_id] = now + ttl

    async def disconnect(self, user_id: str, connection_id: str) -> bool:
        self._check_open()
        check_ids(user_id, connection_id)
        now = self.clock()
        connections = self._users.get(user_id)
        if connections is None or connections.pop(connection_id, None) is None:
            return False  # forgotten already: whoever forgot it told the user's status
        if any(expiry > now for expiry in connections.values()):
            return False
        # None live left: this call tells the offline, so the lapsed ones go with it.
        del self._users[user_id]
        return True

    async def online(self, user_ids: Collection[str]) -> set[str]:
        self._check_open()
        now = self.clock()
        return {
            user_id
            for user_id in user_ids
            if any(expiry > now for expiry in self._users.get(user_id, {}).values())
        }

    async def expired(self) -> list[str]:
        self._check_open()
        now = self.clock()
        offline = []
        for user_id, connections in list(self._users.items()):
            lapsed = [c for c, expiry in connections.items() if expiry <= now]
            if not lapsed:
                continue
            for connection_id in lapsed:
                del connections[connection_id]
            if not connections:
                del self._users[user_id]
                offline.append(user_id)
        return offline

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
