"""The handle of an open database transaction, as use cases and ports see it.

A service opens a unit of work and hands the handle to every store it writes through, so
their writes commit or roll back together. It never looks inside: what the handle is (today
the SQLAlchemy connection `Database.transaction()` yields) belongs to the adapters, which
turn it back into their own type (`townhall.platform.db.connection`). So a service and its
ports import no database library, and a store can move to another technology without a
service noticing.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Transaction(Protocol):
    """A transaction the caller holds open on a database; ports only pass it through.

    Opaque on purpose: there is nothing to call on it. Writes made with it commit or roll
    back with the caller's work.
    """


class Transactions(Protocol):
    """Where a use case opens its units of work; `townhall.platform.db.Database` is one."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: committed on exit, rolled back on an exception."""
        ...

    def connect(self) -> AbstractAsyncContextManager[Transaction]:
        """A handle for reads only; nothing written with it is guaranteed to be kept."""
        ...
