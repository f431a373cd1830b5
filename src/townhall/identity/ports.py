"""What the identity service needs from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from townhall.identity.domain import RefreshToken, User
from townhall.identity.events import UserRegistered
from townhall.platform.transaction import Transaction


class UserRepository(Protocol):
    async def add(self, conn: Transaction, user: User) -> None:
        """Insert; raises `UsernameTaken` when the name is in use."""

    async def get(self, conn: Transaction, user_id: str) -> User | None: ...

    async def get_many(self, conn: Transaction, user_ids: Sequence[str]) -> list[User]:
        """The users of `user_ids` that exist, in no particular order."""

    async def by_username(self, conn: Transaction, username: str) -> User | None: ...

    async def update(self, conn: Transaction, user: User) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(self, conn: Transaction, token: RefreshToken) -> None: ...

    async def get_for_update(self, conn: Transaction, token_hash: str) -> RefreshToken | None:
        """The token row, locked until the transaction ends (so a token is exchanged once)."""

    async def mark_used(self, conn: Transaction, token: RefreshToken) -> None: ...

    async def revoke_family(self, conn: Transaction, family_id: str, at: datetime) -> None: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...


class IdentityEvents(Protocol):
    """Where identity's integration events go; written in the state change's transaction."""

    async def user_registered(self, conn: Transaction, event: UserRegistered) -> None: ...
