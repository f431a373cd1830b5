"""Uploads' store on SQLAlchemy Core (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from townhall.platform.db import aware, connection, dialect_insert
from townhall.platform.transaction import Transaction
from townhall.uploads.adapters.tables import attachments, resumables, uploads
from townhall.uploads.domain import Status, Upload
from townhall.uploads.ports import ResumableUpload


def _upload(row: Any) -> Upload:
    return Upload(
        id=row.id,
        owner=row.owner,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        status=Status(row.status),
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        scanned_at=aware(row.scanned_at),
        detection=row.detection,
        scan_attempts=row.scan_attempts,
    )


class SqlUploads:
    async def add(self, tx: Transaction, upload: Upload) -> None:
        await connection(tx).execute(
            uploads.insert().values(
                id=upload.id,
                owner=upload.owner,
                filename=upload.filename,
                content_type=upload.content_type,
                size=upload.size,
                sha256=upload.sha256,
                status=upload.status.value,
                created_at=upload.created_at,
            )
        )

    async def get(self, tx: Transaction, upload_id: str) -> Upload | None:
        row = (
            await connection(tx).execute(sa.select(uploads).where(uploads.c.id == upload_id))
        ).first()
        return None if row is None else _upload(row)

    async def get_many(self, tx: Transaction, upload_ids: Sequence[str]) -> dict[str, Upload]:
        if not upload_ids:
            return {}
        rows = await connection(tx).execute(
            sa.select(uploads).where(uploads.c.id.in_(list(upload_ids)))
        )
        return {row.id: _upload(row) for row in rows}

    async def by_owner(
        self, tx: Transaction, owner: str, before: str | None, limit: int
    ) -> list[Upload]:
        query = sa.select(uploads).where(uploads.c.owner == owner)
        if before is not None:
            query = query.where(uploads.c.id < before)
        rows = await connection(tx).execute(query.order_by(uploads.c.id.desc()).limit(limit))
        return [_upload(row) for row in rows]

    async def count_attempt(self, tx: Transaction, upload_id: str) -> int:
        found = await connection(tx).scalar(
            uploads.update()
            .where(uploads.c.id == upload_id)
            .values(scan_attempts=uploads.c.scan_attempts + 1)
            .returning(uploads.c.scan_attempts)
        )
        return int(found or 0)

    async def record_result(self, tx: Transaction, upload: Upload) -> bool:
        result = await connection(tx).execute(
            uploads.update()
            .where(uploads.c.id == upload.id, uploads.c.status == Status.PENDING_SCAN.value)
            .values(
                status=upload.status.value,
                detection=upload.detection,
                scanned_at=upload.scanned_at,
            )
        )
        return bool(result.rowcount)

    async def delete(self, tx: Transaction, upload_id: str) -> None:
        conn = connection(tx)
        await conn.execute(attachments.delete().where(attachments.c.upload_id == upload_id))
        await conn.execute(uploads.delete().where(uploads.c.id == upload_id))

    async def attach(self, tx: Transaction, upload_ids: Sequence[str], audience: str) -> None:
        if not upload_ids:
            return
        conn = connection(tx)
        statement = dialect_insert(conn)(attachments).on_conflict_do_nothing()
        await conn.execute(statement, [{"upload_id": u, "audience": audience} for u in upload_ids])

    async def audiences(self, tx: Transaction, upload_id: str) -> list[str]:
        rows = await connection(tx).execute(
            sa.select(attachments.c.audience).where(attachments.c.upload_id == upload_id)
        )
        return [row.audience for row in rows]

    async def pending_before(self, tx: Transaction, before: datetime, limit: int) -> list[str]:
        rows = await connection(tx).execute(
            sa.select(uploads.c.id)
            .where(uploads.c.status == Status.PENDING_SCAN.value, uploads.c.created_at < before)
            .order_by(uploads.c.created_at)
            .limit(limit)
        )
        return [row.id for row in rows]


class SqlResumables:
    async def add(self, tx: Transaction, upload: ResumableUpload) -> None:
        await connection(tx).execute(
            resumables.insert().values(
                id=upload.id,
                owner=upload.owner,
                length=upload.length,
                filename=upload.filename,
                content_type=upload.content_type,
                created_at=upload.created_at,
                expires_at=upload.expires_at,
            )
        )

    async def get(self, tx: Transaction, upload_id: str) -> ResumableUpload | None:
        row = (
            await connection(tx).execute(sa.select(resumables).where(resumables.c.id == upload_id))
        ).first()
        if row is None:
            return None
        return ResumableUpload(
            id=row.id,
            owner=row.owner,
            length=row.length,
            filename=row.filename,
            content_type=row.content_type,
            created_at=aware(row.created_at),  # type: ignore[arg-type]
            expires_at=aware(row.expires_at),  # type: ignore[arg-type]
        )

    async def touch(self, tx: Transaction, upload_id: str, expires_at: datetime) -> None:
        await connection(tx).execute(
            resumables.update().where(resumables.c.id == upload_id).values(expires_at=expires_at)
        )

    async def delete(self, tx: Transaction, upload_id: str) -> None:
        await connection(tx).execute(resumables.delete().where(resumables.c.id == upload_id))

    async def expired(self, tx: Transaction, now: datetime, limit: int) -> list[str]:
        rows = await connection(tx).execute(
            sa.select(resumables.c.id)
            .where(resumables.c.expires_at <= now)
            .order_by(resumables.c.expires_at)
            .limit(limit)
        )
        return [row.id for row in rows]
