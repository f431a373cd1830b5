from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from townhall.platform.heap import settle_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_live_objects_are_frozen_and_start_up_garbage_is_collected_first() -> None:
    kept = [Node() for _ in range(20_000)]
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    gone = weakref.ref(a)
    del a, b

    frozen = settle_heap()

    assert gone() is None  # collected, not frozen for good
    assert frozen >= len(kept) and gc.get_freeze_count() == frozen
    assert not any(obj is kept[0] for obj in gc.get_objects(generation=2))  # skipped from now on
