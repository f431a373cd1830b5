"""Inventory's domain: products with their stock on hand and reserved, the reservations orders
hold on it, the rules a product's fields keep, and the price quote orders ask for. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from townhall.platform.errors import Conflict, Invalid, NotFound

SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_NAME = 200
MAX_REASON = 200
# Amounts and quantities stay well inside a 64-bit column whatever is added to them.
MAX_AMOUNT = 10**12


class UnknownProduct(NotFound):
    code = "product-not-found"
    title = "Product not found"


class SkuTaken(Conflict):
    code = "sku-taken"
    title = "The sku is taken"


class BelowReserved(Conflict):
    """A stock adjustment would leave less on hand than orders hold."""

    code = "stock-below-reserved"
    title = "Stock cannot fall below what is reserved"


def check_sku(sku: str, field: str = "sku") -> str:
    if not sku.strip():
        raise Invalid("a sku cannot be blank", field=field)
    if not SKU.fullmatch(sku):
        raise Invalid(
            "a sku is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field=field,
        )
    return sku


def check_name(name: str) -> str:
    if not name.strip():
        raise Invalid("a product's name cannot be blank", field="name")
    if len(name) > MAX_NAME:
        raise Invalid(f"a product's name is at most {MAX_NAME} characters", field="name")
    return name


def check_price(price_cents: int) -> int:
    if not 0 <= price_cents <= MAX_AMOUNT:
        raise Invalid(f"a price is 0 to {MAX_AMOUNT} cents", field="price_cents")
    return price_cents


def check_currency(currency: str) -> str:
    if not CURRENCY.fullmatch(currency):
        raise Invalid("a currency is three capital letters (ISO 4217, e.g. EUR)", field="currency")
    return currency


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    currency: str
    on_hand: int  # in the warehouse, reserved or not
    reserved: int  # held by orders' reservations
    created_at: datetime
    updated_at: datetime

    @property
    def available(self) -> int:
        """What a new order may still reserve."""
        return self.on_hand - self.reserved


def new_product(
    sku: str, name: str, price_cents: int, currency: str, stock: int, now: datetime
) -> Product:
    """A product as an administrator creates it; `Invalid`, naming the field, otherwise."""
    check_sku(sku)
    check_name(name)
    check_price(price_cents)
    check_currency(currency)
    if not 0 <= stock <= MAX_AMOUNT:
        raise Invalid(f"stock is 0 to {MAX_AMOUNT}", field="stock")
    return Product(sku, name, price_cents, currency, stock, 0, now, now)


def check_adjustment(delta: int, reason: str) -> None:
    if delta == 0 or abs(delta) > MAX_AMOUNT:
        raise Invalid(f"delta is a non-zero number of units, at most {MAX_AMOUNT}", field="delta")
    if not reason.strip():
        raise Invalid("say why the stock changes (a restock, a count, breakage)", field="reason")
    if len(reason) > MAX_REASON:
        raise Invalid(f"a reason is at most {MAX_REASON} characters", field="reason")


@dataclass(frozen=True)
class StockAdjustment:
    """A restock (delta > 0) or a correction, who made it and why; kept for the record."""

    id: str
    sku: str
    delta: int
    reason: str
    adjusted_by: str
    at: datetime


# --- reservations ---------------------------------------------------------------------------


class ReservationStatus(StrEnum):
    RESERVED = "reserved"  # the stock is held for the order
    FAILED = "failed"  # nothing was held: `shortages` says which skus were short
    RELEASED = "released"  # given back (a compensation)
    EXPIRED = "expired"  # given back because no saga confirmed or released it in time
    COMMITTED = "committed"  # the order is confirmed: the stock has left


@dataclass(frozen=True)
class Reservation:
    """What an order holds, or was refused: at most one per order, its answer kept for a
    repeated request. `lines` are merged per sku, in sku order (the order rows are locked)."""

    order_id: str
    status: ReservationStatus
    lines: tuple[tuple[str, int], ...]
    shortages: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    settled_at: datetime | None = None
    correlation_id: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the order was answered with its stock reserved (whatever became of it)."""
        return self.status is not ReservationStatus.FAILED


def merged_lines(lines: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Quantities per sku, in sku order: the order every writer locks product rows in, so two
    reservations of overlapping baskets never wait for each other in a cycle."""
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        totals[sku] = totals.get(sku, 0) + quantity
    return tuple(sorted(totals.items()))


def unreservable(lines: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Skus no stock can satisfy whatever is on hand: a malformed sku or a quantity below 1."""
    return tuple(sorted({sku for sku, quantity in lines if not SKU.fullmatch(sku) or quantity < 1}))


# --- quotes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotedLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class Quote:
    """Current prices of a basket, in its one currency."""

    lines: tuple[QuotedLine, ...]
    currency: str

    @property
    def total_cents(self) -> int:
        return sum(line.unit_price_cents * line.quantity for line in self.lines)


def quote(lines: Sequence[tuple[str, int]], products: Mapping[str, Product]) -> Quote:
    """Price `lines` from `products` (by sku); `Invalid` naming `items.N.sku` for a sku that is
    not a product, or `items` for an empty basket or one of several currencies."""
    if not lines:
        raise Invalid("a basket holds at least one item", field="items")
    quoted: list[QuotedLine] = []
    for index, (sku, quantity) in enumerate(lines):
        product = products.get(sku)
        if product is None:
            raise Invalid(f"no product has the sku {sku!r}", field=f"items.{index}.sku")
        quoted.append(QuotedLine(sku, quantity, product.price_cents))
    currencies = sorted({products[sku].currency for sku, _ in lines})
    if len(currencies) > 1:
        raise Invalid(
            f"the items are priced in several currencies ({', '.join(currencies)}): "
            "order them separately",
            field="items",
        )
    return Quote(tuple(quoted), currencies[0])
