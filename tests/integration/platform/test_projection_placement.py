"""Where the read models run: a projection is a consumer of the event store, so it runs where
every group runs (`serve`), where it is named (`townhall worker orders.summaries`), and not in
an edge that leaves its groups to workers (`serve --no-consumers`): three processes following
one projection would each take its checkpoint lock for every batch."""

from __future__ import annotations

import asyncio

import pytest

from support.app import settings_for
from townhall.bootstrap import assemble
from townhall.platform.eventstore import NewEvent

pytestmark = pytest.mark.timeout(60)


async def checkpoints_after_an_append(tmp_path, groups: list[str] | None) -> dict[str, int]:
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", tmp_path)
    runtime = await assemble(settings, ["identity", "inventory", "orders"])
    try:
        await runtime.start(relay=False, groups=groups)
        projections = runtime.platform.projections
        position = await runtime.platform.eventstore.append(
            "probe-1", [NewEvent("probe.Happened", {"n": 1})]
        )
        assert position >= 1
        head = await runtime.platform.eventstore.head_position()
        for name in projections.names:
            if groups is None or name in groups:
                await projections.subscription(name).wait_for(head)
        await asyncio.sleep(0.3)  # what should not run has had the time to show it runs
        return {status.name: status.checkpoint for status in await projections.status()}
    finally:
        await runtime.stop()


async def test_every_projection_runs_where_every_group_runs(tmp_path):
    checkpoints = await checkpoints_after_an_append(tmp_path, None)
    assert set(checkpoints) >= {"orders.summaries", "orders.sales"}
    assert all(checkpoint > 0 for checkpoint in checkpoints.values()), checkpoints


async def test_a_worker_runs_only_the_projections_it_names(tmp_path):
    checkpoints = await checkpoints_after_an_append(tmp_path, ["orders.summaries"])
    assert checkpoints["orders.summaries"] > 0
    assert checkpoints["orders.sales"] == 0


async def test_an_edge_without_consumers_runs_no_projection(tmp_path):
    checkpoints = await checkpoints_after_an_append(tmp_path, [])
    assert set(checkpoints.values()) == {0}, checkpoints
