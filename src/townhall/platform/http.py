"""The HTTP edge: problem+json errors, request ids, logs, metrics, body limits, auth, rate limits.

`create_edge` builds the one ASGI app every module's routers mount on. Errors are
`application/problem+json` (RFC 9457) everywhere, mapped in one place here; rules every route
keeps (text the database can store, JSON bodies, auth) are dependencies applied here too, and
`platform/openapi.py` documents what each route can answer from them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townhall.platform import errors
from townhall.platform.auth import InvalidToken, KnownUsers, Principal, TokenCodec, UserExists
from townhall.platform.ids import new_id_str
from townhall.platform.observability import HttpMetrics, get_logger
from townhall.platform.openapi import answers, dependants_of, install_docs, install_openapi
from townhall.platform.ratelimit import RateLimited, RateLimiter
from townhall.platform.storable import (
    NUL,
    json_may_hold_unstorable,
    unstorable_strings,
    why_unstorable,
)

PROBLEM_TYPE = "urn:townhall:problem:"
PROBLEM_JSON = "application/problem+json"
MAX_REQUEST_ID = 128

log = get_logger("townhall.http")

ReadinessProbe = Callable[[], Awaitable[None]]


class Problem(Exception):
    """Raise anywhere in a handler to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    request_id: str | None,
    errors: list[dict[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request_id:
        body["request_id"] = request_id
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = problem_body(
        problem.status,
        problem.code,
        problem.title,
        problem.detail,
        request_id_of(request.scope),
        problem.errors,
        problem.extra,
    )
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def request_id_of(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return str(value) if value else None


# Domain error kinds -> HTTP status, in one place.
DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
}

HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid request"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def _status_of(exc: errors.DomainError) -> int:
    for kind in type(exc).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 400


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.DomainError)
        status = _status_of(exc)
        field_errors = (
            [{"field": exc.field, "message": exc.detail}] if exc.field is not None else None
        )
        problem = Problem(status, exc.code, exc.title, exc.detail, errors=field_errors)
        return problem_response(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, title = HTTP_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            request, Problem(exc.status_code, code, title, detail, headers=exc.headers)
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        field_errors: list[dict[str, Any]] = []
        for error in exc.errors():
            if error.get("type") == "json_invalid":
                problem = _malformed_json(error, exc.body)
                return problem_response(request, problem)
            location = [str(part) for part in error.get("loc", ())]
            if location and location[0] in ("body", "query", "path", "header"):
                where, location = location[0], location[1:]
            else:
                where = "body"
            field_errors.append(
                {"field": ".".join(location) or where, "in": where, "message": error.get("msg")}
            )
        problem = Problem(
            422,
            "validation-error",
            "Invalid request",
            "Some fields are invalid",
            errors=field_errors,
        )
        return problem_response(request, problem)

    async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimited)
        problem = Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"Rate limit exceeded for {exc.scope}; retry in {exc.retry_after}s",
            headers={"Retry-After": str(exc.retry_after)},
        )
        return problem_response(request, problem)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(errors.DomainError, on_domain)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(RateLimited, on_rate_limited)


def _malformed_json(error: Mapping[str, Any], document: Any) -> Problem:
    """A 422 saying the body is not JSON and where it breaks, as line and column (1-based)
    rather than the parser's character offset."""
    location = error.get("loc", ())
    position = location[1] if len(location) > 1 and isinstance(location[1], int) else 0
    reason = str((error.get("ctx") or {}).get("error") or "not valid JSON")
    text = document if isinstance(document, str) else ""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    message = f"{reason} at line {line}, column {column}"
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        f"The body is not valid JSON: {message}",
        errors=[
            {"field": "body", "in": "body", "message": message, "line": line, "column": column}
        ],
    )


