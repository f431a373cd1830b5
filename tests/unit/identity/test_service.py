"""Identity's use cases on in-memory ports: the service needs nothing but its ports.

The fakes keep each write on the transaction handle until it commits, so a test sees what a
use case commits, and what it rolls back, as a database would keep it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime

import pytest

from townhall.identity.domain import (
    BadRefreshToken,
    RefreshToken,
    RefreshTokenReused,
    User,
    UsernameTaken,
)
from townhall.identity.events import UserRegistered
from townhall.identity.service import IdentityService, Registration
from townhall.platform.auth import TokenCodec
from townhall.platform.clock import FrozenClock


class Handle:
    """The opaque transaction: the writes waiting for its commit."""

    def __init__(self) -> None:
        self.writes: list[Callable[[], None]] = []


class MemoryTransactions:
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Handle]:
        handle = Handle()
        yield handle  # an exception leaves the writes unapplied: rolled back
        for write in handle.writes:
            write()

    connect = transaction


class MemoryUsers:
    def __init__(self) -> None:
        self.rows: dict[str, User] = {}

    async def add(self, conn: Handle, user: User) -> None:
        if await self.by_username(conn, user.username) is not None:
            raise UsernameTaken(f"the username {user.username!r} is taken", field="username")
        conn.writes.append(lambda: self.rows.__setitem__(user.id, user))

    async def get(self, conn: Handle, user_id: str) -> User | None:
        return self.rows.get(user_id)

    async def get_many(self, conn: Handle, user_ids: Sequence[str]) -> list[User]:
        return [self.rows[user_id] for user_id in user_ids if user_id in self.rows]

    async def by_username(self, conn: Handle, username: str) -> User | None:
        return next((user for user in self.rows.values() if user.username == username), None)

    async def update(self, conn: Handle, user: User) -> None:
        conn.writes.append(lambda: self.rows.__setitem__(user.id, user))


class MemoryRefreshTokens:
    def __init__(self) -> None:
        self.rows: dict[str, RefreshToken] = {}

    async def add(self, conn: Handle, token: RefreshToken) -> None:
        conn.writes.append(lambda: self.rows.__setitem__(token.token_hash, token))

    async def get_for_update(self, conn: Handle, token_hash: str) -> RefreshToken | None:
        return self.rows.get(token_hash)

    async def mark_used(self, conn: Handle, token: RefreshToken) -> None:
        conn.writes.append(lambda: self.rows.__setitem__(token.token_hash, token))

    async def revoke_family(self, conn: Handle, family_id: str, at: datetime) -> None:
        def revoke() -> None:
            for key, token in self.rows.items():
                if token.family_id == family_id and token.revoked_at is None:
                    self.rows[key] = replace(token, revoked_at=at)

        conn.writes.append(revoke)


class PlainHasher:
    async def hash(self, password: str) -> str:
        return f"plain:{password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == f"plain:{password}"


class MemoryEvents:
    def __init__(self, *, fail: bool = False) -> None:
        self.published: list[UserRegistered] = []
        self.fail = fail

    async def user_registered(self, conn: Handle, event: UserRegistered) -> None:
        if self.fail:
            raise ConnectionError("the outbox is unreachable")
        conn.writes.append(lambda: self.published.append(event))


def service(users: MemoryUsers, events: MemoryEvents) -> IdentityService:
    clock = FrozenClock()
    return IdentityService(
        MemoryTransactions(),
        users,
        MemoryRefreshTokens(),
        PlainHasher(),
        TokenCodec("s" * 32, clock),
        clock,
        events,
    )


async def test_a_registration_commits_its_user_and_its_event_together_or_not_at_all():
    users, events = MemoryUsers(), MemoryEvents()
    user = await service(users, events).register(Registration("ada", "correct horse battery"))
    assert users.rows == {user.id: user}
    assert [(event.user_id, event.username) for event in events.published] == [(user.id, "ada")]

    failing = MemoryEvents(fail=True)
    with pytest.raises(ConnectionError):
        await service(users, failing).register(Registration("bob", "correct horse battery"))
    assert [user.username for user in users.rows.values()] == ["ada"]
    assert failing.published == []


async def test_a_reused_refresh_token_revokes_its_family_even_though_the_call_fails():
    identity = service(MemoryUsers(), MemoryEvents())
    await identity.register(Registration("ada", "correct horse battery"))
    first = await identity.sign_in("ada", "correct horse battery")
    second = await identity.refresh(first.refresh_token)

    with pytest.raises(RefreshTokenReused):
        await identity.refresh(first.refresh_token)
    with pytest.raises(BadRefreshToken, match="revoked"):
        await identity.refresh(second.refresh_token)
