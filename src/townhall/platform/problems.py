"""Errors as `application/problem+json` (RFC 9457): the `Problem` exception, its body, and the
exception handlers that map every error the edge can meet to one, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from townhall.platform import errors
from townhall.platform.ratelimit import RateLimited

PROBLEM_TYPE = "urn:townhall:problem:"
PROBLEM_JSON = "application/problem+json"


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
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
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


def status_of(exc: errors.DomainError) -> int:
    """The HTTP status of a domain error's kind (400 for a kind not mapped)."""
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
        status = status_of(exc)
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