class EdgeMiddleware:
    """Request id, body size limit, 500 as a problem, access log and metrics.

    Plain ASGI (no BaseHTTPMiddleware) to keep the per-request cost of the edge small.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: HttpMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or new_id_str()
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500
        response_started = False
        answered_413 = False
        header_value = request_id.encode()

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if answered_413:
                return  # the client already has its 413; drop what the app says after it
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", header_value)]
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._send_problem(send, 413, request_id, self._too_large_detail())
            self._record(scope, 413, started, request_id)
            return

        received = 0

        async def receive_wrapper() -> Message:
            # A body without Content-Length (chunked) is counted as it arrives; past the limit
            # the client gets its 413 and the app sees the client go away.
            nonlocal received, answered_413, status
            if answered_413:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not response_started:
                    answered_413, status = True, 413
                    await self._send_problem(send, 413, request_id, self._too_large_detail())
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            if not answered_413:
                # Everything needed to find the failure from the request id the client quotes.
                log.exception(
                    "unhandled error",
                    request_id=request_id,
                    method=scope["method"],
                    path=scope["path"],
                    route=_route_template(scope),
                    error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                    error=str(exc),
                )
                if not response_started:
                    status = 500
                    await self._send_problem(
                        send, 500, request_id, "An unexpected error occurred; quote the request id"
                    )
        self._record(scope, status, started, request_id)

    def _too_large_detail(self) -> str:
        return f"The body exceeds the limit of {self.max_body_bytes} bytes"

    def _record(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        duration = time.perf_counter() - started
        template = _route_template(scope)
        self.metrics.observe(scope["method"], template, status, duration)
        principal = (scope.get("state") or {}).get("principal")
        log.info(
            "request",
            request_id=request_id,
            method=scope["method"],
            path=scope["path"],
            route=template,
            status=status,
            duration_ms=round(duration * 1000, 3),
            user=principal.username if principal else None,
        )

    @staticmethod
    async def _send_problem(send: Send, status: int, request_id: str, detail: str) -> None:
        code, title = HTTP_TITLES[status]
        body = json.dumps(problem_body(status, code, title, detail, request_id)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    """The matched route's full path template (`/api/v1/users/{id}`), for metric labels."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path", None) or getattr(scope.get("route"), "path", None)
    return str(path) if path else "unmatched"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if 0 < len(text) <= MAX_REQUEST_ID and text.isprintable():
                return text
            return None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# --- authentication -------------------------------------------------------------------------


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


@answers(415)
async def _require_json(request: Request) -> None:
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Send application/json, not {media_type or 'no content type'}",
        )


async def _refuse_unstorable_text(connection: HTTPConnection) -> None:
    """Every route's rule (an app-wide dependency): a path or query parameter, a header the
    route reads, or a string anywhere in a JSON body that the database cannot store (NUL, a
    lone surrogate) is a 422 naming it, before the route runs. Each check starts with a cheap
    look at the raw request, so clean requests pay almost nothing."""
    scope = connection.scope
    found: list[dict[str, Any]] = []
    if NUL in scope.get("path", ""):
        for name, value in connection.path_params.items():
            _note_unstorable(found, "path", name, str(value))
    if b"%00" in scope.get("query_string", b""):
        for name, value in connection.query_params.multi_items():
            _note_unstorable(found, "query", name, value)
    # The route as served, with the dependencies of the routers it was included through.
    route = (scope.get("fastapi") or {}).get("effective_route_context") or scope.get("route")
    for header in _declared_headers(route):
        value = connection.headers.get(header)
        if value is not None:
            _note_unstorable(found, "header", header, value)
    if isinstance(connection, Request) and getattr(route, "body_field", None) is not None:
        raw = await connection.body()
        if json_may_hold_unstorable(raw):
            try:
                document = json.loads(raw)
            except ValueError:
                document = None  # not JSON: the route's own validation says so
            for field, reason in unstorable_strings(document):
                found.append({"field": field or "body", "in": "body", "message": reason})
    if found:
        raise Problem(
            422,
            "validation-error",
            "Invalid request",
            "Some fields hold text that cannot be stored",
            errors=found,
        )


