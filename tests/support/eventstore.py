"""Helpers shared by the event store tests."""

from __future__ import annotations

from typing import Any

from townhall.platform.eventstore import NewEvent


def events(*types: str, **data: Any) -> list[NewEvent]:
    return [NewEvent(type=name, data=dict(data)) for name in types]
