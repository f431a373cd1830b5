"""What inventory's HTTP routes take and give: request bodies, response models, the catalogue's
cursor, and the conversion of a product to its answer. The rules of a product's fields are the
domain's (`Invalid` naming the field); these models hold the types and the lengths."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from townhall.inventory.domain import MAX_NAME, MAX_REASON, SKU, Product

_NOT_A_CURSOR = "not a cursor: pass back the next_cursor of a page"


def encode_cursor(sku: str) -> str:
    return base64.urlsafe_b64encode(sku.encode()).decode().rstrip("=")


def _cursor(value: str | None) -> str | None:
    """A cursor is the `next_cursor` of an earlier page: the last sku of it, encoded."""
    if value is None:
        return None
    try:
        sku = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(_NOT_A_CURSOR) from None
    if not SKU.fullmatch(sku) or encode_cursor(sku) != value:
        raise ValueError(_NOT_A_CURSOR)
    return sku


ProductCursor = Annotated[
    str | None,
    Query(max_length=100, description="the next_cursor of the previous page"),
    AfterValidator(_cursor),
]
Limit = Annotated[int, Query(ge=1, le=100)]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, Field(max_length=64, examples=["tee-m"])]
    name: Annotated[str, Field(max_length=MAX_NAME)]
    price_cents: StrictInt
    currency: Annotated[str, Field(max_length=3, examples=["EUR"])]
    stock: StrictInt = 0


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    price_cents: StrictInt | None = None


class StockChange(BaseModel):
    """A restock (`delta` > 0) or a correction (< 0), and why."""

    model_config = ConfigDict(extra="forbid")
    delta: StrictInt
    reason: Annotated[str, Field(max_length=MAX_REASON, examples=["restock from supplier"])]


class ProductOut(BaseModel):
    sku: str
    name: str
    price_cents: int
    currency: str
    stock: int = Field(description="what orders may still reserve: on hand minus reserved")


class ProductPageOut(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None


def product_out(product: Product) -> ProductOut:
    return ProductOut(
        sku=product.sku,
        name=product.name,
        price_cents=product.price_cents,
        currency=product.currency,
        stock=product.available,
    )
