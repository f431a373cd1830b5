"""A periodic job runs every period until stopped, and a failing run does not end it."""

from __future__ import annotations

import asyncio

from townhall.platform.periodic import Periodic


async def test_a_job_runs_every_period_survives_a_failure_and_stops():
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("a bad run")

    loop = Periodic("test", 0.02, job, first_at_once=True)
    await loop.start()
    loop.start_soon()  # a second start changes nothing
    await asyncio.sleep(0.15)
    await loop.stop()
    count = len(runs)
    assert count >= 4  # on after the failing second run
    await asyncio.sleep(0.06)
    assert len(runs) == count  # stopped


async def test_the_first_run_waits_a_period_unless_asked_not_to():
    runs: list[str] = []

    async def job() -> None:
        runs.append("run")

    loop = Periodic("test", 0.2, job)
    await loop.start()
    await asyncio.sleep(0.05)
    assert runs == []
    await loop.stop()
