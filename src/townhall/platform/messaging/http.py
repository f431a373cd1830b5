"""Administrators' dead-letter endpoints: `GET /admin/dlq`, `POST /admin/dlq/replay`
(mounted under /api/v1 by the edge, behind the admin dependency it passes in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from townhall.platform.errors import Invalid
from townhall.platform.messaging.envelope import check_name
from townhall.platform.messaging.ports import MessageBus


class ReplayRequest(BaseModel):
    topic: str
    group: str
    ids: list[str] | None = Field(default=None, description="None replays every dead letter")


def dlq_router(bus: MessageBus, require_admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/admin/dlq", tags=["admin"], dependencies=[Depends(require_admin)])

    @router.get("")
    async def list_dead_letters(topic: str, group: str) -> dict[str, Any]:
        _check(topic, group)
        letters = await bus.dead_letters(topic, group)
        return {
            "items": [
                {
                    "id": letter.id,
                    "envelope": letter.envelope.to_dict() if letter.envelope else None,
                    "raw": letter.raw,
                    "error": letter.error,
                    "attempts": letter.attempts,
                    "failed_at": letter.failed_at.isoformat(),
                }
                for letter in letters
            ]
        }

    @router.post("/replay")
    async def replay(request: ReplayRequest) -> dict[str, int]:
        _check(request.topic, request.group)
        return {"replayed": await bus.replay(request.topic, request.group, request.ids)}

    return router


def _check(topic: str, group: str) -> None:
    for field, value in (("topic", topic), ("group", group)):
        try:
            check_name(field, value)
        except ValueError as exc:
            raise Invalid(str(exc), field=field) from None
