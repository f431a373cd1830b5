"""Upcasters: read events written under an older schema as their current schema.

An upcaster turns the data of one event type from schema version N into N+1; the registry
chains them, so an event stored at v1 is read as v3 through v1->v2->v3. Stored rows are never
rewritten: the old shape stays the historical record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Upcaster = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class Upcasters:
    """A registry of upcasters by event type and the schema version they upgrade from."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register the step from `from_version` to `from_version + 1` of `event_type`."""
        if from_version < 1:
            raise ValueError("schema versions start at 1")
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(f"{event_type} already has an upcaster from v{from_version}")
        self._steps[key] = upcaster
        self._current[event_type] = max(self._current.get(event_type, 1), from_version + 1)

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of `register`."""

        def decorate(function: Upcaster) -> Upcaster:
            self.register(event_type, from_version, function)
            return function

        return decorate

    @property
    def current_versions(self) -> Mapping[str, int]:
        """The current schema version of each type that has upcasters (others are at 1)."""
        return self._current

    def current_version(self, event_type: str) -> int:
        """The schema version new events of this type are written at."""
        return self._current.get(event_type, 1)

    def upcast(
        self, event_type: str, schema_version: int, data: Mapping[str, Any]
    ) -> tuple[int, Mapping[str, Any]]:
        """Bring `data` to the type's current schema; returns (version, data)."""
        current = self._current.get(event_type, 1)
        while schema_version < current:
            step = self._steps.get((event_type, schema_version))
            if step is None:
                raise LookupError(
                    f"no upcaster for {event_type} from v{schema_version} (current v{current})"
                )
            data = step(data)
            schema_version += 1
        return schema_version, data
