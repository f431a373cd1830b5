"""The saga timeline's causal order: as recorded, except that an entry recorded before its
cause comes right after it (what several writers, as in choreography, can record)."""

from __future__ import annotations

from support.orders import T0
from townhall.orders.ports import TimelineEntry
from townhall.orders.queries import causal_order


def entry(message_id: str, cause: str | None = None) -> TimelineEntry:
    return TimelineEntry("o", T0, "orders", "t", message_id, "o", cause, "sent")


def ids(entries: list[TimelineEntry]) -> list[str]:
    return [e.message_id for e in entries]


def test_entries_recorded_after_their_causes_keep_the_recorded_order():
    recorded = [entry("a"), entry("b", "a"), entry("c"), entry("d", "b"), entry("e", "zz")]
    assert causal_order(recorded) == recorded


def test_an_entry_recorded_before_its_cause_comes_right_after_it_with_what_it_caused():
    recorded = [entry("d", "c"), entry("a"), entry("e", "d"), entry("c", "a"), entry("f")]
    assert ids(causal_order(recorded)) == ["a", "c", "d", "e", "f"]


def test_a_repeated_message_and_a_cycle_of_causes_lose_no_entry():
    repeated = [entry("a"), entry("b", "a"), entry("b", "a")]
    assert ids(causal_order(repeated)) == ["a", "b", "b"]
    cycle = [entry("x", "y"), entry("y", "x"), entry("z")]
    assert ids(causal_order(cycle)) == ["z", "x", "y"]
    assert causal_order([]) == []
