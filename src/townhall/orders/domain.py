"""The order aggregate, stored only as events: commands in, events out, state folded from the
events. Pure Python: no I/O; time comes from a `Clock`, ids from `platform.ids`.

A command on an `Order` returns a `Change`: the events to append, or none and why (`Ignored`)
when the order already holds that fact or is final. Refusals a buyer can see raise.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from itertools import takewhile
from typing import Any, ClassVar

from townhall.inventory import events as inventory
from townhall.payments import events as payments
from townhall.platform import errors
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id
from townhall.shipping import events as shipping

STREAM_TYPE = "order"
MAX_LINES = 50
MAX_QUANTITY = 100
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def stream_id(order_id: uuid.UUID) -> str:
    """The order's stream in the event store (its stream type, for snapshots, is `order`)."""
    return f"{STREAM_TYPE}-{order_id}"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self is not OrderStatus.PENDING


class FailureReason(StrEnum):
    OUT_OF_STOCK = "out_of_stock"
    STOCK_TIMEOUT = "stock_timeout"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_TIMEOUT = "payment_timeout"
    SHIPPING_FAILED = "shipping_failed"
    SHIPPING_TIMEOUT = "shipping_timeout"


class SagaMode(StrEnum):
    ORCHESTRATION = "orchestration"
    CHOREOGRAPHY = "choreography"


class Ignored(StrEnum):
    """Why a command made no events. The caller records it (the saga timeline shows it)."""

    DUPLICATE = "duplicate"  # the order already holds this fact or is already in that state
    TERMINAL = "terminal"  # the order is final: a late fact or command changes nothing


# --- errors ---------------------------------------------------------------------------------


class InvalidOrder(errors.Invalid):
    """An order that cannot be placed; `field` names the part of the request at fault."""


class CannotCancel(errors.Conflict):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class CannotConfirm(errors.Conflict):
    """Confirming an order that lacks a reservation, a payment or a shipment: a saga bug."""

    def __init__(self, missing: Iterable[str]) -> None:
        super().__init__(f"an order is confirmed only once it holds {', '.join(missing)}")


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None


