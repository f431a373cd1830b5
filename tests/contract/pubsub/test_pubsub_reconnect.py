"""Redis and NATS pub/sub restore every subscription by themselves after their server is
SIGKILLed and restarted (a private server on its own port); ping says down meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from support.brokers import PrivateServer
from townhall.platform.pubsub import Message, connect

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_subscriptions_come_back_after_a_server_restart(kind, tmp_path: Path):
    if kind == "redis":
        server = PrivateServer.redis(tmp_path, durable=False)
    else:
        server = PrivateServer.nats(tmp_path)
    await server.start()
    suffix = "/0" if kind == "redis" else ""
    url = f"{kind}://127.0.0.1:{server.port}{suffix}?prefix=restart&reconnect_wait=0.1&timeout=1"
    try:
        gateway, publisher = await connect(url), await connect(url)
        got: list[Message] = []

        async def record(message: Message) -> None:
            got.append(message)

        for room in ("a", "b", "c"):
            await gateway.subscribe(room, record)
        await server.kill()
        deadline = time.monotonic() + 10
        while True:  # ping fails while the server is down
            try:
                await gateway.ping()
            except Exception:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await gateway.subscribe("d", record)  # made while down, active once back
        await server.start()
        started = time.monotonic()
        for room in ("a", "b", "c", "d"):
            while not any(m.channel == room for m in got):
                assert time.monotonic() - started < 10, f"{room} not restored"
                try:
                    await publisher.publish(room, room.encode())
                except Exception:
                    pass
                await asyncio.sleep(0.05)
        await gateway.ping()
        await gateway.close()
        await publisher.close()
    finally:
        await server.kill()
