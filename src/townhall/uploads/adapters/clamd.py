"""ClamAV's daemon over its INSTREAM protocol, on TCP (`tcp://HOST:PORT`) or a unix socket
(`unix:///PATH`): one connection per scan, the file sent as length-prefixed chunks.

clamd answers `stream: OK`, `stream: <signature> FOUND`, or `<reason> ERROR` (for one,
`INSTREAM size limit exceeded` past its `StreamMaxLength`). An error, a refused or dropped
connection, or an answer it should not give is a `ScanError`: never CLEAN.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterable
from typing import Any
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
        loop = asyncio.get_running_loop()
        with await self._connect() as sock:
            try:
                await loop.sock_sendall(sock, b"zINSTREAM\0")
                async for chunk in chunks:
                    with memoryview(chunk) as view:
                        for start in range(0, len(view), CHUNK):
                            piece = view[start : start + CHUNK]
                            await loop.sock_sendall(sock, struct.pack(">I", len(piece)))
                            await loop.sock_sendall(sock, piece)
                await loop.sock_sendall(sock, struct.pack(">I", 0))
            except OSError as exc:
                # clamd answers then closes when it refuses a stream (too long): a socket (not
                # a stream transport, which drops what is unread on a failed write) still
                # holds its reason.
                try:
                    reply = await asyncio.wait_for(_read_reply(sock), 1)
                except (ScanError, TimeoutError):
                    reply = ""
                raise ScanError(f"clamd: {reply or exc}") from exc
            reply = await _read_reply(sock)
        return _verdict(reply)

    async def ping(self) -> None:
        """Whether clamd is ready: `PING` answered `PONG`, else `ScanError`."""
        with await self._connect() as sock:
            try:
                await asyncio.get_running_loop().sock_sendall(sock, b"zPING\0")
            except OSError as exc:
                raise ScanError(f"clamd: {exc}") from exc
            reply = await _read_reply(sock)
        if reply != "PONG":
            raise ScanError(f"clamd answered PING with {reply!r}")

    async def close(self) -> None:
        return None  # a connection lives for one scan

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            if self._path is not None:
                targets: list[tuple[int, Any]] = [(socket.AF_UNIX, self._path)]
            else:
                found = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
                targets = [(family, address) for family, _, _, _, address in found]
            error: OSError = OSError("no address")
            for family, address in targets:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                    return sock
                except OSError as exc:
                    sock.close()
                    error = exc
                except BaseException:
                    sock.close()
                    raise
            raise error
        except OSError as exc:
            raise ScanError(f"clamd unreachable at {self.address}: {exc}") from exc


async def _read_reply(sock: socket.socket) -> str:
    """clamd's answer, up to its NUL terminator."""
    loop = asyncio.get_running_loop()
    received = b""
    while not received.endswith(b"\0"):
        try:
            data = await loop.sock_recv(sock, MAX_REPLY)
        except OSError as exc:
            raise ScanError(f"clamd: {exc}") from exc
        if not data:
            raise ScanError("clamd closed the connection before answering")
        received += data
        if len(received) > MAX_REPLY:
            raise ScanError("clamd's answer is too long")
    return received[:-1].decode("utf-8", "replace").strip()


def _verdict(reply: str) -> Verdict:
    result = reply.removeprefix("stream:").strip()
    if result == "OK":
        return Verdict.clean()
    if result.endswith(" FOUND"):
        return Verdict.infected(result.removesuffix(" FOUND").strip())
    raise ScanError(f"clamd: {reply}" if reply else "clamd gave no answer")
