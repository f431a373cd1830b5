"""Identity's repositories on SQLAlchemy Core (SQLite and PostgreSQL).

Each method takes the service's opaque `Transaction` and works on the SQLAlchemy connection
behind it (`connection()` refuses a handle that is not one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from townhall.identity.adapters.tables import refresh_tokens, users
from townhall.identity.domain import RefreshToken, User, UsernameTaken
from townhall.platform.db import connection
from townhall.platform.transaction import Transaction

# Built once: constructing a statement costs more than running a cached one.
USER_BY_ID = users.select().where(users.c.id == bindparam("user_id"))
USER_BY_NAME = users.select().where(users.c.username == bindparam("username"))
USERS_BY_IDS = users.select().where(users.c.id.in_(bindparam("user_ids", expanding=True)))
# PostgreSQL: the ids as one array, so the statement's text (and the prepared statement the
# driver keeps per connection) is the same however many there are; an expanding IN is a new
# statement, prepared again, for every number of ids.
USERS_BY_ID_ARRAY = users.select().where(
    users.c.id == sa.any_(bindparam("user_ids", type_=postgresql.ARRAY(sa.String)))
)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were stored as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        email=row.email,
        phone=row.phone,
        display_name=row.display_name,
        time_zone=row.time_zone,
        locale=row.locale,
        is_admin=row.is_admin,
    )


class SqlUserRepository:
    async def add(self, conn: Transaction, user: User) -> None:
        sql = connection(conn)
        try:
            # A savepoint keeps the caller's transaction usable after a duplicate.
            async with sql.begin_nested():
                await sql.execute(users.insert().values(**_user_values(user)))
        except IntegrityError:
            raise UsernameTaken(
                f"the username {user.username!r} is taken", field="username"
            ) from None

    async def get(self, conn: Transaction, user_id: str) -> User | None:
        row = (await connection(conn).execute(USER_BY_ID, {"user_id": user_id})).first()
        return _user(row) if row else None

    async def get_many(self, conn: Transaction, user_ids: Sequence[str]) -> list[User]:
        """The users of `user_ids` that exist, in no particular order."""
        sql = connection(conn)
        if not user_ids:
            return []
        query = USERS_BY_ID_ARRAY if sql.dialect.name == "postgresql" else USERS_BY_IDS
        rows = await sql.execute(query, {"user_ids": list(user_ids)})
        return [_user(row) for row in rows]

    async def by_username(self, conn: Transaction, username: str) -> User | None:
        row = (await connection(conn).execute(USER_BY_NAME, {"username": username})).first()
        return _user(row) if row else None

    async def update(self, conn: Transaction, user: User) -> None:
        values = _user_values(user)
        del values["id"]
        await connection(conn).execute(users.update().where(users.c.id == user.id).values(**values))


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "password_hash": user.password_hash,
        "email": user.email,
        "phone": user.phone,
        "display_name": user.display_name,
        "time_zone": user.time_zone,
        "locale": user.locale,
        "is_admin": user.is_admin,
        "created_at": user.created_at,
    }


class SqlRefreshTokenRepository:
    async def add(self, conn: Transaction, token: RefreshToken) -> None:
        await connection(conn).execute(
            refresh_tokens.insert().values(
                token_hash=token.token_hash,
                family_id=token.family_id,
                user_id=token.user_id,
                issued_at=token.issued_at,
                expires_at=token.expires_at,
            )
        )

    async def get_for_update(self, conn: Transaction, token_hash: str) -> RefreshToken | None:
        sql = connection(conn)
        query = refresh_tokens.select().where(refresh_tokens.c.token_hash == token_hash)
        if sql.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await sql.execute(query)).first()
        if row is None:
            return None
        return RefreshToken(
            token_hash=row.token_hash,
            family_id=row.family_id,
            user_id=row.user_id,
            issued_at=_aware(row.issued_at),  # type: ignore[arg-type]
            expires_at=_aware(row.expires_at),  # type: ignore[arg-type]
            used_at=_aware(row.used_at),
            revoked_at=_aware(row.revoked_at),
        )

    async def mark_used(self, conn: Transaction, token: RefreshToken) -> None:
        await connection(conn).execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.token_hash == token.token_hash)
            .values(used_at=token.used_at)
        )

    async def revoke_family(self, conn: Transaction, family_id: str, at: datetime) -> None:
        await connection(conn).execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
