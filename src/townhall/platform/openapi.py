"""The edge's OpenAPI description and its `/docs` page.

Error responses are derived for every route in one place, from what the route is made of:
the edge dependencies it uses say which statuses they answer (`answers(401)` on the auth
dependency, and so on), a path parameter can name what does not exist (404), a body can be
too large (413), any input can be invalid (422); a route adds only outcomes of its own domain
(`responses={409: ...}`). Each is an `application/problem+json` with the edge's real shape.
Swagger UI's assets come from an installed package, not a CDN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

PROBLEM_JSON = "application/problem+json"
BEARER_SCHEME = "bearerAuth"
DOCS_URL = "/docs"
DOCS_ASSETS = "/docs/assets"

ERROR_DESCRIPTIONS = {
    401: "No valid bearer token: missing, malformed, expired, or its user does not exist",
    403: "The caller may not do this (administrators only)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state",
    413: "The body is larger than the installation's limit",
    415: "The body is not JSON",
    422: "Invalid input: malformed JSON (with line and column), a field breaking a rule, or "
    "text the database cannot store (NUL); `errors` names each field",
    429: "Rate limit exceeded; retry after `Retry-After` seconds",
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer realm"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
}

PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "An error, as RFC 9457 problem details.",
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {
                "type": "string",
                "description": "A stable URN per kind of problem",
                "examples": ["urn:townhall:problem:validation-error"],
            },
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "request_id": {
                "type": "string",
                "description": "Also in the X-Request-ID header; quote it when reporting",
            },
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        },
        "additionalProperties": True,
    },
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "required": ["field", "in", "message"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path, e.g. `data.name`"},
            "in": {"type": "string", "enum": ["body", "query", "path", "header"]},
            "message": {"type": "string"},
            "line": {"type": "integer", "description": "Malformed JSON: where it breaks"},
            "column": {"type": "integer"},
        },
    },
}
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "The `access_token` from `POST /api/v1/auth/token`.",
}

F = TypeVar("F", bound=Callable[..., Any])


def answers(*statuses: int) -> Callable[[F], F]:
    """Mark an edge dependency with the error statuses it answers, for every route using it."""

    def mark(dependency: F) -> F:
        dependency.problem_statuses = frozenset(statuses)  # type: ignore[attr-defined]
        return dependency

    return mark


def dependants_of(dependant: Any) -> Iterator[Any]:
    """A route's dependant and all of its sub-dependencies, depth first."""
    yield dependant
    for sub in dependant.dependencies:
        yield from dependants_of(sub)


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Each API route as the app serves it: with the dependencies of the routers it was
    included through (FastAPI >= 0.13x keeps included routers nested; older ones copy)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:
        yield from (route for route in app.routes if isinstance(route, APIRoute))
        return
    for context in contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def error_statuses(route: Any) -> set[int]:
    """The 4xx a route can answer, from its dependencies, parameters and declared outcomes."""
    parts = list(dependants_of(route.dependant))
    statuses: set[int] = set()
    for part in parts:
        statuses |= getattr(part.call, "problem_statuses", frozenset())
    if any(part.path_params for part in parts):
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {413, 422}
    else:
        statuses.discard(415)  # the JSON rule is for bodies; a route taking none never says it
    if any(part.query_params or part.header_params or part.path_params for part in parts):
        statuses.add(422)
    statuses |= {int(code) for code in route.responses if str(code).isdigit()} & set(
        range(400, 500)
    )
    return statuses


def install_openapi(app: FastAPI) -> None:
    """Replace the app's OpenAPI builder with one that adds security and error responses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_errors(app, FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(PROBLEM_SCHEMAS)
    components["securitySchemes"] = {BEARER_SCHEME: BEARER}
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        statuses = error_statuses(route)
        for method in route.methods:
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                own = route.responses.get(status) or route.responses.get(str(status)) or {}
                description = own.get("description") or ERROR_DESCRIPTIONS.get(status, "Error")
                answer: dict[str, Any] = {"description": description, "content": problem}
                if status in ERROR_HEADERS:
                    answer["headers"] = ERROR_HEADERS[status]
                responses[str(status)] = answer
            if 401 in statuses:
                operation["security"] = [{BEARER_SCHEME: []}]
    # FastAPI's own 422 body (application/json) is replaced everywhere: drop its schemas.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI from the installed package's files, under `/docs/assets`."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.add_route(DOCS_URL, docs, include_in_schema=False)
