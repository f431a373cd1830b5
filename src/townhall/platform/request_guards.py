"""Checks a request passes before its route runs: a body is JSON, every text the route reads
can be stored, and the caller is within its rate limit; each refusal is a problem.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from townhall.platform.openapi import answers, dependants_of
from townhall.platform.principals import optional_principal
from townhall.platform.problems import Problem
from townhall.platform.ratelimit import RateLimiter
from townhall.platform.storable import (
    NUL,
    json_may_hold_unstorable,
    unstorable_strings,
    why_unstorable,
)


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


async def refuse_unstorable_text(connection: HTTPConnection) -> None:
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
