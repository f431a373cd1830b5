"""The base of a module's public integration events whose payload is their fields, as they are
(JSON values): `to_payload` gives the fields, `from_payload` takes them back and ignores fields
it does not know (a newer version's additions). Pure Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Self


@dataclass(frozen=True)
class FlatEvent:
    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Self:
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in payload.items() if name in known})
