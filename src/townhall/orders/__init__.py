"""Orders: an event-sourced order whose workflow runs as a saga over inventory, payments and
shipping (issue 21). See README.md; `domain` is the aggregate, `saga` the state machine.

Other modules reach it through `townhall.orders.events` (topic `orders`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from townhall.config import ConfigError
from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.outbox import OutboxSagaMessages
from townhall.orders.adapters.prices import InventoryPrices
from townhall.orders.adapters.sql import (
    SqlChoreographies,
    SqlIdempotencyKeys,
    SqlOrderSummaries,
    SqlSagaOverviews,
    SqlSagaStore,
    SqlSales,
    SqlTimeline,
)
from townhall.orders.choreographer import Choreographer, Sagas
from townhall.orders.consumers import SagaTimers, choreography_consumers, saga_consumers
from townhall.orders.domain import SagaMode
from townhall.orders.http import routers
from townhall.orders.ports import PaymentVault
from townhall.orders.queries import OrderViews
from townhall.orders.saga import Timeouts
from townhall.orders.service import Orchestrator, OrderDesk
from townhall.platform.eventstore import Projection
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["Sagas", "module"]


class _NoVault:
    """Orchestration mode in a process without the payments module: no order is placed in
    choreography here, so nothing is ever vaulted."""

    async def vault(
        self, order_id: str, payment_method: str, amount_cents: int, currency: str
    ) -> None:
        raise RuntimeError("choreographed orders are placed only where payments is installed")


def _vault(platform: Platform, facade: type[PaymentVault], mode: SagaMode) -> PaymentVault:
    """Payments' vault, which a process placing choreographed orders must run (the card goes
    there synchronously). In orchestration mode the orders module needs no payments module."""
    try:
        return platform.facade(facade)
    except LookupError:
        if mode is SagaMode.CHOREOGRAPHY:
            raise ConfigError(
                "TOWNHALL_SAGA_MODE",
                "choreography places orders through payments' vault: run the payments module "
                "in the process that runs orders (e.g. --modules orders,payments)",
            ) from None
        return _NoVault()


def _install(platform: Platform) -> Installed:
    # Here, not at the top: inventory and payments import `orders.events`, which runs this
    # package first.
    from townhall.inventory import InventoryFacade
    from townhall.payments import PaymentsFacade

    settings, database, clock = platform.settings, platform.database, platform.clock
    step = timedelta(seconds=settings.orders_step_timeout)
    orchestrator = Orchestrator(
        database,
        EventStoreOrders(platform.eventstore, snapshot_every=settings.orders_snapshot_every),
        SqlSagaStore(),
        SqlTimeline(),
        OutboxSagaMessages(),
        clock,
        timeouts=Timeouts(step, step, step, step),
    )
    choreographer = Choreographer(
        database,
        EventStoreOrders(platform.eventstore, snapshot_every=settings.orders_snapshot_every),
        SqlChoreographies(),
        SqlTimeline(),
        OutboxSagaMessages(),
        _vault(platform, PaymentsFacade, SagaMode(settings.saga_mode)),
        clock,
        deadline=timedelta(seconds=settings.orders_choreography_timeout),
    )
    # New orders run in the configured mode; running ones finish in theirs, so both groups run.
    sagas = Sagas(SagaMode(settings.saga_mode), orchestrator, choreographer)
    prices = InventoryPrices(platform.facade(InventoryFacade))
    desk = OrderDesk(database, sagas, prices, SqlIdempotencyKeys(), clock)
    timers = SagaTimers(orchestrator)
    # The read models: projections of the orders' events, run by the platform with the process.
    summaries, sales = SqlOrderSummaries(), SqlSales()
    for read_model in (summaries, sales):
        platform.projections.register(
            Projection(read_model.name, read_model.project, read_model.reset)
        )
    views = OrderViews(database, summaries, sales, SqlSagaOverviews(), SqlTimeline(), clock)
    return Installed(
        routers=routers(desk, orchestrator, views),
        facade=sagas,
        consumers=[*saga_consumers(orchestrator), *choreography_consumers(choreographer)],
        on_start=[timers.start],
        on_stop=[timers.stop],
    )


module = ModuleSpec(
    name="orders",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity", "inventory"),
)
