"""The composition root: the only place that picks adapters from settings and wires modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from limits import parse

from townhall import (
    __version__,
    chat,
    feed,
    identity,
    inventory,
    notifications,
    orders,
    payments,
    shipping,
    uploads,
)
from townhall.config import ConfigError, Settings, mask_url
from townhall.platform.auth import TokenCodec, load_or_create_secret
from townhall.platform.clock import SystemClock
from townhall.platform.db import Database
from townhall.platform.eventstore import Projections
from townhall.platform.eventstore import connect as connect_eventstore
from townhall.platform.http import ReadinessProbe, create_edge, current_admin
from townhall.platform.messaging import ConsumerSpec, MessageBus, Subscription
from townhall.platform.messaging import connect as connect_bus
from townhall.platform.messaging.http import dlq_router
from townhall.platform.messaging.worker import select, start_consumers, stop_consumers
from townhall.platform.migrations import migrate
from townhall.platform.modules import Hook, Installed, ModuleSpec, Platform
from townhall.platform.observability import get_logger
from townhall.platform.outbox import OutboxRelay
from townhall.platform.pubsub import PubSub
from townhall.platform.pubsub import connect as connect_pubsub
from townhall.platform.ratelimit import RateLimiter, parse_group_limits

# Every module, in dependency order. Adding a module is one line here.
MODULES: list[ModuleSpec] = [
    identity.module,
    notifications.module,
    inventory.module,
    payments.module,
    shipping.module,
    orders.module,
    uploads.module,
    chat.module,
    feed.module,
]

log = get_logger("townhall.bootstrap")

BUS_CONNECT_TIMEOUT = 15.0


def select_modules(names: Sequence[str] | None) -> list[ModuleSpec]:
    """The specs for `--modules a,b` (all when None), plus the modules they require."""
    known = {spec.name: spec for spec in MODULES}
    if not names:
        return list(MODULES)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError("--modules", f"unknown module {unknown[0]!r}; known: {', '.join(known)}")
    wanted = set(names)
    for spec in reversed(MODULES):  # requirements come earlier in MODULES
        if spec.name in wanted:
            wanted.update(spec.requires)
    return [spec for spec in MODULES if spec.name in wanted]


@dataclass
class Runtime:
    """One process's composition: the platform, the installed modules and the edge."""

    platform: Platform
    modules: dict[str, Installed]
    readiness: dict[str, ReadinessProbe] = field(default_factory=dict)
    rate_limiter: RateLimiter | None = None
    relay: OutboxRelay | None = None
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def hooks_on_start(self) -> list[Hook]:
        return [hook for installed in self.modules.values() for hook in installed.on_start]

    @property
    def consumers(self) -> list[ConsumerSpec]:
        return [spec for installed in self.modules.values() for spec in installed.consumers]

    async def start(self, *, relay: bool = True, groups: Sequence[str] | None = None) -> None:
        """Start the modules' hooks, the consumer groups and projections (all of them, or the
        named ones: a projection is a consumer of the event store, and runs only where it is
        named or where every group runs, not in an edge that leaves its groups to workers)
        and the outbox relay. Consumers first: on the in-process bus, a message published to
        a topic before its groups exist reaches nobody."""
        for hook in self.hooks_on_start:
            await hook()
        projections = self.platform.projections.names
        await self.platform.projections.start(
            None if groups is None else [name for name in groups if name in projections]
        )
        await self.start_consumers(
            None if groups is None else [name for name in groups if name not in projections]
        )
        if relay:
            self.relay = OutboxRelay(
                self.platform.database,
                self.platform.bus,
                linger=self.platform.settings.relay_linger,
            )
            await self.relay.start()

    async def start_consumers(self, groups: Sequence[str] | None = None) -> None:
        try:
            specs = select(self.consumers, groups)
        except ValueError as exc:
            raise ConfigError("worker", str(exc)) from None
        self.subscriptions += await start_consumers(self.platform.bus, specs)

    async def stop(self) -> None:
        # Consumers first (in-flight handlers finish), then the relay, then what they used.
        subscriptions, self.subscriptions = self.subscriptions, []
        try:
            await stop_consumers(subscriptions)
        except Exception:
            log.exception("stopping the consumers failed")
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        for installed in reversed(list(self.modules.values())):
            for hook in installed.on_stop:
                try:
                    await hook()
                except Exception:
                    log.exception("stop hook failed")
        await self.platform.projections.stop()
        await self.platform.eventstore.close()
        await self.platform.pubsub.close()
        await self.platform.bus.close()
        await self.platform.database.dispose()

    def create_app(
        self, *, on_ready: Hook | None = None, consumers: bool = True, relay: bool = True
    ) -> FastAPI:
        """The edge app; its lifespan starts and stops the runtime (consumers and the outbox
        relay optional)."""

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start(relay=relay, groups=None if consumers else [])
            if on_ready is not None:
                await on_ready()
            try:
                yield
            finally:
                await self.stop()

        settings = self.platform.settings
        # Where identity runs, a token whose user does not exist is refused at the edge.
        identity_facade = self.platform.facades.get("identity")
        return create_edge(
            tokens=self.platform.tokens,
            user_exists=identity_facade.exists if identity_facade is not None else None,
            rate_limiter=self.rate_limiter,
            # Routes are matched in order: the modules' (the traffic) before operations'.
            routers=[
                *(router for m in self.modules.values() for router in m.routers),
                dlq_router(self.platform.bus, current_admin),
            ],
            pages=[page for m in self.modules.values() for page in m.pages],
            readiness=self.readiness,
            max_body_bytes=settings.max_body_bytes,
            body_limits={
                prefix: limit
                for m in self.modules.values()
                for prefix, limit in m.body_limits.items()
            },
            cors_origins=settings.cors_origin_list,
            lifespan=lifespan,
            version=__version__,
        )


