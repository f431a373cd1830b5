"""`DirectoryRecipients`: the `Recipients` port over a `Directory` (identity's facade) that asks
for many recipients at once, and optionally remembers them for a while."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from townhall.notifications.ports import Directory, Recipient
from townhall.platform.batching import Batcher
from townhall.platform.clock import Clock
from townhall.platform.ttl_cache import TtlCache

BATCH_SIZE = 100  # at most this many users looked up in one call of the directory
# Accepting a request needs of its recipient only that they exist and their locale; the
# worker reads where to reach them when it sends. Users are never deleted, so a remembered
# recipient can be stale only in its locale, for at most this long after a change.
KNOWN_RECIPIENTS_TTL = timedelta(seconds=30)
KNOWN_RECIPIENTS_MAX = 10_000


class DirectoryRecipients:
    """Concurrent `find`s go to the directory as one `contacts` call. With a `clock`, found
    recipients are remembered for `KNOWN_RECIPIENTS_TTL` (unknown ones are not)."""

    def __init__(self, directory: Directory, *, remember_with: Clock | None = None) -> None:
        self._directory = directory
        self._lookups = Batcher(self._lookup, max_size=BATCH_SIZE)
        self._known: TtlCache[str, Recipient] | None = None
        if remember_with is not None:
            self._known = TtlCache(
                remember_with, ttl=KNOWN_RECIPIENTS_TTL, max_entries=KNOWN_RECIPIENTS_MAX
            )

    async def find(self, user_id: str) -> Recipient | None:
        if self._known is None:
            return await self._lookups.submit(user_id)
        recipient = self._known.get(user_id)
        if recipient is None:
            recipient = await self._lookups.submit(user_id)
            if recipient is not None:
                self._known.put(user_id, recipient)
        return recipient

    async def _lookup(self, user_ids: Sequence[str]) -> list[Recipient | None]:
        found = await self._directory.contacts(set(user_ids))
        return [found.get(user_id) for user_id in user_ids]
