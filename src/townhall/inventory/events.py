"""Inventory's public messages (versioned; additive changes only).

Commands go to inventory on `COMMAND_TOPIC`; inventory publishes its events on `TOPIC`. Every
message is keyed by the order id, which is also the natural idempotency key: an order holds
at most one reservation, so a repeated `ReserveStock` or `ReleaseStock` changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "inventory"
COMMAND_TOPIC = "inventory.commands"


@dataclass(frozen=True)
class StockLine:
    sku: str
    quantity: int


def _lines(payload: Mapping[str, Any]) -> tuple[StockLine, ...]:
    return tuple(StockLine(**line) for line in payload["lines"])


@dataclass(frozen=True)
class ReserveStock:
    """Hold `lines` for the order, all or nothing."""

    type = "inventory.ReserveStock"
    version = 1

    order_id: str
    lines: tuple[StockLine, ...]

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReserveStock:
        return cls(order_id=payload["order_id"], lines=_lines(payload))


@dataclass(frozen=True)
class ReleaseStock:
    """Give back whatever the order holds (a compensation; nothing held is nothing to do)."""

    type = "inventory.ReleaseStock"
    version = 1

    order_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReleaseStock:
        return cls(order_id=payload["order_id"])


@dataclass(frozen=True)
class StockReserved:
    type = "inventory.StockReserved"
    version = 1

    order_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockReserved:
        return cls(order_id=payload["order_id"])


@dataclass(frozen=True)
class StockReservationFailed:
    """Nothing was reserved; `skus` are those short of stock (or unknown)."""

    type = "inventory.StockReservationFailed"
    version = 1

    order_id: str
    skus: tuple[str, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "skus": list(self.skus)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockReservationFailed:
        return cls(order_id=payload["order_id"], skus=tuple(payload.get("skus", ())))


@dataclass(frozen=True)
class StockReleased:
    type = "inventory.StockReleased"
    version = 1

    order_id: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockReleased:
        return cls(order_id=payload["order_id"])
