"""`townhall dlq list|replay` as a Typer sub-app, and `townhall relay`'s body. The lead mounts
them: `app.add_typer(dlq_app(connect_bus), name="dlq")`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import typer

from townhall.platform.db import Database
from townhall.platform.heap import settle_heap
from townhall.platform.messaging.ports import MessageBus
from townhall.platform.outbox import OutboxRelay

BusFactory = Callable[[], Awaitable[MessageBus]]

IN_PROCESS_DLQ = (
    "the bus is the in-process one (memory://): its dead letters live in the memory of the "
    "`townhall serve` process, which this command cannot read; ask the running server: "
    "GET /api/v1/admin/dlq?topic=TOPIC&group=GROUP (replay: POST /api/v1/admin/dlq/replay), "
    "or set TOWNHALL_BUS_URL to a broker"
)


async def _dlq_bus(connect_bus: BusFactory) -> MessageBus:
    """The bus whose dead letters this process can read; exit 2 on the in-process bus (its
    dead letters are in another process's memory: listing them here would say 0)."""
    bus = await connect_bus()
    if bus.in_process:
        await bus.close()
        typer.echo(f"error: {IN_PROCESS_DLQ}", err=True)
        raise typer.Exit(2)
    return bus


def dlq_app(connect_bus: BusFactory) -> typer.Typer:
    app = typer.Typer(help="Dead letters: list and replay.", no_args_is_help=True)

    @app.command("list")
    def list_letters(
        topic: str,
        group: str = typer.Option(..., "--group", "-g"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List the dead letters of GROUP on TOPIC."""

        async def run() -> None:
            bus = await _dlq_bus(connect_bus)
            try:
                letters = await bus.dead_letters(topic, group)
            finally:
                await bus.close()
            for letter in letters:
                row = {
                    "id": letter.id,
                    "type": letter.envelope.type if letter.envelope else None,
                    "key": letter.envelope.key if letter.envelope else None,
                    "attempts": letter.attempts,
                    "failed_at": letter.failed_at.isoformat(),
                    "error": letter.error,
                }
                if as_json:
                    typer.echo(json.dumps(row))
                else:
                    typer.echo(
                        f"{row['id']}  {row['type']}  key={row['key']}  attempts={row['attempts']}"
                        f"  {row['failed_at']}  {row['error']}"
                    )
            if not as_json:
                typer.echo(f"{len(letters)} dead letter(s)")

        asyncio.run(run())

    @app.command("replay")
    def replay(
        topic: str,
        group: str = typer.Option(..., "--group", "-g"),
        ids: list[str] = typer.Option(None, "--id", help="Replay only these (repeatable)."),
    ) -> None:
        """Put dead letters back on TOPIC for GROUP (all of them unless --id is given)."""

        async def run() -> int:
            bus = await _dlq_bus(connect_bus)
            try:
                return await bus.replay(topic, group, ids or None)
            finally:
                await bus.close()

        typer.echo(f"replayed {asyncio.run(run())}")

    return app


async def run_relay(database: Database, connect_bus: BusFactory, **options: float) -> None:
    """The body of `townhall relay`: relay the outbox until SIGTERM/SIGINT."""
    import signal

    bus = await connect_bus()
    relay = OutboxRelay(database, bus, **options)  # type: ignore[arg-type]
    settle_heap()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    try:
        await relay.run()
    finally:
        await bus.close()
