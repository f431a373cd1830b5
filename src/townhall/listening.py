"""The HTTP edge's listening sockets, bound before anything else starts.

`serve` binds them first, so a port in use is one error naming the port and `TOWNHALL_PORT`
before a migration runs or a module starts, and "Townhall is up" is only ever printed once
the process really listens. uvicorn is then handed the bound sockets.
"""

from __future__ import annotations

import errno
import socket

from townhall.config import ConfigError

BACKLOG = 2048  # uvicorn's default


def listen(host: str, port: int) -> list[socket.socket]:
    """Non-blocking sockets listening on every address `host` resolves to, as asyncio's
    `create_server(host=..., port=...)` would bind them; `ConfigError` if one cannot be."""
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError("TOWNHALL_HOST", f"cannot resolve {host!r}: {exc.strerror}") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # one socket per family, as asyncio does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise _cannot_bind(host, port, exc) from exc
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _cannot_bind(host: str, port: int, exc: OSError) -> ConfigError:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            "TOWNHALL_PORT",
            f"{where}: port {port} is already in use; stop what holds it, or choose another"
            " port with TOWNHALL_PORT (or --port)",
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            "TOWNHALL_PORT",
            f"{where}: permission denied (ports below 1024 need privileges); choose another"
            " port with TOWNHALL_PORT (or --port)",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            "TOWNHALL_HOST", f"{where}: {host} is not an address of this machine (--host)"
        )
    return ConfigError("TOWNHALL_PORT", f"{where}: {exc.strerror or exc}")
