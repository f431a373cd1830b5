"""Uploads' public integration events (versioned; additive changes only), on topic `uploads`.

The scan group (`uploads.scan`) takes `UploadReceived` and publishes `UploadScanned`;
notifications tells the owner of the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.platform.integration_events import FlatEvent

TOPIC = "uploads"


@dataclass(frozen=True)
class UploadReceived(FlatEvent):
    type = "uploads.UploadReceived"
    version = 1

    upload_id: str
    owner_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadScanned(FlatEvent):
    type = "uploads.UploadScanned"
    version = 1

    upload_id: str
    owner_id: str
    filename: str
    status: str  # CLEAN | INFECTED | FAILED
    detection: str | None  # the signature when INFECTED, the reason when FAILED
