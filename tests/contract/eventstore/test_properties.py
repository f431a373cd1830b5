"""Property-based: any interleaving of appends keeps versions gapless and the orders consistent."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from itertools import count

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from townhall.platform.eventstore import ANY, NO_STREAM, NewEvent, VersionConflict, connect

# One append: (stream, number of events, what it expects: the version seen when its wave
# started, one less than that (stale), any version, or no stream).
appends = st.tuples(
    st.integers(0, 3), st.integers(1, 3), st.sampled_from(["seen", "stale", "any", "none"])
)
# Waves run one after the other; the appends inside one wave run concurrently.
waves = st.lists(st.lists(appends, min_size=1, max_size=6), min_size=1, max_size=5)
_examples = count()


async def _scenario(url: str, scenario: list[list[tuple[int, int, str]]]) -> None:
    store = await connect(url, migrate=False)
    prefix = f"p{next(_examples)}"
    try:
        start = await store.head_position()
        outcomes: list[tuple[str, int, int | None, list[NewEvent]]] = []

        async def attempt(stream: str, expected, batch: list[NewEvent]) -> int | None:
            try:
                return await store.append(stream, batch, expected_version=expected)
            except VersionConflict as conflict:
                assert conflict.stream_id == stream
                return None

        for wave in scenario:
            calls = []
            for index, (stream_no, size, kind) in enumerate(wave):
                stream = f"{prefix}-{stream_no}"
                seen = await store.stream_version(stream)
                expected = {"seen": seen, "stale": max(seen - 1, 0), "any": ANY}.get(
                    kind, NO_STREAM
                )
                batch = [NewEvent(f"E{index}", {"i": i}) for i in range(size)]
                calls.append((stream, expected, batch))
            results = await asyncio.gather(*(attempt(*call) for call in calls))
            outcomes.extend(
                (stream, expected, result, batch)
                for (stream, expected, batch), result in zip(calls, results, strict=True)
            )

        everything = await store.read_all(from_position=start, limit=10_000)
        written = sum(len(batch) for _, _, result, batch in outcomes if result is not None)
        # One global order: contiguous positions, no holes, nothing a conflict wrote.
        assert [e.position for e in everything] == list(range(start + 1, start + written + 1))
        by_stream: dict[str, list[int]] = defaultdict(list)
        for event in everything:
            by_stream[event.stream_id].append(event.version)
        for stream, versions in by_stream.items():
            # Per stream: gapless from 1, and the global order agrees with the stream's order.
            assert versions == list(range(1, len(versions) + 1)), stream
        for stream, expected, result, batch in outcomes:
            if result is None:
                continue
            if expected is not ANY:
                assert result == (0 if expected is NO_STREAM else expected) + len(batch)
            # An append's events are atomic and adjacent: versions and positions both.
            mine = [e for e in everything if e.stream_id == stream][result - len(batch) : result]
            assert [e.type for e in mine] == [e.type for e in batch]
            assert [e.position for e in mine] == list(
                range(mine[0].position, mine[0].position + len(batch))
            )
        # Two appends expecting the same version of one stream never both succeed.
        won = [(s, e) for s, e, r, _ in outcomes if r is not None and isinstance(e, int)]
        assert len(won) == len(set(won))
    finally:
        await store.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=waves)
def test_any_interleaving_of_appends_keeps_streams_gapless_and_orders_consistent(
    migrated_url, scenario
):
    asyncio.run(_scenario(migrated_url, scenario))
