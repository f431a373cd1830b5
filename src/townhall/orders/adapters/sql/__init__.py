"""The orders module's SQL stores (SQLAlchemy Core, SQLite and PostgreSQL)."""

from townhall.orders.adapters.sql.idempotency import SqlIdempotencyKeys
from townhall.orders.adapters.sql.read_models import (
    SqlOrderSummaries,
    SqlSagaOverviews,
    SqlSales,
)
from townhall.orders.adapters.sql.sagas import SqlChoreographies, SqlSagaStore, SqlTimeline

__all__ = [
    "SqlChoreographies",
    "SqlIdempotencyKeys",
    "SqlOrderSummaries",
    "SqlSagaOverviews",
    "SqlSagaStore",
    "SqlSales",
    "SqlTimeline",
]
