"""Identity's use cases: register, sign in, rotate and revoke refresh tokens, edit a profile."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from townhall.identity.domain import (
    BadCredentials,
    BadRefreshToken,
    RefreshToken,
    RefreshTokenReused,
    User,
    UserNotFound,
    check_password,
    check_time_zone,
    check_username,
)
from townhall.identity.events import UserRegistered
from townhall.identity.ports import (
    IdentityEvents,
    PasswordHasher,
    RefreshTokenRepository,
    UserRepository,
)
from townhall.platform.auth import Principal, TokenCodec
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id_str
from townhall.platform.transaction import Transaction, Transactions


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class Registration:
    username: str
    password: str
    email: str | None = None
    phone: str | None = None
    display_name: str | None = None
    time_zone: str = "UTC"
    locale: str = "en"


def _hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(
        self,
        database: Transactions,
        users: UserRepository,
        refresh_tokens: RefreshTokenRepository,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        clock: Clock,
        events: IdentityEvents,
        *,
        admins: frozenset[str] = frozenset(),
        refresh_ttl: int = 30 * 24 * 3600,
    ) -> None:
        self._db = database
        self._users = users
        self._refresh = refresh_tokens
        self._hasher = hasher
        self._tokens = tokens
        self._clock = clock
        self._events = events
        self._admins = admins
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._dummy_hash: str | None = None

    async def register(self, registration: Registration, *, is_admin: bool = False) -> User:
        check_username(registration.username)
        check_password(registration.password)
        check_time_zone(registration.time_zone)
        password_hash = await self._hasher.hash(registration.password)
        user = User(
            id=new_id_str(),
            username=registration.username,
            password_hash=password_hash,
            created_at=self._clock.now(),
            email=registration.email,
            phone=registration.phone,
            display_name=registration.display_name,
            time_zone=registration.time_zone,
            locale=registration.locale,
            is_admin=is_admin,
        )
        async with self._db.transaction() as conn:
            await self._users.add(conn, user)
            await self._events.user_registered(
                conn,
                UserRegistered(
                    user_id=user.id,
                    username=user.username,
                    email=user.email,
                    phone=user.phone,
                    locale=user.locale,
                    occurred_at=user.created_at,
                ),
            )
        return user

    async def sign_in(self, username: str, password: str) -> TokenPair:
        """Tokens for good credentials; `BadCredentials` otherwise, in about the same time
        whether or not the user exists (a hash is verified either way)."""
        async with self._db.connect() as conn:
            user = await self._users.by_username(conn, username)
        if user is None:
            await self._hasher.verify(await self._dummy(), password)
            raise BadCredentials("wrong username or password")
        if not await self._hasher.verify(user.password_hash, password):
            raise BadCredentials("wrong username or password")
        return await self._issue(user, family_id=new_id_str())

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Exchange a refresh token for a new pair; a reused one revokes its whole family."""
        now = self._clock.now()
        reused: RefreshTokenReused | None = None
        async with self._db.transaction() as conn:
            token = await self._refresh.get_for_update(conn, _hash_refresh(refresh_token))
            if token is None:
                raise BadRefreshToken("unknown refresh token")
            try:
                token.check_usable(now)
            except RefreshTokenReused as exc:
                await self._refresh.revoke_family(conn, token.family_id, now)
                reused = exc
            else:
                await self._refresh.mark_used(conn, replace(token, used_at=now))
                user = await self._users.get(conn, token.user_id)
                if user is None:
                    raise BadRefreshToken("the user no longer exists")
                return await self._issue(user, token.family_id, conn=conn)
        # Raised after the commit, so the revocation sticks.
        raise reused

    async def sign_out(self, refresh_token: str) -> None:
        """Revoke the token's family: the session ends on every token derived from it."""
        async with self._db.transaction() as conn:
            token = await self._refresh.get_for_update(conn, _hash_refresh(refresh_token))
            if token is None:
                raise BadRefreshToken("unknown refresh token")
            await self._refresh.revoke_family(conn, token.family_id, self._clock.now())

    async def get_user(self, user_id: str) -> User:
        async with self._db.connect() as conn:
            user = await self._users.get(conn, user_id)
        if user is None:
            raise UserNotFound(f"no user {user_id}", field="user_id")
        return user

    async def get_users(self, user_ids: Sequence[str]) -> list[User]:
        """The users of `user_ids` that exist (one query, however many)."""
        async with self._db.connect() as conn:
            return await self._users.get_many(conn, user_ids)

    async def find_by_username(self, username: str) -> User | None:
        async with self._db.connect() as conn:
            return await self._users.by_username(conn, username)

    async def update_profile(self, user_id: str, changes: dict[str, str | None]) -> User:
        async with self._db.transaction() as conn:
            user = await self._users.get(conn, user_id)
            if user is None:
                raise UserNotFound(f"no user {user_id}", field="user_id")
            updated = user.with_profile(changes)
            await self._users.update(conn, updated)
        return updated

    async def create_admin(self, username: str, password: str) -> User:
        """Make `username` an administrator, registering it first if it does not exist."""
        existing = await self.find_by_username(username)
        if existing is None:
            return await self.register(
                Registration(username=username, password=password), is_admin=True
            )
        async with self._db.transaction() as conn:
            promoted = replace(existing, is_admin=True)
            await self._users.update(conn, promoted)
        return promoted

    def is_admin(self, user: User) -> bool:
        return user.is_admin or user.username in self._admins

    async def _issue(
        self, user: User, family_id: str, conn: Transaction | None = None
    ) -> TokenPair:
        principal = Principal(user.id, user.username, self.is_admin(user))
        access = self._tokens.issue(principal)
        refresh = secrets.token_urlsafe(32)
        record = RefreshToken.issue(
            _hash_refresh(refresh), family_id, user.id, self._clock.now(), self._refresh_ttl
        )
        if conn is None:
            async with self._db.transaction() as own:
                await self._refresh.add(own, record)
        else:
            await self._refresh.add(conn, record)
        return TokenPair(access, refresh, self._tokens.access_ttl)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash
