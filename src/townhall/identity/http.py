"""Identity's HTTP routes: register, tokens, and the caller's own profile."""

from __future__ import annotations

from typing import Annotated, Any

import phonenumbers
from fastapi import APIRouter, Depends, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from townhall.identity.domain import MIN_PASSWORD_LENGTH, User
from townhall.identity.service import IdentityService, Registration, TokenPair
from townhall.platform.auth import Principal
from townhall.platform.http import current_user, rate_limit, require_json


def _e164(value: str) -> str:
    """A phone number written in E.164 form (`+`, country code, number) that is also a number
    its country's numbering plan can have; the two refusals say which rule failed."""
    try:
        if not value.startswith("+"):
            raise phonenumbers.NumberParseException(0, "no +")
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(
            "not in E.164 form: +, the country code, then the number (e.g. +14155550100)"
        ) from None
    written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(number):
        raise ValueError(
            f"{written} is in E.164 form but is not a valid phone number: no number like it"
            f" exists under country code +{number.country_code}"
        )
    return written


Phone = Annotated[str, AfterValidator(_e164)]
Username = Annotated[str, Field(pattern=r"^[a-z0-9_.-]{3,32}$")]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password
    email: EmailStr | None = None
    phone: Phone | None = None
    display_name: Annotated[str, Field(max_length=100)] | None = None


class TokenRequest(BaseModel):
    username: Annotated[str, Field(max_length=64)]
    password: Annotated[str, Field(max_length=1024)]


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=256)]


class ProfilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr | None = None
    phone: Phone | None = None
    display_name: Annotated[str, Field(max_length=100)] | None = None
    time_zone: Annotated[str, Field(max_length=64)] | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None = None


class UserOut(BaseModel):
    id: str
    username: str
    email: str | None
    phone: str | None
    display_name: str | None
    time_zone: str
    locale: str
    is_admin: bool
    created_at: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


def _out(service: IdentityService, user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email,
        phone=user.phone,
        display_name=user.display_name,
        time_zone=user.time_zone,
        locale=user.locale,
        is_admin=service.is_admin(user),
        created_at=user.created_at.isoformat(),
    )


def _tokens(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


def routers(service: IdentityService) -> list[APIRouter]:
    auth = APIRouter(
        prefix="/auth", tags=["identity"], dependencies=[rate_limit("auth"), require_json]
    )
    me = APIRouter(tags=["identity"], dependencies=[rate_limit("default")])

    @auth.post(
        "/register",
        status_code=201,
        response_model=UserOut,
        responses={409: {"description": "The username is taken"}},
    )
    async def register(body: RegisterRequest) -> UserOut:
        user = await service.register(
            Registration(
                username=body.username,
                password=body.password,
                email=body.email,
                phone=body.phone,
                display_name=body.display_name,
            )
        )
        return _out(service, user)

    @auth.post("/token", response_model=TokenOut)
    async def token(body: TokenRequest) -> TokenOut:
        return _tokens(await service.sign_in(body.username, body.password))

    @auth.post("/refresh", response_model=TokenOut)
    async def refresh(body: RefreshRequest) -> TokenOut:
        return _tokens(await service.refresh(body.refresh_token))

    @auth.post("/logout", status_code=204)
    async def logout(body: RefreshRequest) -> Response:
        await service.sign_out(body.refresh_token)
        return Response(status_code=204)

    @me.get("/me", response_model=UserOut)
    async def read_me(principal: Annotated[Principal, Depends(current_user)]) -> UserOut:
        return _out(service, await service.get_user(principal.user_id))

    @me.patch("/me", response_model=UserOut, dependencies=[require_json])
    async def patch_me(
        body: ProfilePatch, principal: Annotated[Principal, Depends(current_user)]
    ) -> UserOut:
        changes: dict[str, Any] = body.model_dump(exclude_unset=True)
        return _out(service, await service.update_profile(principal.user_id, changes))

    return [auth, me]
