"""The edge's ASGI middleware: a request id on every request and answer, the body size limit,
an unhandled error as a 500 problem, and the access log and metrics per route template.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townhall.platform.ids import new_id_str
from townhall.platform.observability import HttpMetrics, get_logger
from townhall.platform.problems import HTTP_TITLES, PROBLEM_JSON, problem_body

MAX_REQUEST_ID = 128

# The edge's logger keeps the name it had before the edge was split into files, so log
# queries and filters that select it still do.
log = get_logger("townhall.http")


class EdgeMiddleware:
    """Request id, body size limit, 500 as a problem, access log and metrics.

    Plain ASGI (no BaseHTTPMiddleware) to keep the per-request cost of the edge small.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: HttpMetrics,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        # Path prefixes with a limit of their own (a module's, e.g. uploads'), longest first.
        self.body_limits = sorted((body_limits or {}).items(), key=lambda kv: -len(kv[0]))

    def _limit_of(self, path: str) -> int:
        for prefix, limit in self.body_limits:
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_body_bytes

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

        limit = self._limit_of(scope["path"]) if self.body_limits else self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._send_problem(send, 413, request_id, self._too_large_detail(limit))
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
                if received > limit and not response_started:
                    answered_413, status = True, 413
                    await self._send_problem(send, 413, request_id, self._too_large_detail(limit))
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

    def _too_large_detail(self, limit: int) -> str:
        return f"The body exceeds the limit of {limit} bytes"

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
