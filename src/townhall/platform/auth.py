"""Authentication at the edge: signed JWT access tokens, checked locally, and whether the
token's user still exists (asked of identity at most once a minute per user).

The identity module issues tokens through `TokenCodec`; every other route only verifies them.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from townhall.platform.clock import Clock
from townhall.platform.ttl_cache import TtlCache

ALGORITHM = "HS256"
VERIFIED_CACHE_SIZE = 4096
KNOWN_USER_TTL = timedelta(seconds=60)
KNOWN_USERS_CACHED = 10_000

UserExists = Callable[[str], Awaitable[bool]]


class InvalidToken(Exception):
    """The token is missing, malformed, expired or not signed by us."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: read from a verified access token."""

    user_id: str
    username: str
    is_admin: bool = False


class TokenCodec:
    def __init__(self, secret: str, clock: Clock, *, access_ttl: int = 900) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 characters")
        self._secret = secret
        self._clock = clock
        self.access_ttl = access_ttl
        # token -> (principal, expiry): a token seen before skips the signature check (the
        # costliest step of a request at the edge); expiry is still checked on every use.
        self._verified: dict[str, tuple[Principal, datetime]] = {}

    @property
    def clock(self) -> Clock:
        return self._clock

    def issue(self, principal: Principal) -> str:
        now = self._clock.now()
        claims: dict[str, Any] = {
            "sub": principal.user_id,
            "name": principal.username,
            "adm": principal.is_admin,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.access_ttl)).timestamp()),
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                # Forget the oldest entry (dicts keep insertion order).
                del self._verified[next(iter(self._verified))]
            self._verified[token] = known
        principal, expires = known
        # Expiry is checked against our Clock, not the wall clock, so tests can move time.
        if expires <= self._clock.now():
            raise InvalidToken("token expired")
        return principal

    def _decode(self, token: str) -> tuple[Principal, datetime]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp", "iat"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if claims.get("typ") != "access":
            raise InvalidToken("not an access token")
        principal = Principal(
            user_id=str(claims["sub"]),
            username=str(claims.get("name", "")),
            is_admin=bool(claims.get("adm", False)),
        )
        return principal, datetime.fromtimestamp(claims["exp"], self._clock.now().tzinfo)


class KnownUsers:
    """Whether a verified token's user exists (a token outlives a deleted user, and another
    installation sharing the secret signs tokens for users we never had).

    Only "exists" is cached, for `ttl`: a request pays a dict look-up, and the database is
    asked once per user per `ttl`. So a deleted user's token is refused within `ttl`; a
    subject that was never a user is asked every time (forging one needs the secret)."""

    def __init__(
        self,
        exists: UserExists,
        clock: Clock,
        *,
        ttl: timedelta = KNOWN_USER_TTL,
        max_entries: int = KNOWN_USERS_CACHED,
    ) -> None:
        self._exists = exists
        self._cache: TtlCache[str, bool] = TtlCache(clock, ttl=ttl, max_entries=max_entries)

    async def __call__(self, user_id: str) -> bool:
        if self._cache.get(user_id):
            return True
        if not await self._exists(user_id):
            return False
        self._cache.put(user_id, True)
        return True


def load_or_create_secret(data_dir: Path) -> str:
    """The signing secret kept under the data directory, generated on first use."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Create exclusively so two processes starting at once agree on one secret.
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(secret)
        path.chmod(0o600)
    except FileExistsError:
        return path.read_text().strip()
    return secret
