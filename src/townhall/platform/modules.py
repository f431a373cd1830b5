"""How a module plugs in: one `ModuleSpec` in its `__init__.py`, read by the composition root.

A module names itself, says where its migrations are, and gives a factory that receives the
`Platform` (the adapters `bootstrap` built once) and returns what the process runs: HTTP
routers, consumer groups, and start/stop hooks for anything long-lived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from townhall.platform.clock import Clock
from townhall.platform.db import Database
from townhall.platform.eventstore import Projections, SqlEventStore
from townhall.platform.messaging import ConsumerSpec, MessageBus
from townhall.platform.pubsub import PubSub

if TYPE_CHECKING:
    from townhall.config import Settings
    from townhall.platform.auth import TokenCodec

Hook = Callable[[], Awaitable[None]]
F = TypeVar("F")


@dataclass
class Platform:
    """The shared adapters, built once per process by `bootstrap` and handed to every module."""

    settings: Settings
    database: Database
    clock: Clock
    tokens: TokenCodec
    eventstore: SqlEventStore
    bus: MessageBus
    pubsub: PubSub  # ephemeral broadcast (chat relay, presence); nothing on it is durable
    # Modules register their read models here while installing; they run with the process.
    projections: Projections
    # Facades modules offer each other, by module name (filled in as modules are installed).
    facades: dict[str, Any] = field(default_factory=dict)

    def facade(self, kind: type[F]) -> F:
        """The installed facade of class `kind`, the class a module's `__init__` exports (for
        example `IdentityFacade`): typed, where `facades[name]` is not."""
        for facade in self.facades.values():
            if isinstance(facade, kind):
                return facade
        raise LookupError(
            f"no installed module offers a {kind.__name__}: name its module in `requires`"
        )


@dataclass
class Installed:
    """What an installed module contributes to the process."""

    routers: Sequence[Any] = ()  # fastapi.APIRouter, mounted under /api/v1
    pages: Sequence[Any] = ()  # fastapi.APIRouter, mounted at the root (HTML pages)
    # Consumer groups: `serve` runs them all, `townhall worker GROUP` runs the named ones.
    consumers: Sequence[ConsumerSpec] = ()
    facade: Any = None  # the object other modules may call (see the module's __init__)
    on_start: Sequence[Hook] = ()
    on_stop: Sequence[Hook] = ()
    # Probes for /readyz beyond the platform's own: name -> coroutine that raises when down.
    readiness: dict[str, Hook] = field(default_factory=dict)
    # Request body limits of the module's own, by path prefix (under /api/v1), replacing the
    # edge's `max_body_bytes` there (uploads take files larger than any JSON body).
    body_limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    install: Callable[[Platform], Installed]
    migrations: Path | None = None
    # Modules whose facades this one needs installed first.
    requires: tuple[str, ...] = ()
