"""The peer of `bench/uploads.py`: a bare Starlette app that streams an upload's body to a file,
and nothing else (no auth, no hashing, no type sniffing, no database): the limit of an upload
through uvicorn here.

    UPLOADS_PEER_DIR=/tmp/x .venv/bin/python -m uvicorn uploads_peer:app --app-dir bench \
        --loop uvloop --http httptools --port 8001

`POST /upload` takes a raw body, or `multipart/form-data` whose `file` part is parsed as it
arrives (python-multipart's push parser, as Townhall's `uploads/multipart.py`); `?writes=thread`
writes each chunk from a worker thread (`asyncio.to_thread`, as Townhall's local storage does),
else the writes are made on the event loop (page-cache writes of a few KiB: the cheapest way).
Answers 202 with the bytes written.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DIRECTORY = Path(os.environ.get("UPLOADS_PEER_DIR", "/tmp/uploads-peer"))


async def file_part(body: AsyncIterator[bytes], content_type: str) -> AsyncIterator[bytes]:
    """The bytes of the body's part named `file`, as they arrive."""
    _, options = parse_options_header(content_type)
    out: list[bytes] = []
    state = {"name": b"", "field": b"", "value": b"", "in_file": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["field"].lower() == b"content-disposition":
            _, params = parse_options_header(state["value"])
            state["name"] = params.get(b"name", b"")
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        state["in_file"] = state["name"] == b"file"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            out.append(data[start:end])

    def on_part_end() -> None:
        state["in_file"], state["name"] = False, b""

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async for chunk in body:
        parser.write(chunk)
        if out:
            data = b"".join(out)
            out.clear()
            yield data
    parser.finalize()
    if out:
        yield b"".join(out)


async def upload(request: Request) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    chunks = request.stream()
    if content_type.startswith("multipart/"):
        chunks = file_part(chunks.__aiter__(), content_type)
    threaded = request.query_params.get("writes") == "thread"
    path = DIRECTORY / f"{uuid.uuid4().hex}.bin"
    size = 0
    with open(path, "wb") as out:  # noqa: ASYNC230 (the point: the cheapest write)
        async for chunk in chunks:
            if threaded:
                await asyncio.to_thread(out.write, chunk)
            else:
                out.write(chunk)
            size += len(chunk)
    return JSONResponse({"id": path.stem, "size": size}, status_code=202)


DIRECTORY.mkdir(parents=True, exist_ok=True)
app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
