"""Resumable uploads (the use cases behind tus 1.0): create one with its length and metadata,
append at the current offset across as many connections as it takes (bytes received before a
connection dropped are kept), ask where it stands, abandon it, and let it expire. When the
last byte is in, the file goes through the same intake as a simple upload (type, size,
quarantine, `UploadReceived`), and its partial is removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from townhall.platform.clock import Clock
from townhall.platform.errors import Conflict
from townhall.platform.ids import new_id
from townhall.platform.periodic import Periodic
from townhall.platform.transaction import Transactions
from townhall.uploads.domain import SNIFF_BYTES, InvalidUpload, Upload, UploadTooLarge
from townhall.uploads.ports import PartialUploads, ResumableRecords, ResumableUpload
from townhall.uploads.service import UploadsService


class ResumableNotFound(LookupError):
    """No such resumable upload of the caller's (or it expired): tus answers 404."""


class OffsetConflict(Conflict):
    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload's offset is {offset}")
        self.offset = offset


@dataclass(frozen=True)
class Progress:
    upload: ResumableUpload
    offset: int
    completed: Upload | None = None  # the upload made of it, once its last byte is in


class ResumableUploads:
    def __init__(
        self,
        database: Transactions,
        records: ResumableRecords,
        partials: PartialUploads,
        uploads: UploadsService,
        clock: Clock,
        *,
        expiry: timedelta,
    ) -> None:
        self._db = database
        self._records = records
        self._partials = partials
        self._uploads = uploads
        self._clock = clock
        self.expiry = expiry

    @property
    def max_bytes(self) -> int:
        return self._uploads.settings.max_bytes

    async def create(
        self, owner: str, length: int, filename: str | None, content_type: str | None
    ) -> ResumableUpload:
        if length == 0:
            raise InvalidUpload("the file is empty", field="Upload-Length")
        self._uploads.check_size(length)
        now = self._clock.now()
        upload = ResumableUpload(
            id=str(new_id()),
            owner=owner,
            length=length,
            filename=filename,
            content_type=content_type,
            created_at=now,
            expires_at=now + self.expiry,
        )
        await self._partials.create(upload.id)
        async with self._db.transaction() as tx:
            await self._records.add(tx, upload)
        return upload

    async def progress(self, owner: str, upload_id: str) -> Progress:
        async with self._db.connect() as tx:
            upload = await self._records.get(tx, upload_id)
        if upload is None or upload.owner != owner:
            raise ResumableNotFound(upload_id)
        if upload.expires_at <= self._clock.now():
            await self._remove(upload_id)
            raise ResumableNotFound(upload_id)
        offset = await self._partials.length(upload_id)
        if offset is None:
            raise ResumableNotFound(upload_id)
        return Progress(upload, offset)

    async def append(
        self,
        owner: str,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        declared: int | None = None,
    ) -> Progress:
        """Append at `offset`, which must be where the upload stands (`OffsetConflict`). The
        type is checked once its first bytes are in: a lie removes the upload (415)."""
        progress = await self.progress(owner, upload_id)
        upload = progress.upload
        if offset != progress.offset:
            raise OffsetConflict(progress.offset)
        if declared is not None and offset + declared > upload.length:
            raise UploadTooLarge("the body goes past the upload's length")
        try:
            reached = await self._partials.append(
                upload_id, offset, _bounded(chunks, upload.length - offset)
            )
        except ValueError:
            # Another request appended meanwhile, or is appending now.
            current = await self._partials.length(upload_id)
            raise OffsetConflict(current or 0) from None
        if offset < SNIFF_BYTES <= reached or (offset == 0 and reached == upload.length):
            head = await self._head(upload_id)
            try:
                self._uploads.check_type(upload.content_type, head)
            except Exception:
                await self._remove(upload_id)
                raise
        if reached < upload.length:
            async with self._db.transaction() as tx:
                expires_at = self._clock.now() + self.expiry
                await self._records.touch(tx, upload_id, expires_at)
            return Progress(upload, reached)
        completed = await self._uploads.receive(
            owner,
            upload.filename,
            upload.content_type,
            self._partials.read(upload_id),
            upload.length,
        )
        await self._remove(upload_id)
        return Progress(upload, reached, completed)

    async def _head(self, upload_id: str) -> bytes:
        head = b""
        stream = self._partials.read(upload_id)
        async for chunk in stream:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        if hasattr(stream, "aclose"):
            await stream.aclose()
        return head[:SNIFF_BYTES]

    async def terminate(self, owner: str, upload_id: str) -> None:
        await self.progress(owner, upload_id)
        await self._remove(upload_id)

    async def _remove(self, upload_id: str) -> None:
        async with self._db.transaction() as tx:
            await self._records.delete(tx, upload_id)
        await self._partials.delete(upload_id)

    def expiry_loop(self) -> Periodic:
        """`sweep` every twentieth of the expiry (at least every ten minutes), in every process
        that serves resumable uploads."""
        every = min(600.0, max(0.5, self.expiry.total_seconds() / 20))
        return Periodic("uploads.tus-expiry", every, self.sweep)

    async def sweep(self, limit: int = 100) -> int:
        """Remove the uploads past their expiry; how many."""
        async with self._db.connect() as tx:
            expired = await self._records.expired(tx, self._clock.now(), limit)
        for upload_id in expired:
            await self._remove(upload_id)
        return len(expired)


async def _bounded(chunks: AsyncIterable[bytes], room: int) -> AsyncIterator[bytes]:
    """The chunks while they fit in `room` bytes; the chunk that would go past it is refused
    (413) and not kept, so a refused body never completes an upload."""
    async for chunk in chunks:
        if len(chunk) > room:
            raise UploadTooLarge("the body goes past the upload's length")
        room -= len(chunk)
        yield chunk
