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
    SqlChoreographies,
    SqlIdempotencyKeys,
    SqlSagaStore,
    SqlTimeline,
)
from townhall.orders.choreographer import Choreographer, Sagas
from townhall.orders.consumers import SagaTimers, choreography_consumers, saga_consumers
from townhall.orders.domain import SagaMode
from townhall.orders.http import routers
from townhall.orders.saga import Timeouts
from townhall.orders.service import Orchestrator, OrderDesk
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["Sagas", "module"]


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
        platform.facade(PaymentsFacade),
        clock,
        deadline=timedelta(seconds=settings.orders_choreography_timeout),
    )
    # New orders run in the configured mode; running ones finish in theirs, so both groups run.
    sagas = Sagas(SagaMode(settings.saga_mode), orchestrator, choreographer)
    prices = InventoryPrices(platform.facade(InventoryFacade))
    desk = OrderDesk(database, sagas, prices, SqlIdempotencyKeys(), clock)
    timers = SagaTimers(orchestrator)
    return Installed(
        routers=routers(desk, orchestrator),
        facade=sagas,
        consumers=[*saga_consumers(orchestrator), *choreography_consumers(choreographer)],
        on_start=[timers.start],
        on_stop=[timers.stop],
    )


module = ModuleSpec(
    name="orders",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity", "inventory", "payments"),
)
