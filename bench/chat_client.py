"""The load generator of `bench/chat.py`: one process holding many WebSocket client connections,
driven by its parent over a pipe.

The clients are a bare RFC 6455 client on an asyncio `Protocol` (no library): it writes the
upgrade request, then reads unmasked server frames and writes masked client frames with an
all-zero mask key (legal, and it spares the XOR; servers do not check the key). No extension
is offered, so no compression on either system. It costs a few microseconds per frame, so on
2 shared cores the load generator takes as little CPU from the servers as Python allows.

Two dialects over it, one per system:
- `townhall`: `/api/v1/chat/ws?token=...`, JSON frames (`join`, `send`, `ping`), answering the
  server's ping frames;
- `socketio`: `/socket.io/?EIO=4&transport=websocket`, engine.io packets (`0` open, `2` ping ->
  `3` pong) carrying socket.io packets (`40` connect, `42["event",...]`, `421[...]` with an ack
  id answered by `431[...]`).

A message body is `@@<time_ns 19 digits>:<sender 6 digits>:<n>`; a receiver finds `@@` in any
frame and reads the send time and the sender from fixed offsets, so counting a delivery and its
latency needs no JSON decoding. The send time is `time.time_ns()` (the wall clock, one for every
process of the machine; `perf_counter_ns` is per process).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

MARK = b"@@"
TS_DIGITS = 19
SENDER_DIGITS = 6


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame, FIN set, with the all-zero mask key."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + b"\x00\x00\x00\x00" + payload


def body_of(sender: int, n: int, at_ns: int) -> str:
    return f"@@{at_ns:019d}:{sender:06d}:{n}"


class Stats:
    """What one process saw in a measured phase."""

    def __init__(self) -> None:
        self.window = (0, 0)  # ns: deliveries of messages sent in [start, end) count
        self.latencies = array("q")  # ns, one per delivery of a message sent in the window
        self.outside = 0  # deliveries of messages sent outside the window
        self.sent_in_window = 0
        self.sent = 0
        self.acks = 0
        self.errors: list[str] = []
        self.closes: list[str] = []
        self.last_delivery = 0

    def delivered(self, payload: bytes, now: int) -> int:
        """Count a delivery in `payload` (one frame); returns its sender, or -1."""
        at = payload.find(MARK)
        if at < 0:
            return -1
        start = at + 2
        sent_ns = int(payload[start : start + TS_DIGITS])
        sender = int(payload[start + TS_DIGITS + 1 : start + TS_DIGITS + 1 + SENDER_DIGITS])
        low, high = self.window
        if low <= sent_ns < high:
            self.latencies.append(now - sent_ns)
            self.last_delivery = now
        else:
            self.outside += 1
        return sender


class Client(asyncio.Protocol):
    """One WebSocket connection."""

    def __init__(self, worker: Worker, index: int, dialect: str) -> None:
        self.worker, self.index, self.dialect = worker, index, dialect
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.closed = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: tuple[bytes, asyncio.Future[bytes]] | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(ConnectionError("closed"))
        self.worker.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:12])
            if not status.startswith(b"HTTP/1.1 101"):
                self.fail(f"upgrade refused: {bytes(buffer[:200])!r}")
                return
            del buffer[: end + 4]
            self.upgraded = True
            if self.dialect == "townhall":
                self.send(b'{"op":"ping"}')  # the pong says the token was taken
        now = time.time_ns()
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - offset < 4:
                    break
                length, head = (buffer[offset + 2] << 8) | buffer[offset + 3], 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, head = struct.unpack_from("!Q", buffer, offset + 2)[0], 10
            if size - offset < head + length:
                break
            payload = bytes(buffer[offset + head : offset + head + length])
            offset += head + length
            self.frame_received(first & 0x0F, payload, now)
        if offset:
            del buffer[:offset]

    # --- frames ---

    def send(self, payload: bytes, opcode: int = 1) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(payload, opcode))

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def frame_received(self, opcode: int, payload: bytes, now: int) -> None:
        if opcode == 9:  # ping
            self.send(payload, 0xA)
            return
        if opcode == 8:  # close
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.worker.stats.closes.append(f"{code} {payload[2:60]!r}")
            self.fail(f"closed by the server: {code} {payload[2:200]!r}")
            return
        if opcode != 1:
            return
        stats = self.worker.stats
        sender = stats.delivered(payload, now)
        if sender >= 0:
            if sender == self.index or sender == self.index ^ 1:
                gate = self.worker.gates.get(sender)
                if gate is not None:
                    gate()
            return
        if self.dialect == "socketio":
            if payload == b"2":  # engine.io ping
                self.send(b"3")
                return
            if payload[:1] == b"0":  # engine.io open: connect to the namespace
                self.send(b"40")
                return
            if payload[:2] == b"40" and not self.ready.done():
                self.ready.set_result(None)
                return
        elif not self.ready.done() and b'"pong"' in payload:
            self.ready.set_result(None)
            return
        if b'"ack"' in payload[:20]:
            stats.acks += 1
            return
        if b'"error"' in payload[:20] or payload[:2] == b"44":
            if len(stats.errors) < 20:
                stats.errors.append(payload[:300].decode(errors="replace"))
        if self.waiting is not None and self.waiting[0] in payload:
            self.waiting[1].set_result(payload)
            self.waiting = None

    async def request(self, payload: bytes, answer: bytes) -> bytes:
        """Send a frame and wait (60 s at most) for one containing `answer`."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting = (answer, future)
        self.send(payload)
        return await asyncio.wait_for(future, 60.0)

    async def join(self, room: str) -> None:
        if self.dialect == "townhall":
            await self.request(json.dumps({"op": "join", "room": room}).encode(), b'"joined"')
        else:
            await self.request(b"421" + json.dumps(["join", room]).encode(), b"431")

    def send_message(self, room: str, body: str) -> None:
        if self.dialect == "townhall":
            self.send(
                b'{"op":"send","room":'
                + json.dumps(room).encode()
                + b',"body":"'
                + body.encode()
                + b'","client_id":"c'
                + body[2:].replace(":", "-").encode()
                + b'"}'
            )
        else:
            self.send(b'42["send",' + json.dumps({"room": room, "body": body}).encode() + b"]")


