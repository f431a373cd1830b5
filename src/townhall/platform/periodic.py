"""A job run every so often in the background of a process (a sweep, a prune), until stopped.
A failing run is logged and the next one comes at its time; nothing is swallowed silently."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from townhall.platform.observability import get_logger

log = get_logger("townhall.periodic")


class Periodic:
    """`job()` every `every` seconds, the first run one period after `start` (or at once with
    `first_at_once`). `start` may be called more than once; the job runs once at a time."""

    def __init__(
        self,
        name: str,
        every: float,
        job: Callable[[], Awaitable[object]],
        *,
        first_at_once: bool = False,
    ) -> None:
        self.name = name
        self.every = every
        self._job = job
        self._first_at_once = first_at_once
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.start_soon()

    def start_soon(self) -> None:
        """`start` from synchronous code that runs in the event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        if not self._first_at_once:
            await asyncio.sleep(self.every)
        while True:
            try:
                await self._job()
            except Exception:
                log.exception("periodic job failed; it runs again later", job=self.name)
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
