"""The benchmark's SMTP receiver: the stand-in for an email provider, in its own process.

It records the `X-Townhall-Notification` id and arrival time of every message it accepts.
Two implementations speak the same SMTP to the sender:
- `lean` (default): a minimal server on an `asyncio.Protocol` (EHLO/HELO, MAIL, RCPT, DATA,
  RSET, NOOP, QUIT; every command accepted). A provider's servers run on other machines; on
  this one the receiver shares the two cores with what it measures, so it should cost as
  little as it can: about a fifth of aiosmtpd's CPU per email.
- `aiosmtpd`: the full aiosmtpd server, as in earlier runs, for comparison.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from typing import Any

ID_HEADER = re.compile(rb"^X-Townhall-Notification:[ \t]*(\S+)", re.M | re.I)
KINDS = ("lean", "aiosmtpd")
_END_OF_DATA = b"\r\n.\r\n"
_EHLO = b"250-bench-receiver\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 33554432\r\n"


def _record(arrivals: list[tuple[str, float]], message: bytes) -> None:
    head = message.split(b"\r\n\r\n", 1)[0]
    found = ID_HEADER.search(head)
    arrivals.append((found.group(1).decode() if found else "", time.time()))


class LeanSmtp(asyncio.Protocol):
    """One SMTP connection: commands line by line, then a message up to its lone dot."""

    def __init__(self, arrivals: list[tuple[str, float]]) -> None:
        self._arrivals = arrivals
        self._buffer = b""
        self._in_data = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 bench-receiver ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._buffer + data
        answers: list[bytes] = []
        start = 0
        while True:
            if self._in_data:
                # The message starts right after DATA's line; an empty one is just ".\r\n".
                if buffer.startswith(b".\r\n", start):
                    end, after = start, start + 3
                else:
                    found = buffer.find(_END_OF_DATA, start)
                    if found < 0:
                        break
                    end, after = found + 2, found + len(_END_OF_DATA)
                _record(self._arrivals, buffer[start:end])
                answers.append(b"250 OK queued\r\n")
                self._in_data, start = False, after
                continue
            found = buffer.find(b"\r\n", start)
            if found < 0:
                break
            verb = buffer[start : start + 4].upper()
            start = found + 2
            if verb == b"EHLO":
                answers.append(_EHLO)
            elif verb == b"DATA":
                answers.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self._in_data = True
            elif verb == b"QUIT":
                answers.append(b"221 Bye\r\n")
                self._transport.write(b"".join(answers))
                self._transport.close()
                return
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                answers.append(b"250 OK\r\n")
            else:
                answers.append(b"502 Command not implemented\r\n")
        self._buffer = buffer[start:]
        if answers:
            self._transport.write(b"".join(answers))


def _aiosmtpd_factory(arrivals: list[tuple[str, float]]) -> Any:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            _record(arrivals, envelope.content)
            return "250 OK"

    handler = Handler()
    return lambda: SMTP(handler, hostname="bench-receiver")


def receiver_main(conn: Any, kind: str) -> None:
    arrivals: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        factory = (
            _aiosmtpd_factory(arrivals) if kind == "aiosmtpd" else (lambda: LeanSmtp(arrivals))
        )
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
        conn.send(server.sockets[0].getsockname()[1])
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "take":
                taken = arrivals[:]
                del arrivals[: len(taken)]
                conn.send(taken)
            else:
                break
        server.close()

    asyncio.run(main())


class Receiver:
    """The main process's handle on the receiver: arrival times per notification id."""

    def __init__(self, kind: str = "lean") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown receiver {kind!r}; one of {', '.join(KINDS)}")
        self.kind = kind
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=receiver_main, args=(child, kind), daemon=True)
        self.process.start()
        if not self._conn.poll(30):
            raise SystemExit("the SMTP receiver did not start")
        self.port: int = self._conn.recv()
        self.arrivals: dict[str, list[float]] = {}
        self.total = 0

    def poll(self) -> None:
        self._conn.send("take")
        for notification_id, at in self._conn.recv():
            self.arrivals.setdefault(notification_id, []).append(at)
            self.total += 1

    def received(self, ids: set[str]) -> int:
        self.poll()
        return sum(1 for i in ids if i in self.arrivals)

    def wait_for(self, ids: set[str], *, stall: float = 30.0) -> None:
        """Until every id arrived, or nothing new arrived for `stall` seconds."""
        last, last_change = -1, time.monotonic()
        while True:
            got = self.received(ids)
            if got >= len(ids):
                return
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > stall:
                return
            time.sleep(0.1)

    def settle(self, seconds: float = 1.0) -> None:
        """Give late duplicates a moment to show up, then collect them."""
        time.sleep(seconds)
        self.poll()

    def stop(self) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


async def smtp_capacity(port: int, count: int, connections: int) -> float:
    """Emails/s the receiver takes from a plain aiosmtplib client (a lower bound)."""
    import aiosmtplib

    message = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: capacity\r\n\r\nHello\r\n"
    per_connection = count // connections

    async def one() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for _ in range(per_connection):
            await client.sendmail("a@b.test", ["c@d.test"], message)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return per_connection * connections / (time.perf_counter() - started)
