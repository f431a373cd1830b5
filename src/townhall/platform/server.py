"""The HTTP server's own error answer, as problem+json.

uvicorn answers a request it cannot parse (a control character in a header, a broken request
line) itself, before any app or middleware sees it, with a text/plain 400. It offers no
setting for that body; it does take the protocol class to run, so these subclasses of its
two HTTP/1.1 protocols replace that one answer (`send_400_response`, the method both call
for it) and nothing else. A uvicorn upgrade that renames the method is caught by
tests/integration/edge/test_unparseable_request.py.
"""

from __future__ import annotations

import asyncio
import json
from importlib.util import find_spec

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from townhall.platform.ids import new_id_str
from townhall.platform.problems import HTTP_TITLES, PROBLEM_JSON, problem_body

UNPARSEABLE = (
    "The request is not valid HTTP/1.1 (a control character in a header, or a malformed "
    "request line or header), so it was not read"
)


def _problem() -> tuple[bytes, list[tuple[bytes, bytes]]]:
    request_id = new_id_str()
    code, title = HTTP_TITLES[400]
    body = json.dumps(problem_body(400, code, title, UNPARSEABLE, request_id)).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    return body, headers


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body, headers = _problem()
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


if find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            body, headers = _problem()
            lines = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in [*self.server_state.default_headers, *headers]:
                lines += [name, b": ", value, b"\r\n"]
            self.transport.write(b"".join([*lines, b"\r\n", body]))
            self.transport.close()


def http_protocol() -> type[asyncio.Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`: httptools where it is installed (as
    uvicorn's "auto" picks), else h11; either answers an unparseable request with a problem."""
    if find_spec("httptools") is not None:
        return ProblemHttpToolsProtocol
    return ProblemH11Protocol
