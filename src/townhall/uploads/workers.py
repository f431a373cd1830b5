"""The scan group (`uploads.scan`) on topic `uploads`: each `UploadReceived` is streamed from
quarantine through the scanner; a clean file moves to the clean area, then its result commits
with `UploadScanned` in one transaction, so the owner is told once, and the file is served
only after that commit.

A scan that cannot finish (the scanner down or too slow) fails the message, which the bus
retries with backoff; the attempts are counted on the upload, and the last one records it
FAILED, never CLEAN. A worker killed mid-scan leaves the message unacknowledged: it is
redelivered and scanned again (counted as an attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from townhall.platform.clock import Clock
from townhall.platform.messaging import ConsumerSpec, Envelope
from townhall.platform.observability import get_logger
from townhall.platform.periodic import Periodic
from townhall.platform.transaction import Transactions
from townhall.uploads.domain import TERMINAL, ScanError, Status, Verdict
from townhall.uploads.events import TOPIC, UploadReceived, UploadScanned
from townhall.uploads.ports import Area, ObjectMissing, ObjectStorage, UploadEvents, UploadStore

SCAN_GROUP = "uploads.scan"

log = get_logger("townhall.uploads")


class Inspector(Protocol):
    """The scan of one file (`scanning.ScanPipeline`: the scanner, archives looked into, a
    timeout)."""

    async def verdict(self, chunks: AsyncIterable[bytes], content_type: str) -> Verdict: ...


class ScanWorker:
    def __init__(
        self,
        database: Transactions,
        uploads: UploadStore,
        storage: ObjectStorage,
        inspector: Inspector,
        events: UploadEvents,
        clock: Clock,
        *,
        max_attempts: int,
        at_once: int = 4,
    ) -> None:
        self._db = database
        self._uploads = uploads
        self._storage = storage
        self.inspector = inspector
        self._events = events
        self._clock = clock
        self.max_attempts = max_attempts
        # Scans at once in this process: a scan holds a file's stream and a scanner's attention.
        # Bounded here rather than by the group's prefetch, which is shared by the topic's
        # partitions: a prefetch below their number leaves a partition waiting for a fetch
        # window to free before it reads a message that is there.
        self._scanning = asyncio.Semaphore(at_once)

    async def handle(self, envelope: Envelope) -> None:
        if envelope.type == UploadReceived.type:
            await self.scan(UploadReceived.from_payload(envelope.payload).upload_id)

    async def scan(self, upload_id: str) -> Status | None:
        """Scan one upload; its status afterwards (None: it was deleted)."""
        async with self._db.transaction() as tx:
            upload = await self._uploads.get(tx, upload_id)
            if upload is None or upload.status in TERMINAL:
                return None if upload is None else upload.status  # scanned already
            attempt = await self._uploads.count_attempt(tx, upload_id)
        try:
            async with self._scanning:
                verdict = await self._inspect(upload_id, upload.content_type)
        except ObjectMissing:
            log.warning("upload bytes missing", upload_id=upload_id)
            verdict = Verdict.failed("missing")
        except ScanError as exc:
            if attempt < self.max_attempts:
                log.warning(
                    "scan failed; retried", upload_id=upload_id, attempt=attempt, error=str(exc)
                )
                raise
            log.error(
                "scan failed; giving up", upload_id=upload_id, attempt=attempt, error=str(exc)
            )
            verdict = Verdict.failed(str(exc) or type(exc).__name__)
        if verdict.status is Status.CLEAN:
            # Moved before the result commits: served only once both are done. A crash between
            # the two leaves it pending in the clean area, where the next attempt finds it.
            await self._storage.move(upload_id, Area.QUARANTINE, Area.CLEAN)
        scanned = upload.scanned(verdict, self._clock.now())
        async with self._db.transaction() as tx:
            if await self._uploads.record_result(tx, scanned):
                await self._events.publish(
                    tx,
                    UploadScanned(
                        upload_id=upload_id,
                        owner_id=upload.owner,
                        filename=upload.filename,
                        status=scanned.status.value,
                        detection=scanned.detection,
                    ),
                )
        log.info("upload scanned", upload_id=upload_id, status=scanned.status.value)
        return scanned.status

    def rescue_loop(self, after: float) -> Periodic:
        """`rescue` of uploads pending past `after` seconds, every half of it."""

        async def sweep() -> None:
            rescued = await self.rescue(timedelta(seconds=after))
            if rescued:
                log.warning("uploads scanned without their message", count=rescued)

        return Periodic("uploads.rescue", after / 2, sweep)

    async def rescue(self, older_than: timedelta, limit: int = 100) -> int:
        """Scan the uploads pending for longer than `older_than`: those whose `UploadReceived`
        died with an in-process bus (a crash on embedded defaults), or went to the dead-letter
        queue. A scan of an upload another worker is scanning too is harmless: the first
        result commits, the other changes nothing. Returns how many it scanned."""
        async with self._db.connect() as tx:
            stale = await self._uploads.pending_before(tx, self._clock.now() - older_than, limit)
        for upload_id in stale:
            try:
                await self.scan(upload_id)
            except ScanError:
                pass  # counted as an attempt; the next sweep tries again, or records FAILED
        return len(stale)

    async def _inspect(self, upload_id: str, content_type: str) -> Verdict:
        area = Area.QUARANTINE
        if await self._storage.size(area, upload_id) is None:
            area = Area.CLEAN  # an earlier attempt moved it and died before committing
        chunks = self._storage.get(area, upload_id)
        return await self.inspector.verdict(chunks, content_type)


def scan_consumers(worker: ScanWorker, rescue: Periodic) -> list[ConsumerSpec]:
    def handler() -> Callable[[Envelope], Awaitable[None]]:
        rescue.start_soon()  # where the group runs, so does the sweep (`rescue_loop`)
        return worker.handle

    # The bus gives up one attempt after the worker does, so it is the worker that records
    # FAILED (and tells the owner); the dead-letter queue keeps only what could not even do that.
    return [
        ConsumerSpec(
            TOPIC,
            SCAN_GROUP,
            handler,
            max_attempts=worker.max_attempts + 1,
        )
    ]
