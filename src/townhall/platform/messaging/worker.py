"""Runs consumer groups as a process (`townhall worker NAME...`) or inside `townhall serve`.
SIGTERM (or SIGINT) drains: fetching stops, in-flight handlers finish, the rest goes back."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

from townhall.platform.messaging.engine import Member
from townhall.platform.messaging.ports import ConsumerSpec, MessageBus, Subscription


def select(specs: Sequence[ConsumerSpec], names: Sequence[str] | None) -> list[ConsumerSpec]:
    """The specs whose group (or `topic/group`) is named; all of them when `names` is None."""
    if names is None:
        return list(specs)
    known = {s.group for s in specs} | {f"{s.topic}/{s.group}" for s in specs}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"no consumer group named {', '.join(unknown)}; known: {sorted(known)}")
    return [s for s in specs if s.group in names or f"{s.topic}/{s.group}" in names]


async def start_consumers(bus: MessageBus, specs: Sequence[ConsumerSpec]) -> list[Subscription]:
    return [
        await bus.subscribe(
            spec.topic,
            spec.group,
            spec.handler_factory(),
            prefetch=spec.prefetch,
            max_attempts=spec.max_attempts,
        )
        for spec in specs
    ]


async def stop_consumers(subscriptions: Sequence[Subscription]) -> None:
    await asyncio.gather(*(sub.stop() for sub in subscriptions))


async def run_consumers(
    bus: MessageBus, specs: Sequence[ConsumerSpec], stop: asyncio.Event
) -> None:
    """Consume until `stop` is set, then drain."""
    subscriptions = await start_consumers(bus, specs)
    try:
        await stop.wait()
    finally:
        await stop_consumers(subscriptions)


async def run_worker(
    connect_bus: Callable[[], Awaitable[MessageBus]],
    specs: Sequence[ConsumerSpec],
    names: Sequence[str] | None,
) -> None:
    """The body of `townhall worker NAME...`: run the named groups until SIGTERM/SIGINT."""
    chosen = select(specs, names)
    bus = await connect_bus()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_consumers(bus, chosen, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await bus.close()


__all__ = ["Member", "run_consumers", "run_worker", "select", "start_consumers", "stop_consumers"]
