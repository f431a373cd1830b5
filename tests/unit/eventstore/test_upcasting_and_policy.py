"""Pure parts of the event store: the upcaster chain and the snapshot policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townhall.platform.eventstore import SnapshotPolicy, Upcasters, VersionConflict
from townhall.platform.eventstore.ports import NO_STREAM
from townhall.platform.eventstore.snapshots import stream_type


def test_upcasters_chain_from_the_stored_version_to_the_current_one():
    upcasters = Upcasters()

    @upcasters.upcaster("OrderPlaced", 2)
    def add_currency(data):
        return {**data, "currency": "EUR"}

    upcasters.register("OrderPlaced", 1, lambda d: {"total": d["amount"]})
    assert upcasters.current_version("OrderPlaced") == 3
    assert upcasters.current_version("OrderPaid") == 1
    assert upcasters.upcast("OrderPlaced", 1, {"amount": 3}) == (
        3,
        {"total": 3, "currency": "EUR"},
    )
    assert upcasters.upcast("OrderPlaced", 3, {"total": 1}) == (3, {"total": 1})


def test_a_missing_step_in_the_chain_is_an_error_not_a_silent_pass():
    upcasters = Upcasters()
    upcasters.register("OrderPlaced", 2, lambda d: d)
    with pytest.raises(LookupError, match="from v1"):
        upcasters.upcast("OrderPlaced", 1, {})


def test_registering_the_same_step_twice_is_refused():
    upcasters = Upcasters()
    upcasters.register("A", 1, lambda d: d)
    with pytest.raises(ValueError):
        upcasters.register("A", 1, lambda d: d)


def test_stream_type_is_the_stream_id_before_the_first_dash():
    assert stream_type("order-42") == "order"
    assert stream_type("order-42-x") == "order"
    assert stream_type("singleton") == "singleton"


@given(every=st.integers(1, 50), old=st.integers(0, 500), appended=st.integers(1, 120))
def test_a_snapshot_is_due_exactly_when_an_append_crosses_a_multiple(every, old, appended):
    policy = SnapshotPolicy(every=1000, per_type={"order": every})
    new = old + appended
    crossed = any(v % every == 0 for v in range(old + 1, new + 1))
    assert policy.due("order-1", old, new) is crossed


def test_an_interval_of_zero_turns_snapshots_off():
    assert not SnapshotPolicy(every=0).due("cart-1", 0, 10_000)


def test_a_version_conflict_message_names_stream_expected_and_actual():
    assert str(VersionConflict("order-1", NO_STREAM, 4)) == (
        "stream 'order-1': expected version no stream, actual 4"
    )
