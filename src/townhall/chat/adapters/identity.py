"""Chat asks identity about users through its facade (a synchronous, read-only call)."""

from __future__ import annotations

from collections.abc import Collection

from townhall.identity import IdentityFacade


class IdentityUsers:
    def __init__(self, identity: IdentityFacade) -> None:
        self._identity = identity

    async def existing(self, user_ids: Collection[str]) -> set[str]:
        return set(await self._identity.contacts(user_ids))

    async def by_usernames(self, usernames: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in usernames:
            contact = await self._identity.by_username(name)
            if contact is not None:
                found[name] = contact.id
        return found

    async def username(self, user_id: str) -> str:
        return (await self._identity.contact(user_id)).username
