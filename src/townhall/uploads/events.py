"""Uploads' public integration events (versioned; additive changes only), on topic `uploads`.

The scan group (`uploads.scan`) takes `UploadReceived` and publishes `UploadScanned`;
notifications tells the owner of the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "uploads"


@dataclass(frozen=True)
class _Event:
    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Any:
        fields = cls.__dataclass_fields__
        return cls(**{name: value for name, value in payload.items() if name in fields})


@dataclass(frozen=True)
class UploadReceived(_Event):
    type = "uploads.UploadReceived"
    version = 1

    upload_id: str
    owner_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadScanned(_Event):
    type = "uploads.UploadScanned"
    version = 1

    upload_id: str
    owner_id: str
    filename: str
    status: str  # CLEAN | INFECTED | FAILED
    detection: str | None  # the signature when INFECTED, the reason when FAILED
