"""The envelope every message travels in: id, type, key, JSON payload, headers, time."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from townhall.platform.ids import new_id

NAME = re.compile(r"^[a-z0-9._-]{1,200}$")


class MalformedEnvelope(ValueError):
    """Bytes on the wire that are not JSON or not an envelope of the known shape."""


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{kind} {name!r} must match [a-z0-9._-]+")
    return name


# A message put back from the dead-letter store goes back on its topic for one group only; the
# header names that group (the other groups skip the message).
REPLAY_HEADER = "x-replay-group"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message. `key` orders: envelopes of one key are handled in publish order per group.

    Headers carry `correlation_id`, `causation_id`, trace context and, as handed to a handler,
    `attempt` (and `x-replay-group` when an operator replayed it from the dead-letter store).
    """

    type: str
    key: str
    payload: Any
    id: uuid.UUID = field(default_factory=new_id)
    headers: dict[str, str] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=_now)

    @property
    def attempt(self) -> int:
        return int(self.headers.get("attempt", "1"))

    @property
    def replayed(self) -> bool:
        """Whether an operator put this message back from the dead-letter store."""
        return REPLAY_HEADER in self.headers

    def with_headers(self, **headers: str) -> Envelope:
        # The constructor with every field given: several times cheaper than replace().
        return Envelope(
            self.type,
            self.key,
            self.payload,
            self.id,
            {**self.headers, **headers},
            self.occurred_at,
        )

    def caused(self, type: str, key: str, payload: Any) -> Envelope:
        """A new envelope caused by this one: same correlation id, causation id = this id."""
        correlation = self.headers.get("correlation_id", str(self.id))
        return Envelope(
            type=type,
            key=key,
            payload=payload,
            headers={"correlation_id": correlation, "causation_id": str(self.id)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "key": self.key,
            "payload": self.payload,
            "headers": self.headers,
            "occurred_at": self.occurred_at.isoformat(),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        try:
            headers = data.get("headers") or {}
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                raise MalformedEnvelope("headers must map strings to strings")
            if not isinstance(data["type"], str) or not isinstance(data["key"], str):
                raise MalformedEnvelope("type and key must be strings")
            occurred_at = datetime.fromisoformat(data["occurred_at"])
            if occurred_at.tzinfo is None:
                raise MalformedEnvelope("occurred_at must carry a timezone")
            return cls(
                id=uuid.UUID(data["id"]),
                type=data["type"],
                key=data["key"],
                payload=data["payload"],
                headers=dict(headers),
                occurred_at=occurred_at,
            )
        except MalformedEnvelope:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedEnvelope(f"not an envelope: {exc!r}") from exc

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEnvelope(f"not JSON: {exc}") from exc
        return cls.from_dict(data)
