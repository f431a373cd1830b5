"""The feed asks identity who users are, through its facade (a synchronous, read-only call)."""

from __future__ import annotations

from collections.abc import Collection

from townhall.identity import IdentityFacade


class IdentityProfiles:
    def __init__(self, identity: IdentityFacade) -> None:
        self._identity = identity

    async def profiles(self, user_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        if not user_ids:
            return {}
        found = await self._identity.contacts(user_ids)
        return {user_id: (c.username, c.display_name) for user_id, c in found.items()}
