"""ClamAV's daemon over its INSTREAM protocol, on TCP (`tcp://HOST:PORT`) or a unix socket
(`unix:///PATH`): one connection per scan, the file sent as length-prefixed chunks.

clamd answers `stream: OK`, `stream: <signature> FOUND`, or `<reason> ERROR` (for one,
`INSTREAM size limit exceeded` past its `StreamMaxLength`). An error, a refused or dropped
connection, or an answer it should not give is a `ScanError`: never CLEAN.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterable
from urllib.parse import urlsplit

from townhall.uploads.domain import ScanError, Verdict

# clamd reads each chunk whole; its own limit is far larger, a small one keeps memory flat.
CHUNK = 64 * 1024
# The longest answer clamd gives is a signature name: anything longer is not clamd.
MAX_REPLY = 4096


class ClamdScanner:
    name = "clamd"

    def __init__(self, address: str) -> None:
        parts = urlsplit(address)
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            self._host: str | None = parts.hostname
            self._port: int | None = parts.port
            self._path: str | None = None
        elif parts.scheme == "unix" and parts.path:
            self._host = self._port = None
            self._path = parts.path
        else:
            raise ValueError(f"clamd address must be tcp://HOST:PORT or unix:///PATH: {address}")
        self.address = address

    async def scan(self, chunks: AsyncIterable[bytes]) -> Verdict:
        """Stream `chunks` to clamd. An exception raised by `chunks` itself propagates as it is
        (the connection is dropped, and clamd forgets the stream)."""
        reader, writer = await self._connect()
        try:
            try:
                writer.write(b"zINSTREAM\0")
                async for chunk in chunks:
                    for start in range(0, len(chunk), CHUNK):
                        piece = chunk[start : start + CHUNK]
                        writer.write(struct.pack(">I", len(piece)))
                        writer.write(piece)
                        await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
            except OSError as exc:
                # clamd closes the connection when it refuses the stream (too long): its reason
                # is waiting to be read.
                reply = await _read_reply(reader, quiet=True)
                raise ScanError(f"clamd: {reply or exc}") from exc
            reply = await _read_reply(reader)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        return _verdict(reply)

    async def ping(self) -> None:
        """Whether clamd is ready: `PING` answered `PONG`, else `ScanError`."""
        reader, writer = await self._connect()
        try:
            try:
                writer.write(b"zPING\0")
                await writer.drain()
            except OSError as exc:
                raise ScanError(f"clamd: {exc}") from exc
            reply = await _read_reply(reader)
        finally:
            writer.close()
        if reply != "PONG":
            raise ScanError(f"clamd answered PING with {reply!r}")

    async def close(self) -> None:
        return None  # a connection lives for one scan

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self._path is not None:
                return await asyncio.open_unix_connection(self._path)
            return await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise ScanError(f"clamd unreachable at {self.address}: {exc}") from exc


async def _read_reply(reader: asyncio.StreamReader, *, quiet: bool = False) -> str:
    """clamd's answer up to its NUL terminator; with `quiet`, whatever came ("" for nothing)
    instead of raising."""
    try:
        raw = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as exc:
        if quiet:
            return exc.partial.decode("utf-8", "replace").strip("\0 \n")
        raise ScanError("clamd closed the connection before answering") from exc
    except asyncio.LimitOverrunError as exc:
        raise ScanError("clamd's answer is too long") from exc
    except OSError as exc:
        if quiet:
            return ""
        raise ScanError(f"clamd: {exc}") from exc
    if len(raw) > MAX_REPLY:
        raise ScanError("clamd's answer is too long")
    return raw[:-1].decode("utf-8", "replace").strip()


def _verdict(reply: str) -> Verdict:
    result = reply.removeprefix("stream:").strip()
    if result == "OK":
        return Verdict.clean()
    if result.endswith(" FOUND"):
        return Verdict.infected(result.removesuffix(" FOUND").strip())
    raise ScanError(f"clamd: {reply}" if reply else "clamd gave no answer")
