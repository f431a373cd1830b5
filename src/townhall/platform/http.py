"""The HTTP edge: `create_edge` builds the one ASGI app every module's routers mount on.

Errors are `application/problem+json` (RFC 9457) everywhere (`problems.py`); request ids, logs,
metrics and body limits are one middleware (`edge_middleware.py`); rules every route keeps
(text the database can store, JSON bodies, auth, rate limits) are dependencies
(`request_guards.py`, `principals.py`), and `platform/openapi.py` documents what each route can
answer from them. The names modules use for routes are importable from here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from townhall.platform.auth import KnownUsers, TokenCodec, UserExists
from townhall.platform.edge_middleware import EdgeMiddleware
from townhall.platform.observability import HttpMetrics
from townhall.platform.openapi import install_docs, install_openapi
from townhall.platform.principals import (
    current_admin,
    current_user,
    optional_principal,
    websocket_user,
)
from townhall.platform.problems import (
    HTTP_TITLES,
    PROBLEM_JSON,
    Problem,
    install_problem_handlers,
    problem_body,
    problem_response,
)
from townhall.platform.ratelimit import RateLimiter
from townhall.platform.request_guards import rate_limit, refuse_unstorable_text, require_json

__all__ = [
    "HTTP_TITLES",
    "PROBLEM_JSON",
    "Problem",
    "ReadinessProbe",
    "create_edge",
    "current_admin",
    "current_user",
    "optional_principal",
    "problem_body",
    "problem_response",
    "rate_limit",
    "require_json",
    "websocket_user",
]

ReadinessProbe = Callable[[], Awaitable[None]]


def create_edge(
    *,
    tokens: TokenCodec,
    user_exists: UserExists | None = None,
    rate_limiter: RateLimiter | None,
    routers: Sequence[APIRouter],
    pages: Sequence[APIRouter] = (),
    readiness: Mapping[str, ReadinessProbe],
    max_body_bytes: int,
    body_limits: Mapping[str, int] | None = None,
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
        dependencies=[Depends(refuse_unstorable_text)],
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
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=max_body_bytes,
        body_limits={f"/api/v1{prefix}": limit for prefix, limit in (body_limits or {}).items()},
        metrics=HttpMetrics(registry),
    )
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
