"""Uploads (issue 24): a file is accepted at once into quarantine, scanned by a worker group,
served only once clean, and its owner is told the result. See README.md.

Other modules reach it through `townhall.uploads.events` (topic `uploads`) and its facade
(`UploadsFacade`): chat and the feed attach their authors' uploads to messages and posts, show
them as their scans allow, and say who may see what they attached them to.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from pathlib import Path

from townhall.platform.modules import Installed, ModuleSpec, Platform
from townhall.uploads.adapters.local import LocalPartialUploads
from townhall.uploads.adapters.outbox import OutboxUploadEvents
from townhall.uploads.adapters.sql import SqlResumables, SqlUploads
from townhall.uploads.domain import DEFAULT_ALLOWED, NotAttachable, Status
from townhall.uploads.http import routers
from townhall.uploads.ports import AudienceCheck, ObjectStorage, Scanner
from townhall.uploads.resumable import ResumableUploads
from townhall.uploads.service import AttachmentView, UploadSettings, UploadsService
from townhall.uploads.tus import tus_routers
from townhall.uploads.workers import ScanWorker, scan_consumers

__all__ = ["AttachmentView", "NotAttachable", "Status", "UploadsFacade", "module"]

# The multipart envelope around a file: its boundaries and part headers.
MULTIPART_OVERHEAD = 64 * 1024


class UploadsFacade:
    """What other modules may ask of uploads, synchronously (a visible exception to talking
    by the bus: an author's attachment is checked before their message or post is kept)."""

    def __init__(self, service: UploadsService) -> None:
        self._service = service

    async def attach(
        self, owner: str, upload_ids: Sequence[str], audience: str
    ) -> list[AttachmentView]:
        """Attach `owner`'s uploads to `audience` (`chat.room:<id>`, `feed.post:<id>`), whose
        members may then read them once clean. `NotAttachable` (a 422 naming `attachments`)
        for an id that is not an upload of theirs, or an infected one."""
        return await self._service.attach(owner, upload_ids, audience)

    async def views(self, upload_ids: Collection[str]) -> dict[str, AttachmentView]:
        """How each upload is shown now: the file once CLEAN, a placeholder with its status
        before; an infected or deleted one is absent."""
        return await self._service.views(upload_ids)

    def register_audience(self, kind: str, check: AudienceCheck) -> None:
        """`check(user_id, ref)`: may this user see what is attached to `kind:ref`?"""
        self._service.register_audience(kind, check)


def _storage(platform: Platform) -> ObjectStorage:
    url = platform.settings.uploads_storage
    if url:
        from townhall.uploads.adapters.s3 import S3Storage

        s3: ObjectStorage = S3Storage.from_url(url)
        return s3
    from townhall.uploads.adapters.local import LocalStorage

    return LocalStorage(platform.settings.data_dir / "uploads")


def _scanner(platform: Platform) -> Scanner:
    choice = platform.settings.uploads_scanner
    if choice == "yara":
        from townhall.uploads.adapters.yara import YaraScanner

        return YaraScanner(platform.settings.uploads_yara_rules)
    from townhall.uploads.adapters.clamd import ClamdScanner

    clamd: Scanner = ClamdScanner(choice)
    return clamd


def _install(platform: Platform) -> Installed:
    from townhall.uploads.archives import ArchiveLimits
    from townhall.uploads.scanning import ScanPipeline

    settings, database, clock = platform.settings, platform.database, platform.clock
    storage, scanner = _storage(platform), _scanner(platform)
    uploads, events = SqlUploads(), OutboxUploadEvents()
    allowed = [t.strip() for t in settings.uploads_allowed_types.split(",") if t.strip()]
    service = UploadsService(
        database,
        uploads,
        storage,
        events,
        clock,
        UploadSettings(
            max_bytes=settings.uploads_max_bytes, allowed_types=allowed or DEFAULT_ALLOWED
        ),
    )
    pipeline = ScanPipeline(
        scanner,
        ArchiveLimits(
            max_depth=settings.uploads_archive_depth,
            max_members=settings.uploads_archive_members,
            max_total_bytes=settings.uploads_archive_max_bytes,
            max_ratio=settings.uploads_archive_ratio,
        ),
        timeout=settings.uploads_scan_timeout,
    )
    worker = ScanWorker(
        database,
        uploads,
        storage,
        pipeline,
        events,
        clock,
        max_attempts=settings.uploads_scan_attempts,
    )

    rescue = worker.rescue_loop(settings.uploads_rescue_after)
    resumables = ResumableUploads(
        database,
        SqlResumables(),
        LocalPartialUploads(settings.data_dir / "uploads" / "partial"),
        service,
        clock,
        expiry=timedelta(hours=settings.uploads_tus_expiry_hours),
    )
    expiry = resumables.expiry_loop()

    async def close() -> None:
        await expiry.stop()
        await rescue.stop()
        await scanner.close()
        await storage.close()

    return Installed(
        routers=[*tus_routers(resumables), *routers(service)],
        on_start=[expiry.start],
        consumers=scan_consumers(worker, rescue),
        facade=UploadsFacade(service),
        on_stop=[close],
        body_limits={"/uploads": settings.uploads_max_bytes + MULTIPART_OVERHEAD},
    )


module = ModuleSpec(
    name="uploads",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity",),
)
