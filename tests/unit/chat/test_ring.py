"""The hash ring's properties, over random shard sets and 10,000 room ids."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.chat.ring import HashRing
from townhall.platform.ids import new_id_str

KEYS = [f"room-{n}" for n in range(10_000)]
shard_names = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=1,
    max_size=10,
    unique=True,
)
# Tolerances for 256 vnodes, 10k keys (measured spread stays well inside them).
MOVE_TOLERANCE = 0.4  # moved fraction within 1/(N+1) * (1 ± 0.4)
BALANCE_TOLERANCE = 0.4  # every shard's share within 1/N * (1 ± 0.4)


@settings(max_examples=20, deadline=None)
@given(shard_names)
def test_deterministic_every_key_on_a_present_shard_and_balanced(shards):
    ring, again = HashRing(shards), HashRing(reversed(shards))
    owners = [ring.shard_for(key) for key in KEYS]
    assert owners == [again.shard_for(key) for key in KEYS]
    assert set(owners) <= set(shards)
    counts = Counter(owners)
    fair = len(KEYS) / len(shards)
    for shard in shards:
        assert abs(counts[shard] - fair) <= BALANCE_TOLERANCE * fair, (shard, counts)


@settings(max_examples=20, deadline=None)
@given(shard_names, st.data())
def test_adding_a_shard_moves_about_its_share_only_to_it_and_removing_moves_only_its_keys(
    shards, data
):
    new = data.draw(st.text("xyz", min_size=1, max_size=8).filter(lambda s: s not in shards))
    before = HashRing(shards)
    after = before.copy()
    after.add(new)
    moved = [key for key in KEYS if before.shard_for(key) != after.shard_for(key)]
    assert all(after.shard_for(key) == new for key in moved)
    expected = len(KEYS) / (len(shards) + 1)
    assert abs(len(moved) - expected) <= MOVE_TOLERANCE * expected
    if len(shards) > 1:
        gone = shards[0]
        smaller = before.copy()
        smaller.remove(gone)
        changed = [key for key in KEYS if before.shard_for(key) != smaller.shard_for(key)]
        assert all(before.shard_for(key) == gone for key in changed)
        assert len(changed) == sum(before.shard_for(key) == gone for key in KEYS)


def test_an_empty_ring_refuses_and_removing_an_unknown_shard_fails():
    ring = HashRing()
    with pytest.raises(LookupError):
        ring.shard_for("room-1")
    with pytest.raises(KeyError):
        ring.remove("nope")
    ring.add("a")
    assert ring.shard_for("room-1") == "a" and "a" in ring and len(ring) == 1


@pytest.mark.parametrize("listed", [1, 2, 3, 5, 8])
def test_adding_a_shard_to_n_moves_about_one_in_n_plus_one_rooms_of_real_ids_and_names(listed):
    """What `townhall chat rebalance` moves: room ids are UUIDv7 (time-ordered, so they share
    long prefixes) and shards are named by their URLs, as `DatabaseShards` names them."""
    rooms = [new_id_str() for _ in range(10_000)]
    urls = [f"postgresql+asyncpg://db{n}.internal:5432/chat" for n in range(listed + 1)]
    before, after = HashRing(urls[:listed]), HashRing(urls)
    moved = [room for room in rooms if before.shard_for(room) != after.shard_for(room)]
    assert {after.shard_for(room) for room in moved} == {urls[-1]}
    expected = len(rooms) / (listed + 1)
    assert abs(len(moved) - expected) <= MOVE_TOLERANCE * expected, (len(moved), expected)
