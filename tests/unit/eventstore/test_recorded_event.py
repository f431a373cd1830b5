"""RecordedEvent: immutable, compared by value, whether built directly or decoded lazily."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from townhall.platform.eventstore import RecordedEvent


def _event(**changes):
    fields = {
        "id": uuid4(),
        "stream_id": "order-1",
        "version": 1,
        "position": 7,
        "type": "OrderPlaced",
        "data": {"total": 3},
        "metadata": {"correlation_id": "c-1"},
        "recorded_at": datetime(2024, 5, 1, tzinfo=UTC),
        "schema_version": 2,
    }
    return RecordedEvent(**{**fields, **changes})


def test_fields_read_back_and_cannot_be_assigned():
    event = _event()
    assert (event.stream_id, event.version, event.position, event.type) == (
        "order-1",
        1,
        7,
        "OrderPlaced",
    )
    assert event.schema_version == 2 and event.correlation_id == "c-1"
    with pytest.raises(FrozenInstanceError):
        event.version = 2  # type: ignore[misc]


def test_events_compare_hash_and_pickle_by_value():
    event = _event()
    same = _event(id=event.id)
    assert event == same and hash(event) == hash(same)
    assert event != _event(id=event.id, data={"total": 4})
    assert pickle.loads(pickle.dumps(event)) == event
    assert "stream_id='order-1'" in repr(event)
