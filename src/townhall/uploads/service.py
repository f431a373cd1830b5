"""Uploads' use cases: receive a file into quarantine (streamed, hashed, its type sniffed), show
an upload's status, list an owner's uploads, serve a clean file's bytes to those who may see
it, delete, and attach uploads to what other modules show (chat messages, posts).

Consistency (C/C, see README.md): a file's bytes are read from the clean area only, and only
once its CLEAN result is committed; anything else is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field

from townhall.platform.clock import Clock
from townhall.platform.ids import new_id
from townhall.platform.observability import get_logger
from townhall.platform.transaction import Transactions
from townhall.uploads.domain import (
    DEFAULT_ALLOWED,
    SNIFF_BYTES,
    InvalidUpload,
    NotAttachable,
    NotClean,
    Status,
    Upload,
    UploadNotFound,
    UploadTooLarge,
    decide_type,
    decode_cursor,
    encode_cursor,
    parse_range,
    safe_filename,
)
from townhall.uploads.events import UploadReceived
from townhall.uploads.ports import Area, AudienceCheck, ObjectStorage, UploadEvents, UploadStore

log = get_logger("townhall.uploads")


@dataclass(frozen=True)
class UploadSettings:
    max_bytes: int = 100 * 1024 * 1024
    allowed_types: Collection[str] = DEFAULT_ALLOWED


@dataclass(frozen=True)
class UploadPage:
    items: list[Upload]
    next_cursor: str | None


@dataclass(frozen=True)
class Content:
    """What `GET .../content` sends: the upload, the byte range (inclusive) and the bytes."""

    upload: Upload
    first: int
    last: int
    partial: bool
    chunks: AsyncIterator[bytes] = field(repr=False)


@dataclass(frozen=True)
class AttachmentView:
    """What a reader is shown of an attachment: the file once CLEAN, a placeholder with its
    status before (or when the scan failed). An INFECTED or deleted upload is not shown."""

    id: str
    status: Status
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


def _too_large(limit: int) -> str:
    return f"the upload exceeds the limit of {limit} bytes"


class _Intake:
    """Counts, hashes and sniffs the bytes on their way to storage, refusing a body past the
    limit, an empty one, or one whose type is refused, before any of it is kept."""

    def __init__(self, declared: str | None, settings: UploadSettings) -> None:
        self.declared = declared
        self.settings = settings
        self.size = 0
        self.digest = hashlib.sha256()
        self.content_type: str | None = None

    async def stream(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        head = b""
        async for chunk in body:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.settings.max_bytes:
                raise UploadTooLarge(
                    f"the upload exceeds the limit of {self.settings.max_bytes} bytes"
                )
            self.digest.update(chunk)
            if self.content_type is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                self._decide(head)
                chunk, head = head, b""
            yield chunk
        if self.size == 0:
            raise InvalidUpload("the file is empty", field="file")
        if self.content_type is None:
            self._decide(head)
            yield head

    def _decide(self, head: bytes) -> None:
        self.content_type = decide_type(self.declared, head, self.settings.allowed_types)


class UploadsService:
    def __init__(
        self,
        database: Transactions,
        uploads: UploadStore,
        storage: ObjectStorage,
        events: UploadEvents,
        clock: Clock,
        settings: UploadSettings,
    ) -> None:
        self._db = database
        self._uploads = uploads
        self._storage = storage
        self._events = events
        self._clock = clock
        self.settings = settings
        self._audiences: dict[str, AudienceCheck] = {}

    def register_audience(self, kind: str, check: AudienceCheck) -> None:
        """`check(user_id, ref)` says whether a user may see what is shown to `kind:ref`."""
        self._audiences[kind] = check

    # --- receiving ----------------------------------------------------------------------

    def check_size(self, declared_size: int | None) -> None:
        if declared_size is not None and declared_size > self.settings.max_bytes:
            raise UploadTooLarge(_too_large(self.settings.max_bytes))

    def check_type(self, declared: str | None, head: bytes) -> str:
        """The type the first bytes show, or `UnsupportedType` (for resumable uploads, which
        check it on their first bytes rather than at the end)."""
        return decide_type(declared, head, self.settings.allowed_types)

    async def receive(
        self,
        owner: str,
        filename: str | None,
        declared_type: str | None,
        body: AsyncIterable[bytes],
        declared_size: int | None = None,
    ) -> Upload:
        """Stream `body` into quarantine and record the upload PENDING_SCAN with its
        `UploadReceived` (one transaction). A body that fails on the way (too large, refused,
        the client gone) leaves nothing behind, and neither does a failed commit."""
        self.check_size(declared_size)
        upload_id = str(new_id())
        intake = _Intake(declared_type, self.settings)
        await self._storage.put(Area.QUARANTINE, upload_id, intake.stream(body))
        assert intake.content_type is not None
        upload = Upload(
            id=upload_id,
            owner=owner,
            filename=safe_filename(filename),
            content_type=intake.content_type,
            size=intake.size,
            sha256=intake.digest.hexdigest(),
            status=Status.PENDING_SCAN,
            created_at=self._clock.now(),
        )
        try:
            async with self._db.transaction() as tx:
                await self._uploads.add(tx, upload)
                await self._events.publish(
                    tx,
                    UploadReceived(
                        upload_id=upload.id,
                        owner_id=owner,
                        filename=upload.filename,
                        content_type=upload.content_type,
                        size=upload.size,
                        sha256=upload.sha256,
                    ),
                )
        except BaseException:
            await self._storage.delete(upload_id)
            raise
        return upload

    # --- reading ------------------------------------------------------------------------

    async def upload(self, user: str, upload_id: str) -> Upload:
        """An upload's record, for its owner and for those who may see where it is attached
        (404 to anyone else, and for an infected upload to anyone but its owner)."""
        async with self._db.connect() as tx:
            found = await self._uploads.get(tx, upload_id)
            if found is None:
                raise UploadNotFound()
            if found.owner == user:  # the common case: no audience to read or ask
                return found
            if found.status is Status.INFECTED:
                raise UploadNotFound()
            audiences = await self._uploads.audiences(tx, upload_id)
        if not await self._in_audience(user, audiences):
            raise UploadNotFound()
        return found

    async def _in_audience(self, user: str, audiences: Sequence[str]) -> bool:
        for audience in audiences:
            kind, _, ref = audience.partition(":")
            check = self._audiences.get(kind)
            if check is not None and await check(user, ref):
                return True
        return False

    async def mine(self, owner: str, cursor: str | None, limit: int) -> UploadPage:
        before = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as tx:
            found = await self._uploads.by_owner(tx, owner, before, limit + 1)
        items = found[:limit]
        more = len(found) > limit
        return UploadPage(items, encode_cursor(items[-1].id) if more and items else None)

    async def content(self, user: str, upload_id: str, range_header: str | None) -> Content:
        """The bytes of a CLEAN upload (a range of them when asked), from the clean area."""
        upload = await self.upload(user, upload_id)
        if upload.status is not Status.CLEAN:
            raise NotClean(upload.status)
        span = parse_range(range_header, upload.size)
        first, last = span if span is not None else (0, upload.size - 1)
        chunks = self._storage.get(Area.CLEAN, upload.id, first, last)
        return Content(upload, first, last, span is not None, chunks)

    async def delete(self, owner: str, upload_id: str) -> None:
        """The owner deletes an upload: its record first (so it is never served again), then
        its bytes from every area. Where it was attached, it is no longer shown."""
        async with self._db.transaction() as tx:
            found = await self._uploads.get(tx, upload_id)
            if found is None or found.owner != owner:
                raise UploadNotFound()
            await self._uploads.delete(tx, upload_id)
        await self._storage.delete(upload_id)

    # --- attachments (the facade's) ----------------------------------------------------

    async def attach(
        self, owner: str, upload_ids: Sequence[str], audience: str
    ) -> list[AttachmentView]:
        """Record that `owner`'s uploads are shown to `audience`; `NotAttachable` (422) for an
        id that is not an upload of theirs, or one found infected."""
        ids = list(dict.fromkeys(upload_ids))
        if not ids:
            return []
        async with self._db.transaction() as tx:
            found = await self._uploads.get_many(tx, ids)
            for upload_id in ids:
                upload = found.get(upload_id)
                if upload is None or upload.owner != owner or upload.status is Status.INFECTED:
                    raise NotAttachable(upload_id)
            await self._uploads.attach(tx, ids, audience)
        return [_view(found[i]) for i in ids]

    async def views(self, upload_ids: Collection[str]) -> dict[str, AttachmentView]:
        """How each attachment is shown now; an infected or deleted one is absent."""
        if not upload_ids:
            return {}
        async with self._db.connect() as tx:
            found = await self._uploads.get_many(tx, list(set(upload_ids)))
        return {i: _view(u) for i, u in found.items() if u.status is not Status.INFECTED}


def _view(upload: Upload) -> AttachmentView:
    if upload.status is Status.CLEAN:
        return AttachmentView(
            upload.id, upload.status, upload.filename, upload.content_type, upload.size
        )
    return AttachmentView(upload.id, upload.status)
