"""Orders: an event-sourced order whose workflow runs as a saga over inventory, payments and
shipping (issue 21). See README.md; `domain` is the aggregate, `saga` the state machine.

Other modules reach it through `townhall.orders.events` (topic `orders`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.outbox import OutboxSagaMessages
from townhall.orders.adapters.prices import InventoryPrices
from townhall.orders.adapters.sql import (
    SqlIdempotencyKeys,
    SqlOrderSummaries,
    SqlSagaOverviews,
    SqlSagaStore,
    SqlSales,
    SqlTimeline,
)
from townhall.orders.consumers import SagaTimers, saga_consumers
from townhall.orders.http import routers
from townhall.orders.queries import OrderViews
from townhall.orders.saga import Timeouts
from townhall.orders.service import Orchestrator, OrderDesk
from townhall.platform.eventstore import Projection
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["module"]


def _install(platform: Platform) -> Installed:
    # Here, not at the top: inventory imports `orders.events`, which runs this package first.
    from townhall.inventory import InventoryFacade

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
    prices = InventoryPrices(platform.facade(InventoryFacade))
    desk = OrderDesk(database, orchestrator, prices, SqlIdempotencyKeys(), clock)
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
        consumers=saga_consumers(orchestrator),
        on_start=[timers.start],
        on_stop=[timers.stop],
    )


module = ModuleSpec(
    name="orders",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity", "inventory"),
)