# --- events ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # keeps microseconds
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class OrderEvent:
    """Base of the order's events: `at` is when it happened, by the `Clock` of the command.

    `to_data` gives what the event store keeps under `type`; `event_from_data` reads it back.
    """

    type: ClassVar[str]
    at: datetime

    def to_data(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def _from_data(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        values = {key: tuple(v) if isinstance(v, list) else v for key, v in data.items()}
        values["at"] = datetime.fromisoformat(data["at"])
        return values

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OrderEvent:
        return cls(**cls._from_data(data))


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(OrderEvent):
    type = "OrderPlaced"
    order_id: uuid.UUID
    buyer_id: str
    lines: tuple[OrderLine, ...]
    total_cents: int
    currency: str
    shipping_address: Address
    saga_mode: SagaMode

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        data["lines"] = [asdict(line) for line in self.lines]
        data["shipping_address"] = asdict(self.shipping_address)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OrderPlaced:
        values = cls._from_data(data)
        values["order_id"] = uuid.UUID(data["order_id"])
        values["lines"] = tuple(OrderLine(**line) for line in data["lines"])
        values["shipping_address"] = Address(**data["shipping_address"])
        values["saga_mode"] = SagaMode(data["saga_mode"])
        return cls(**values)


# Facts reported by the saga's participants, each recorded at most once.


@dataclass(frozen=True, kw_only=True)
class StockReserved(OrderEvent):
    type = "StockReserved"


@dataclass(frozen=True, kw_only=True)
class StockReservationFailed(OrderEvent):
    type = "StockReservationFailed"
    skus: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(OrderEvent):
    type = "PaymentCaptured"
    payment_id: str
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(OrderEvent):
    type = "PaymentFailed"
    decline_code: str


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(OrderEvent):
    type = "PaymentRefunded"
    payment_id: str
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class ShipmentCreated(OrderEvent):
    type = "ShipmentCreated"
    shipment_id: str


@dataclass(frozen=True, kw_only=True)
class ShipmentFailed(OrderEvent):
    type = "ShipmentFailed"
    reason: str


@dataclass(frozen=True, kw_only=True)
class ShipmentCancelled(OrderEvent):
    type = "ShipmentCancelled"
    shipment_id: str


@dataclass(frozen=True, kw_only=True)
class StockReleased(OrderEvent):
    type = "StockReleased"


# The buyer's request and the three ends.


@dataclass(frozen=True, kw_only=True)
class CancelRequested(OrderEvent):
    type = "CancelRequested"


@dataclass(frozen=True, kw_only=True)
class OrderConfirmed(OrderEvent):
    type = "OrderConfirmed"


@dataclass(frozen=True, kw_only=True)
class OrderFailed(OrderEvent):
    type = "OrderFailed"
    reason: FailureReason
    decline_code: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OrderFailed:
        values = cls._from_data(data)
        values["reason"] = FailureReason(data["reason"])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(OrderEvent):
    type = "OrderCancelled"


EVENT_TYPES: Mapping[str, type[OrderEvent]] = {
    cls.type: cls
    for cls in (
        OrderPlaced,
        StockReserved,
        StockReservationFailed,
        PaymentCaptured,
        PaymentFailed,
        PaymentRefunded,
        ShipmentCreated,
        ShipmentFailed,
        ShipmentCancelled,
        StockReleased,
        CancelRequested,
        OrderConfirmed,
        OrderFailed,
        OrderCancelled,
    )
}


def event_from_data(event_type: str, data: Mapping[str, Any]) -> OrderEvent:
    """The event the store keeps as (`event_type`, `data`)."""
    try:
        cls = EVENT_TYPES[event_type]
    except KeyError:
        raise LookupError(f"{event_type!r} is not an order event") from None
    return cls.from_data(data)


# What a participant reports -> the fact the order records.
Reply = (
    inventory.StockReserved
    | inventory.StockReservationFailed
    | inventory.StockReleased
    | payments.PaymentCaptured
    | payments.PaymentFailed
    | payments.PaymentRefunded
    | shipping.ShipmentCreated
    | shipping.ShipmentFailed
    | shipping.ShipmentCancelled
)


def fact_of(reply: Reply, at: datetime) -> OrderEvent:
    match reply:
        case inventory.StockReserved():
            return StockReserved(at=at)
        case inventory.StockReservationFailed(skus=skus):
            return StockReservationFailed(at=at, skus=skus)
        case inventory.StockReleased():
            return StockReleased(at=at)
        case payments.PaymentCaptured(payment_id=payment_id, amount_cents=amount):
            return PaymentCaptured(at=at, payment_id=payment_id, amount_cents=amount)
        case payments.PaymentFailed(decline_code=code):
            return PaymentFailed(at=at, decline_code=code)
        case payments.PaymentRefunded(payment_id=payment_id, amount_cents=amount):
            return PaymentRefunded(at=at, payment_id=payment_id, amount_cents=amount)
        case shipping.ShipmentCreated(shipment_id=shipment_id):
            return ShipmentCreated(at=at, shipment_id=shipment_id)
        case shipping.ShipmentFailed(reason=reason):
            return ShipmentFailed(at=at, reason=reason)
        case shipping.ShipmentCancelled(shipment_id=shipment_id):
            return ShipmentCancelled(at=at, shipment_id=shipment_id)
    raise TypeError(f"not a reply of the order saga: {reply!r}")


# --- the aggregate --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a command did: events to append, or none and why."""

    events: tuple[OrderEvent, ...] = ()
    ignored: Ignored | None = None


@dataclass(frozen=True)
class Order:
    """An order as its events left it. `version` is the number of events folded (the expected
    version of the next append); `facts` the types of the participants' facts recorded."""

    id: uuid.UUID
    buyer_id: str
    lines: tuple[OrderLine, ...]
    total_cents: int
    currency: str
    shipping_address: Address
    saga_mode: SagaMode
    created_at: datetime
    updated_at: datetime
    version: int = 1
    status: OrderStatus = OrderStatus.PENDING
    reason: FailureReason | None = None
    decline_code: str | None = None
    cancel_requested: bool = False
    facts: frozenset[str] = field(default_factory=frozenset)

    def holds(self, fact: type[OrderEvent]) -> bool:
        return fact.type in self.facts

    @property
    def stock_held(self) -> bool:
        return self.holds(StockReserved) and not self.holds(StockReleased)

    @property
    def money_held(self) -> bool:
        return self.holds(PaymentCaptured) and not self.holds(PaymentRefunded)

    @property
    def shipment_exists(self) -> bool:
        return self.holds(ShipmentCreated) and not self.holds(ShipmentCancelled)

    # Commands. Facts never raise: a participant's report is true whatever we think of it.

    def record(self, reply: Reply, clock: Clock) -> Change:
        """Record what a participant reported, once; a final order records nothing more."""
        fact = fact_of(reply, clock.now())
        if self.status.is_terminal:
            return Change(ignored=Ignored.TERMINAL)
        if fact.type in self.facts:
            return Change(ignored=Ignored.DUPLICATE)
        return Change((fact,))

    def request_cancel(self, clock: Clock) -> Change:
        """The buyer asks to cancel: refused once the order is final or its shipment exists."""
        if self.status is OrderStatus.CANCELLED or (
            self.cancel_requested and not self.status.is_terminal
        ):
            return Change(ignored=Ignored.DUPLICATE)
        if self.status.is_terminal:
            raise CannotCancel(f"the order is already {self.status.value}")
        if self.shipment_exists:
            raise CannotCancel("the order's shipment exists")
        return Change((CancelRequested(at=clock.now()),))

    def confirm(self, clock: Clock) -> Change:
        if self.status is OrderStatus.CONFIRMED:
            return Change(ignored=Ignored.DUPLICATE)
        if self.status.is_terminal:
            return Change(ignored=Ignored.TERMINAL)
        missing = [
            what
            for what, held in (
                ("reserved stock", self.stock_held),
                ("a captured payment", self.money_held),
                ("a shipment", self.shipment_exists),
            )
            if not held
        ]
        if missing:
            raise CannotConfirm(missing)
        return Change((OrderConfirmed(at=clock.now()),))

    def fail(self, reason: FailureReason, clock: Clock, decline_code: str | None = None) -> Change:
        if self.status is OrderStatus.FAILED:
            return Change(ignored=Ignored.DUPLICATE)
        if self.status.is_terminal:
            return Change(ignored=Ignored.TERMINAL)
        return Change((OrderFailed(at=clock.now(), reason=reason, decline_code=decline_code),))

    def cancel(self, clock: Clock) -> Change:
        if self.status is OrderStatus.CANCELLED:
            return Change(ignored=Ignored.DUPLICATE)
        if self.status.is_terminal:
            return Change(ignored=Ignored.TERMINAL)
        if self.shipment_exists:
            raise CannotCancel("the order's shipment exists")
        return Change((OrderCancelled(at=clock.now()),))


def place(
    *,
    buyer_id: str,
    lines: Sequence[OrderLine],
    currency: str,
    shipping_address: Address,
    saga_mode: SagaMode,
    clock: Clock,
    make_id: Callable[[], uuid.UUID] = new_id,
) -> OrderPlaced:
    """A new order of `lines` at their unit prices (the server's, not the buyer's); the total
    is their sum. Refuses, naming the field: no line, too many, a repeated or blank sku, a
    quantity outside 1..MAX_QUANTITY, a negative price, a currency that is not three capital
    letters, a blank address field or a country that is not two capital letters."""
    if not lines:
        raise InvalidOrder("an order needs at least one item", field="items")
    if len(lines) > MAX_LINES:
        raise InvalidOrder(f"an order holds at most {MAX_LINES} items", field="items")
    seen: set[str] = set()
    for index, line in enumerate(lines):
        if not line.sku.strip():
            raise InvalidOrder("a sku cannot be blank", field=f"items.{index}.sku")
        if line.sku in seen:
            raise InvalidOrder(f"sku {line.sku!r} is repeated", field=f"items.{index}.sku")
        seen.add(line.sku)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidOrder(
                f"a quantity is from 1 to {MAX_QUANTITY}", field=f"items.{index}.quantity"
            )
        if line.unit_price_cents < 0:
            raise InvalidOrder("a price cannot be negative", field=f"items.{index}.price_cents")
    if not _CURRENCY.match(currency):
        raise InvalidOrder("a currency is three capital letters (ISO 4217)", field="currency")
    for name in ("name", "line1", "city", "postal_code"):
        if not getattr(shipping_address, name).strip():
            raise InvalidOrder(f"{name} cannot be blank", field=f"shipping_address.{name}")
    if not _COUNTRY.match(shipping_address.country):
        raise InvalidOrder(
            "a country is two capital letters (ISO 3166-1)", field="shipping_address.country"
        )
    return OrderPlaced(
        at=clock.now(),
        order_id=make_id(),
        buyer_id=buyer_id,
        lines=tuple(lines),
        total_cents=sum(line.total_cents for line in lines),
        currency=currency,
        shipping_address=shipping_address,
        saga_mode=saga_mode,
    )


# --- folding --------------------------------------------------------------------------------


def evolve(order: Order | None, event: OrderEvent) -> Order:
    """The order after `event`. A stream starts with `OrderPlaced` and has only one."""
    if isinstance(event, OrderPlaced):
        if order is not None:
            raise ValueError(f"order {order.id} is already placed")
        return Order(
            id=event.order_id,
            buyer_id=event.buyer_id,
            lines=event.lines,
            total_cents=event.total_cents,
            currency=event.currency,
            shipping_address=event.shipping_address,
            saga_mode=event.saga_mode,
            created_at=event.at,
            updated_at=event.at,
        )
    if order is None:
        raise ValueError(f"an order's stream starts with OrderPlaced, not {event.type}")
    order = replace(order, version=order.version + 1, updated_at=event.at)
    match event:
        case CancelRequested():
            return replace(order, cancel_requested=True)
        case OrderConfirmed():
            return replace(order, status=OrderStatus.CONFIRMED)
        case OrderFailed(reason=reason, decline_code=code):
            return replace(order, status=OrderStatus.FAILED, reason=reason, decline_code=code)
        case OrderCancelled():
            return replace(order, status=OrderStatus.CANCELLED)
    return replace(order, facts=order.facts | {event.type})


def fold(
    events: Iterable[OrderEvent], *, until: datetime | None = None, start: Order | None = None
) -> Order | None:
    """The order its events make, from `start` (a snapshot) or from nothing.

    `until` gives the order as it was then: the events up to the first one after `until`
    (a prefix of the stream, so a clock step backwards cannot fold an event without the ones
    before it). None when the order did not exist yet.
    """
    if until is not None:
        events = takewhile(lambda event: event.at <= until, events)
    order = start
    for event in events:
        order = evolve(order, event)
    return order