class Worker:
    """The parent's commands, one at a time, answered with a dict each."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.clients: dict[int, Client] = {}
        self.lost = 0
        self.stats = Stats()
        # sender index -> called when its message reaches the sender or its partner (index ^ 1,
        # in this process, on the other gateway)
        self.gates: dict[int, Callable[[], None]] = {}

    def connection_lost(self, client: Client) -> None:
        if self.clients.get(client.index) is client:
            self.lost += 1

    async def open(self, index: int, dialect: str, port: int, token: str) -> Client:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: Client(self, index, dialect), "127.0.0.1", port
        )
        key = base64.b64encode(os.urandom(16)).decode()
        if dialect == "townhall":
            path = f"/api/v1/chat/ws?token={token}"
        else:
            path = "/socket.io/?EIO=4&transport=websocket"
        assert client.transport is not None
        client.transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(client.ready, 60)
        return client

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        """Open every connection of `command["clients"]` ([index, port, token, room|None]),
        `parallel` at a time, then join the rooms."""
        dialect = command["dialect"]
        gate = asyncio.Semaphore(command.get("parallel", 100))
        failures: list[str] = []

        async def one(index: int, port: int, token: str, room: str | None) -> None:
            async with gate:
                try:
                    client = await self.open(index, dialect, port, token)
                    self.clients[index] = client
                    if room is not None:
                        await client.join(room)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])

        started = time.perf_counter()
        await asyncio.gather(*(one(*spec) for spec in command["clients"]))
        return {
            "connected": len(self.clients) - sum(c.closed for c in self.clients.values()),
            "failed": len(failures),
            "failures": failures[:5],
            "seconds": time.perf_counter() - started,
        }

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send from `senders` to `room`: closed loop (each sender keeps `window` messages out
        until its own copy comes back) or open loop (`rate` per sender, due times fixed in
        advance, the body's time the due time). Deliveries count for messages sent in
        [start + warmup, start + warmup + seconds); then wait until quiet."""
        self.stats = stats = Stats()
        room, start_ns = command["room"], command["start_ns"]
        warm_ns = start_ns + int(command["warmup"] * 1e9)
        end_ns = warm_ns + int(command["seconds"] * 1e9)
        stats.window = (warm_ns, end_ns)
        senders = [self.clients[i] for i in command["senders"] if i in self.clients]
        loop = asyncio.get_running_loop()

        def sent(at_ns: int) -> None:
            stats.sent += 1
            if warm_ns <= at_ns < end_ns:
                stats.sent_in_window += 1

        async def closed_loop(client: Client) -> None:
            counter = 0
            wake = asyncio.Event()
            out = 0.0  # messages whose copies have not both come back

            def copy_back() -> None:
                nonlocal out
                out -= 0.5  # one of two copies: the sender's own, and its partner's
                wake.set()

            self.gates[client.index] = copy_back
            while time.time_ns() < end_ns and not client.closed:
                while out < command["window"]:
                    now = time.time_ns()
                    if now >= end_ns:
                        break
                    counter += 1
                    out += 1
                    client.send_message(room, body_of(client.index, counter, now))
                    sent(now)
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 5.0)
                except TimeoutError:
                    out = 0  # lost copies: start the window again
            self.gates.pop(client.index, None)

        async def open_loop(client: Client, offset: float) -> None:
            interval_ns = int(1e9 / command["rate"])
            due = start_ns + int(offset * interval_ns)
            counter = 0
            while due < end_ns and not client.closed:
                delay = (due - time.time_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                counter += 1
                client.send_message(room, body_of(client.index, counter, due))
                sent(due)
                due += interval_ns

        delay = (start_ns - time.time_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        if command["mode"] == "closed":
            tasks = [closed_loop(c) for c in senders]
        else:
            count = max(1, command["total_senders"])
            tasks = [
                open_loop(c, (command["sender_offset"] + n) / count) for n, c in enumerate(senders)
            ]
        await asyncio.gather(*tasks)
        # Until no delivery of the window came for `quiet` seconds (or `drain` passed).
        quiet, deadline = command.get("quiet", 1.0), time.monotonic() + command.get("drain", 20)
        seen = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)
            if len(stats.latencies) == seen:
                break
            seen = len(stats.latencies)
        del loop
        return {
            "latencies": stats.latencies.tobytes(),
            "outside": stats.outside,
            "sent": stats.sent,
            "sent_in_window": stats.sent_in_window,
            "acks": stats.acks,
            "errors": stats.errors,
            "closes": stats.closes[:5],
            "lost": self.lost,
            "last_delivery": stats.last_delivery,
            "cpu": cpu_seconds(),
        }

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        """Every open connection joins `room`, `parallel` at a time."""
        gate = asyncio.Semaphore(command.get("parallel", 100))
        failures: list[str] = []

        async def one(client: Client) -> None:
            async with gate:
                try:
                    await client.join(command["room"])
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}"[:300])

        await asyncio.gather(*(one(c) for c in self.clients.values() if not c.closed))
        if failures:
            raise RuntimeError(f"{len(failures)} joins failed: {failures[:3]}")
        return {"joined": len(self.clients)}

    async def close(self, command: dict[str, Any]) -> dict[str, Any]:
        """Leave `room` first (Townhall: no member is told of the others going offline), then
        close every connection."""
        room = command.get("room")
        if room is not None:
            for client in self.clients.values():
                if client.dialect == "townhall":
                    client.send(json.dumps({"op": "leave", "room": room}).encode())
            await asyncio.sleep(0.5)
        for client in self.clients.values():
            if client.transport is not None:
                client.transport.close()
        self.clients.clear()
        await asyncio.sleep(0.5)
        return {"closed": True}

    async def status(self, command: dict[str, Any]) -> dict[str, Any]:
        return {
            "open": sum(not c.closed for c in self.clients.values()),
            "lost": self.lost,
            "closes": self.stats.closes[:5],
            "cpu": cpu_seconds(),
        }

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Read in a thread: a pipe watched by the loop turns non-blocking, and a large
            # answer (every latency of a run) would then fail to write.
            command = await loop.run_in_executor(None, self.conn.recv)
            if command["op"] == "exit":
                return
            try:
                answer = await getattr(self, command["op"])(command)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            self.conn.send(answer)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(conn: Any) -> None:
    """A child process's entry point (multiprocessing, spawn)."""
    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import gc

    gc.disable()  # its few cycles wait for the exit; a collection would stall deliveries
    asyncio.run(Worker(conn).serve())
    sys.exit(0)
