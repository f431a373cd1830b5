"""The roles uploads needs filled: where bytes are kept (`ObjectStorage`) and where unfinished
resumable uploads wait (`PartialUploads`), what scans them (`Scanner`), where uploads and their
attachments are recorded (`UploadStore`), how its events leave (`UploadEvents`), and who may see
what an upload is attached to (`AudienceCheck`, given by the module that owns the audience).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from townhall.platform.transaction import Transaction
from townhall.uploads.domain import Upload, Verdict
from townhall.uploads.events import UploadReceived, UploadScanned


class Area(enum.StrEnum):
    """Quarantine holds what is not known clean; only the clean area is ever served."""

    QUARANTINE = "quarantine"
    CLEAN = "clean"


class ObjectMissing(LookupError):
    pass


class ObjectStorage(Protocol):
    async def put(self, area: Area, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream `chunks` into a new object and return its size. The object exists only once
        complete: if `chunks` raises (the client went away, the body is too large), nothing is
        left and the exception propagates. Memory stays bounded whatever the size."""
        ...

    def get(
        self, area: Area, key: str, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes `first`..`last` (inclusive; None: to the end), streamed; `ObjectMissing`
        when there is no such object (raised on the first iteration)."""
        ...

    async def move(self, key: str, source: Area, target: Area) -> None:
        """Move an object between areas. Idempotent: an object already in `target` (and gone
        from `source`) is left as it is; `ObjectMissing` when it is in neither."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object from every area; nothing there is fine."""
        ...

    async def size(self, area: Area, key: str) -> int | None:
        """The object's size, None when there is none."""
        ...

    async def close(self) -> None: ...


class PartialUploads(Protocol):
    """Resumable (tus) uploads before they complete: bytes appended at an offset, kept across
    connections, removed on completion, termination or expiry."""

    async def create(self, key: str) -> None: ...

    async def append(self, key: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Append `chunks` at `offset` (which must be the current length, else `ValueError`)
        and return the new length. Bytes received before the client went away are kept."""
        ...

    async def length(self, key: str) -> int | None:
        """How many bytes are kept; None for an unknown upload."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class ResumableUpload:
    """A resumable (tus) upload before it completes: who makes it, how long it will be, what
    its metadata says, and until when it is kept."""

    id: str
    owner: str
    length: int
    filename: str | None
    content_type: str | None
    created_at: datetime
    expires_at: datetime


class ResumableRecords(Protocol):
    async def add(self, tx: Transaction, upload: ResumableUpload) -> None: ...

    async def get(self, tx: Transaction, upload_id: str) -> ResumableUpload | None: ...

    async def touch(self, tx: Transaction, upload_id: str, expires_at: datetime) -> None: ...

    async def delete(self, tx: Transaction, upload_id: str) -> None: ...

    async def expired(self, tx: Transaction, now: datetime, limit: int) -> list[str]: ...


class Scanner(Protocol):
    """Scans a stream of bytes with bounded memory. Answers CLEAN or INFECTED; a scan that
    cannot finish raises `ScanError` (never CLEAN)."""

    name: str

    async def scan(self, chunks: AsyncIterable[bytes]) -> Verdict: ...

    async def close(self) -> None: ...


class UploadStore(Protocol):
    async def add(self, tx: Transaction, upload: Upload) -> None: ...

    async def get(self, tx: Transaction, upload_id: str) -> Upload | None: ...

    async def get_many(self, tx: Transaction, upload_ids: Sequence[str]) -> dict[str, Upload]: ...

    async def by_owner(
        self, tx: Transaction, owner: str, before: str | None, limit: int
    ) -> list[Upload]:
        """The owner's uploads, newest first, those with ids below `before`."""
        ...

    async def count_attempt(self, tx: Transaction, upload_id: str) -> int:
        """Count one more scan attempt and return the count."""
        ...

    async def record_result(self, tx: Transaction, upload: Upload) -> bool:
        """Store a scan's result if the upload is still pending; False when it is not (another
        scan committed first, or it was deleted)."""
        ...

    async def delete(self, tx: Transaction, upload_id: str) -> None: ...

    async def attach(self, tx: Transaction, upload_ids: Sequence[str], audience: str) -> None:
        """Record that the uploads are shown to `audience` (e.g. `chat.room:<id>`); idempotent."""
        ...

    async def audiences(self, tx: Transaction, upload_id: str) -> list[str]: ...

    async def pending_before(self, tx: Transaction, before: datetime, limit: int) -> list[str]:
        """Ids of uploads still pending a scan that were received before `before`, oldest
        first."""
        ...


class UploadEvents(Protocol):
    async def publish(self, tx: Transaction, event: UploadReceived | UploadScanned) -> None: ...


# Whether user `user_id` may see what is shown to an audience of this kind, `ref` naming which
# (a chat room's id, a post's id). Given to uploads by the module the audience belongs to.
AudienceCheck = Callable[[str, str], Awaitable[bool]]
