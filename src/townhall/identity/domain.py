"""Identity's domain: users, the rules for their names and passwords, refresh-token families."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from townhall.platform import time_zones
from townhall.platform.errors import Conflict, Invalid, Unauthorized

USERNAME_PATTERN = re.compile(r"^[a-z0-9_.-]{3,32}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte password is an attack


class UsernameTaken(Conflict):
    code = "username-taken"
    title = "Username taken"


class BadCredentials(Unauthorized):
    code = "bad-credentials"
    title = "Wrong username or password"


class BadRefreshToken(Unauthorized):
    code = "bad-refresh-token"
    title = "Refresh token invalid"


class UserNotFound(Invalid):
    code = "user-not-found"
    title = "No such user"


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise Invalid(
            "3 to 32 characters of lowercase letters, digits, '_', '.' or '-'", field="username"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(f"at most {MAX_PASSWORD_LENGTH} characters", field="password")
    return password


def check_time_zone(name: str) -> str:
    """An IANA name only (the platform's one rule): `localtime` and the like are refused."""
    try:
        return time_zones.check_time_zone(name)
    except ValueError as exc:
        raise Invalid(str(exc), field="time_zone") from None


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    created_at: datetime
    email: str | None = None
    phone: str | None = None
    display_name: str | None = None
    time_zone: str = "UTC"
    locale: str = "en"
    is_admin: bool = False

    def with_profile(self, changes: dict[str, str | None]) -> User:
        allowed = {"email", "phone", "display_name", "time_zone", "locale"}
        unknown = set(changes) - allowed
        if unknown:
            raise Invalid(f"not editable: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
        if "time_zone" in changes:
            check_time_zone(changes["time_zone"] or "UTC")
            changes = {**changes, "time_zone": changes["time_zone"] or "UTC"}
        if "locale" in changes:
            changes = {**changes, "locale": changes["locale"] or "en"}
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RefreshToken:
    """One link of a rotation chain. Only its hash is stored; the family is revoked on reuse."""

    token_hash: str
    family_id: str
    user_id: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def issue(
        cls, token_hash: str, family_id: str, user_id: str, now: datetime, ttl: timedelta
    ) -> RefreshToken:
        return cls(token_hash, family_id, user_id, now, now + ttl)

    def check_usable(self, now: datetime) -> None:
        """Raise unless this token may be exchanged now. A used one signals theft: reuse."""
        if self.revoked_at is not None:
            raise BadRefreshToken("the refresh token was revoked")
        if self.used_at is not None:
            raise RefreshTokenReused(self.family_id)
        if self.expires_at <= now:
            raise BadRefreshToken("the refresh token expired")


class RefreshTokenReused(BadRefreshToken):
    """A rotated-out token came back: whoever holds the family is not to be trusted."""

    def __init__(self, family_id: str) -> None:
        super().__init__("the refresh token was already used; its family is revoked")
        self.family_id = family_id