def _note_unstorable(found: list[dict[str, Any]], where: str, name: str, value: str) -> None:
    reason = why_unstorable(value)
    if reason is not None:
        found.append({"field": name, "in": where, "message": reason})


_HEADERS_OF_ROUTE: dict[int, tuple[Any, tuple[str, ...]]] = {}


def _declared_headers(route: Any) -> tuple[str, ...]:
    """The request headers a route reads as parameters (found once per route)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return ()
    known = _HEADERS_OF_ROUTE.get(id(route))
    if known is not None and known[0] is route:
        return known[1]
    names = tuple(
        field.alias.replace("_", "-") if _converts_underscores(field) else field.alias
        for part in dependants_of(dependant)
        for field in part.header_params
    )
    _HEADERS_OF_ROUTE[id(route)] = (route, names)  # holding the route keeps its id unique
    return names


def _converts_underscores(field: Any) -> bool:
    return bool(getattr(field.field_info, "convert_underscores", True))


require_json = Depends(_require_json)
"""A router dependency: a request with a body must send JSON (else 415)."""


def rate_limit(group: str) -> Any:
    """A dependency counting the request against `group`'s limit (per user, else per IP)."""

    @answers(429)
    async def check(request: Request) -> None:
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is None:
            return
        principal = await optional_principal(request)
        client_ip = request.client.host if request.client else "unknown"
        await limiter.check(group, client_ip, principal.user_id if principal else None)

    return Depends(check)


# --- the app --------------------------------------------------------------------------------


def create_edge(
    *,
    tokens: TokenCodec,
    user_exists: UserExists | None = None,
    rate_limiter: RateLimiter | None,
    routers: Sequence[APIRouter],
    pages: Sequence[APIRouter] = (),
    readiness: Mapping[str, ReadinessProbe],
    max_body_bytes: int,
    cors_origins: Sequence[str] = (),
    registry: CollectorRegistry | None = None,
    lifespan: Any = None,
    title: str = "Townhall",
    version: str = "0",
) -> FastAPI:
    """The gateway: every module's router under /api/v1, plus health, readiness and metrics.

    `user_exists` (identity's answer, where identity runs) makes a validly signed token whose
    user does not exist a 401; without it a signature and an expiry are all that is checked.
    """
    registry = registry or CollectorRegistry()
    # Townhall exports its own Prometheus metrics; FastAPI's OpenTelemetry hooks would ask
    # the global providers on every request for nothing.
    telemetry = TelemetryConfig(tracing=False, metrics=False, logs=False)
    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        telemetry=telemetry,
        dependencies=[Depends(_refuse_unstorable_text)],
        docs_url=None,  # served by install_docs, from the installation's own files
        redoc_url=None,
    )
    install_openapi(app)
    install_docs(app)
    app.state.tokens = tokens
    app.state.known_users = KnownUsers(user_exists, tokens.clock) if user_exists else None
    app.state.rate_limiter = rate_limiter
    app.state.registry = registry
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router, prefix="/api/v1")
    for page in pages:
        app.include_router(page)
    app.include_router(_operations_router(readiness, registry))
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(EdgeMiddleware, max_body_bytes=max_body_bytes, metrics=HttpMetrics(registry))
    return app


def _operations_router(
    readiness: Mapping[str, ReadinessProbe], registry: CollectorRegistry
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Ready: every configured adapter answers; 503 naming those that do not."""
        checks: dict[str, str] = {}
        failing = []
        for name, probe in readiness.items():
            try:
                await probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable: {type(exc).__name__}: {exc}"[:300]
                failing.append(name)
        if failing:
            problem = Problem(
                503,
                "unavailable",
                "Service unavailable",
                f"Not reachable: {', '.join(failing)}",
                extra={"checks": checks},
            )
            return problem_response(request, problem)
        return JSONResponse({"status": "ready", "checks": checks})

    @router.get("/metrics")
    async def metrics() -> PlainTextResponse:
        """Prometheus text exposition."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
