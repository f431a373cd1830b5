"""A `multipart/form-data` body read as a stream: the part named `file` comes out chunk by chunk
as the request's bytes arrive, so an upload is never held whole in memory (Starlette's
`request.form()` would first spool it to a temporary file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from townhall.uploads.domain import InvalidUpload

FIELD = "file"


@dataclass
class _State:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    in_file: bool = False
    found: bool = False
    finished: bool = False
    filename: str | None = None
    content_type: str | None = None
    out: list[bytes] = field(default_factory=list)


class FilePart:
    """The `file` part of a multipart body: `await open()` reads up to the part's headers
    (`filename`, `content_type`), then `chunks()` streams its bytes."""

    def __init__(self, body: AsyncIterator[bytes], content_type: str) -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidUpload("a multipart/form-data body needs its boundary", field="file")
        self._body = body
        self._state = state = _State()

        def on_part_begin() -> None:
            state.headers = {}

        def on_header_field(data: bytes, start: int, end: int) -> None:
            state.header_field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            state.header_value += data[start:end]

        def on_header_end() -> None:
            state.headers[state.header_field.lower()] = state.header_value
            state.header_field, state.header_value = b"", b""

        def on_headers_finished() -> None:
            _, options = parse_options_header(state.headers.get(b"content-disposition", b""))
            if options.get(b"name") == FIELD.encode() and not state.found:
                state.in_file = state.found = True
                raw_name = options.get(b"filename")
                state.filename = raw_name.decode("utf-8", "replace") if raw_name else None
                declared = state.headers.get(b"content-type")
                state.content_type = declared.decode("latin-1") if declared else None

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if state.in_file:
                state.out.append(data[start:end])

        def on_part_end() -> None:
            if state.in_file:
                state.in_file, state.finished = False, True

        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
            },
        )

    @property
    def filename(self) -> str | None:
        return self._state.filename

    @property
    def content_type(self) -> str | None:
        return self._state.content_type

    async def _feed(self) -> bool:
        """Feed the parser the next chunk of the body; False at its end."""
        async for chunk in self._body:
            if chunk:
                self._parser.write(chunk)
                return True
        return False

    async def open(self) -> None:
        while not self._state.found:
            if not await self._feed():
                raise InvalidUpload("the form has no `file` part", field="file")

    async def chunks(self) -> AsyncIterator[bytes]:
        state = self._state
        while True:
            if state.out:
                data, state.out = b"".join(state.out), []
                yield data
            if state.finished:
                return
            if not await self._feed():
                raise InvalidUpload("the body ended inside the `file` part", field="file")
