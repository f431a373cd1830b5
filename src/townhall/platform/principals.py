"""Who is calling: the route dependencies that turn a bearer token into a `Principal`
(`current_user`, `current_admin`, `optional_principal`, `websocket_user`), or a 401 problem.
"""

from __future__ import annotations

from fastapi import Depends, Request, WebSocket

from townhall.platform.auth import InvalidToken, KnownUsers, Principal, TokenCodec
from townhall.platform.openapi import answers
from townhall.platform.problems import Problem


def _bearer(request: Request | WebSocket) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    if request.scope["type"] == "websocket":
        return request.query_params.get("token") or None
    return None


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="townhall"'},
    )


async def optional_principal(request: Request) -> Principal | None:
    """The caller when a valid token is present, else None (never raises).

    The auth dependencies are coroutines: FastAPI runs a plain `def` dependency in a thread
    pool, which costs more than the token check itself.
    """
    state = request.scope.setdefault("state", {})
    if "principal" in state:
        return state["principal"]  # type: ignore[no-any-return]
    token = _bearer(request)
    principal = None
    if token:
        try:
            principal = await _verified(request, token)
        except InvalidToken as exc:
            state["token_refused"] = str(exc)
    state["principal"] = principal
    return principal


@answers(401)
async def current_user(request: Request) -> Principal:
    """The authenticated caller; 401 problem without a valid bearer token."""
    principal = await optional_principal(request)
    if principal is not None:
        return principal
    token = _bearer(request)
    if token is None:
        raise _unauthorized("A bearer token is required")
    if request.scope["state"].get("token_refused") == NO_SUCH_USER:
        raise _unauthorized("The token's user does not exist")
    raise _unauthorized("The token is invalid or expired")


@answers(403)
async def current_admin(principal: Principal = Depends(current_user)) -> Principal:
    if not principal.is_admin:
        raise Problem(403, "forbidden", "Forbidden", "Administrators only")
    return principal


async def websocket_user(websocket: WebSocket) -> Principal:
    """For WebSocket routes: the token from `Authorization` or `?token=`."""
    token = _bearer(websocket)
    if token is None:
        raise _unauthorized("A token is required (?token=)")
    try:
        return await _verified(websocket, token)
    except InvalidToken as exc:
        if str(exc) == NO_SUCH_USER:
            raise _unauthorized("The token's user does not exist") from None
        raise _unauthorized("The token is invalid or expired") from None


NO_SUCH_USER = "no such user"


async def _verified(connection: Request | WebSocket, token: str) -> Principal:
    """The token's principal: signed by us, not expired, and its user exists."""
    state = connection.app.state
    codec: TokenCodec = state.tokens
    principal = codec.verify(token)
    known_users: KnownUsers | None = state.known_users
    if known_users is not None and not await known_users(principal.user_id):
        raise InvalidToken(NO_SUCH_USER)
    return principal
