"""Orders test helpers: a placed order and the saga driven by one function."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from townhall.orders.domain import Address, Order, OrderLine, SagaMode, fold, place
from townhall.platform.clock import FrozenClock

T0 = datetime(2026, 12, 4, 9, 0, 0, 123456, tzinfo=UTC)
ADDRESS = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
LINES = (OrderLine("tee-m", 2, 1500), OrderLine("ticket-2027", 1, 4000))
CARD = "4242424242424242"


def placed_order(clock: FrozenClock | None = None) -> Order:
    event = place(
        buyer_id="buyer-1",
        lines=LINES,
        currency="EUR",
        shipping_address=ADDRESS,
        saga_mode=SagaMode.ORCHESTRATION,
        clock=clock or FrozenClock(T0),
    )
    order = fold([event])
    assert order is not None
    return order


# --- the saga mode every end-to-end saga test runs in ------------------------------------------

# The modes the saga scenarios run in: a mode joins this list once it is wired (issue 21's
# choreography adds "choreography"); each test passes it on as `saga_mode` / TOWNHALL_SAGA_MODE.
SAGA_MODES = ["orchestration", "choreography"]


@pytest.fixture(scope="module", params=SAGA_MODES)
def saga_mode(request: pytest.FixtureRequest) -> str:
    """The saga mode of the app or processes a test starts (`Settings.saga_mode`)."""
    return str(request.param)
