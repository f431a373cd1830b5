"""Chat asks the uploads module about attachments through its facade (a synchronous call:
an attachment is checked before the message is stored)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from townhall.chat.domain import Attachment, AttachmentRefused
from townhall.uploads import AttachmentView, NotAttachable, UploadsFacade

AUDIENCE = "chat.room"  # what a room's attachments are shown to: `chat.room:<room id>`


class UploadAttachments:
    def __init__(self, uploads: UploadsFacade) -> None:
        self._uploads = uploads

    async def attach(
        self, author: str, upload_ids: Sequence[str], room_id: str
    ) -> dict[str, Attachment]:
        try:
            views = await self._uploads.attach(author, upload_ids, f"{AUDIENCE}:{room_id}")
        except NotAttachable as refused:
            raise AttachmentRefused(refused.detail) from None
        return {view.id: _attachment(view) for view in views}

    async def views(self, upload_ids: Collection[str]) -> dict[str, Attachment]:
        found = await self._uploads.views(upload_ids)
        return {upload_id: _attachment(view) for upload_id, view in found.items()}


def _attachment(view: AttachmentView) -> Attachment:
    return Attachment(view.id, str(view.status), view.filename, view.content_type, view.size)