async def build_platform(settings: Settings, *, custom_plans: bool = False) -> Platform:
    database = Database(settings.database_url, custom_plans=custom_plans)
    await _reachable("TOWNHALL_DATABASE_URL", mask_url(settings.database_url), database.ping)
    secret = (
        settings.secret_key.get_secret_value()
        if settings.secret_key
        else load_or_create_secret(settings.data_dir)
    )
    clock = SystemClock()
    try:
        tokens = TokenCodec(secret, clock, access_ttl=settings.access_token_ttl)
    except ValueError as exc:
        raise ConfigError("TOWNHALL_SECRET_KEY", str(exc)) from None
    eventstore = await connect_eventstore(database, clock=clock)
    try:
        bus = await open_bus(settings)
    except ConfigError:
        await database.dispose()
        raise
    try:
        pubsub = await open_pubsub(settings)
    except ConfigError:
        await bus.close()
        await database.dispose()
        raise
    return Platform(
        settings=settings,
        database=database,
        clock=clock,
        tokens=tokens,
        eventstore=eventstore,
        projections=Projections(eventstore),
        bus=bus,
        pubsub=pubsub,
    )


async def open_pubsub(settings: Settings) -> PubSub:
    """The pub/sub `TOWNHALL_PUBSUB_URL` names; a `ConfigError` naming it when unusable."""
    try:
        return await asyncio.wait_for(connect_pubsub(settings.pubsub_url), BUS_CONNECT_TIMEOUT)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            "TOWNHALL_PUBSUB_URL", f"cannot use {mask_url(settings.pubsub_url)}: {reason}"
        ) from None


async def open_bus(settings: Settings) -> MessageBus:
    """The bus `TOWNHALL_BUS_URL` names; a `ConfigError` naming it when it cannot be used."""
    try:
        return await asyncio.wait_for(connect_bus(settings.bus_url), BUS_CONNECT_TIMEOUT)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            "TOWNHALL_BUS_URL", f"cannot use {mask_url(settings.bus_url)}: {reason}"
        ) from None


def build_rate_limiter(settings: Settings) -> RateLimiter:
    try:
        groups = parse_group_limits(settings.rate_limits)
    except ValueError as exc:
        raise ConfigError("TOWNHALL_RATE_LIMITS", str(exc)) from None
    try:
        ip_limit = parse(settings.rate_limit_ip)
    except ValueError as exc:
        raise ConfigError("TOWNHALL_RATE_LIMIT_IP", str(exc)) from None
    return RateLimiter(groups, ip_limit, settings.redis_url)


async def migrate_database(settings: Settings) -> None:
    """`townhall migrate`: every component's revisions, needing nothing but the database."""
    database = Database(settings.database_url)
    try:
        await _reachable("TOWNHALL_DATABASE_URL", mask_url(settings.database_url), database.ping)
        await migrate(database, [spec.migrations for spec in MODULES if spec.migrations])
    finally:
        await database.dispose()


async def migrate_modules(platform: Platform, specs: Sequence[ModuleSpec]) -> None:
    locations = [spec.migrations for spec in specs if spec.migrations is not None]
    await migrate(platform.database, locations)


async def assemble(
    settings: Settings,
    module_names: Sequence[str] | None = None,
    *,
    run_migrations: bool = True,
    custom_plans: bool = False,
) -> Runtime:
    """Build the adapters once, migrate, and install the selected modules. `custom_plans`:
    see `Database` (a worker process's batch statements want it; the edge's do not)."""
    specs = select_modules(module_names)
    platform = await build_platform(settings, custom_plans=custom_plans)
    try:
        if run_migrations:
            # The schema belongs to the database, not to this process's composition: every
            # module's revisions are known (and applied) whichever modules run here.
            await migrate_modules(platform, MODULES)
        limiter = build_rate_limiter(settings)
        readiness: dict[str, ReadinessProbe] = {
            "database": platform.database.ping,
            "bus": platform.bus.ping,
            # Always: one PING (nothing at all in process); a configured pub/sub that is
            # down is worth seeing before the chat module needs it.
            "pubsub": platform.pubsub.ping,
        }
        if settings.redis_url:
            await _reachable("TOWNHALL_REDIS_URL", mask_url(settings.redis_url), limiter.ping)
            readiness["redis"] = limiter.ping
        modules: dict[str, Installed] = {}
        for spec in specs:
            installed = spec.install(platform)
            modules[spec.name] = installed
            if installed.facade is not None:
                platform.facades[spec.name] = installed.facade
            readiness.update(installed.readiness)
    except BaseException:
        await platform.pubsub.close()
        await platform.bus.close()
        await platform.database.dispose()
        raise
    return Runtime(platform, modules, readiness, limiter)


async def _reachable(variable: str, shown: str, probe: Hook) -> None:
    try:
        await probe()
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(variable, f"cannot reach {shown}: {reason}") from None
