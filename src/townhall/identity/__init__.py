"""Identity: users, passwords, tokens. Its facade is how other modules look users up."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from townhall.identity.adapters.argon2 import Argon2PasswordHasher
from townhall.identity.adapters.outbox import OutboxIdentityEvents
from townhall.identity.adapters.sql import SqlRefreshTokenRepository, SqlUserRepository
from townhall.identity.domain import User
from townhall.identity.events import TOPIC, UserRegistered
from townhall.identity.http import routers
from townhall.identity.service import IdentityService
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["TOPIC", "IdentityFacade", "UserContact", "UserRegistered", "module"]


@dataclass(frozen=True)
class UserContact:
    """What other modules may know of a user: who, and how to reach them."""

    id: str
    username: str
    email: str | None
    phone: str | None
    display_name: str | None
    time_zone: str
    locale: str
    is_admin: bool


class IdentityFacade:
    """The synchronous calls other modules may make into identity (read-only)."""

    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def contact(self, user_id: str) -> UserContact:
        """Raises `townhall.platform.errors.Invalid` (field `user_id`) for an unknown user."""
        return self._contact(await self._service.get_user(user_id))

    async def contacts(self, user_ids: Collection[str]) -> dict[str, UserContact]:
        """The contact of each of `user_ids` that names a user, by id, in one query; an
        unknown id is simply absent."""
        users = await self._service.get_users(sorted(set(user_ids)))
        return {user.id: self._contact(user) for user in users}

    async def exists(self, user_id: str) -> bool:
        """Whether `user_id` names a user (the edge asks, to refuse a token whose user is
        gone)."""
        return bool(await self._service.get_users([user_id]))

    async def by_username(self, username: str) -> UserContact | None:
        user = await self._service.find_by_username(username)
        return self._contact(user) if user else None

    async def create_admin(self, username: str, password: str) -> UserContact:
        return self._contact(await self._service.create_admin(username, password))

    def _contact(self, user: User) -> UserContact:
        return UserContact(
            id=user.id,
            username=user.username,
            email=user.email,
            phone=user.phone,
            display_name=user.display_name,
            time_zone=user.time_zone,
            locale=user.locale,
            is_admin=self._service.is_admin(user),
        )


def _install(platform: Platform) -> Installed:
    settings = platform.settings
    service = IdentityService(
        platform.database,
        SqlUserRepository(),
        SqlRefreshTokenRepository(),
        Argon2PasswordHasher(),
        platform.tokens,
        platform.clock,
        OutboxIdentityEvents(),
        admins=settings.admin_usernames,
        refresh_ttl=settings.refresh_token_ttl,
    )
    return Installed(routers=routers(service), facade=IdentityFacade(service))


module = ModuleSpec(
    name="identity", install=_install, migrations=Path(__file__).parent / "migrations"
)
