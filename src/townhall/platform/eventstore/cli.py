"""`townhall projections ...`: a Typer sub-app the main CLI mounts.

The commands get their registry from a factory the composition root passes in, so this file
knows nothing about settings or which modules registered projections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import typer

from townhall.platform.eventstore.projections import Projections, UnknownProjection

RegistryFactory = Callable[[], AbstractAsyncContextManager[Projections]]


def projections_cli(open_registry: RegistryFactory) -> typer.Typer:
    """The `projections` command group; `open_registry()` yields a ready registry."""
    app = typer.Typer(help="Read models fed by the event store: rebuild and status.")

    @app.command()
    def rebuild(name: str = typer.Argument(..., help="The projection to rebuild.")) -> None:
        """Drop a projection's state and checkpoint, then replay every event from zero."""

        async def run() -> int:
            async with open_registry() as registry:
                return await registry.rebuild(name)

        try:
            replayed = asyncio.run(run())
        except UnknownProjection as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        typer.echo(f"rebuilt {name}: {replayed} events replayed")

    @app.command()
    def status() -> None:
        """List each projection with its checkpoint and lag."""

        async def run() -> list[tuple[str, int, int, int]]:
            async with open_registry() as registry:
                return [(s.name, s.checkpoint, s.head, s.lag) for s in await registry.status()]

        rows = asyncio.run(run())
        width = max([len("projection"), *(len(row[0]) for row in rows)])
        typer.echo(f"{'projection':<{width}}  {'checkpoint':>10}  {'head':>10}  {'lag':>10}")
        for name, checkpoint, head, lag in rows:
            typer.echo(f"{name:<{width}}  {checkpoint:>10}  {head:>10}  {lag:>10}")

    return app
