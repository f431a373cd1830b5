"""Inventory's HTTP routes: the catalogue for everyone, products and stock for administrators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from townhall.inventory.schemas import (
    Limit,
    ProductCursor,
    ProductIn,
    ProductOut,
    ProductPageOut,
    ProductPatch,
    StockChange,
    encode_cursor,
    product_out,
)
from townhall.inventory.service import Catalogue
from townhall.platform.auth import Principal
from townhall.platform.http import current_admin, rate_limit, require_json

# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    """This installation's catalogue, put on each request by the router's dependency."""

    catalogue: Catalogue

    async def __call__(self, request: Request) -> None:
        request.state.inventory = self


async def catalogue(request: Request) -> Catalogue:
    installed: _Installed = request.state.inventory
    return installed.catalogue


Products = Annotated[Catalogue, Depends(catalogue)]
Admin = Annotated[Principal, Depends(current_admin)]


# --- routes ---------------------------------------------------------------------------------


async def list_products(
    products: Products, cursor: ProductCursor = None, limit: Limit = 20
) -> ProductPageOut:
    """The catalogue in sku order; `stock` is what can still be ordered. Pass `next_cursor`
    back as `cursor` for the next page."""
    items, last = await products.page(cursor, limit)
    return ProductPageOut(
        items=[product_out(product) for product in items],
        next_cursor=encode_cursor(last) if last is not None else None,
    )


async def create_product(
    body: ProductIn, response: Response, products: Products, _admin: Admin
) -> ProductOut:
    """A new product (administrators); 409 if the sku is taken."""
    product = await products.add(body.sku, body.name, body.price_cents, body.currency, body.stock)
    response.headers["Location"] = f"/api/v1/products/{product.sku}"
    return product_out(product)


async def read_product(sku: str, products: Products) -> ProductOut:
    return product_out(await products.get(sku))


async def patch_product(
    sku: str, body: ProductPatch, products: Products, _admin: Admin
) -> ProductOut:
    """Change the name or the price (administrators). Orders placed before keep the price
    they were quoted."""
    product = await products.update(sku, name=body.name, price_cents=body.price_cents)
    return product_out(product)


async def change_stock(sku: str, body: StockChange, products: Products, admin: Admin) -> ProductOut:
    """Add to (a restock) or take from (a correction) the stock on hand (administrators);
    409 if it would leave less than orders hold reserved."""
    product = await products.adjust_stock(sku, body.delta, body.reason, admin.user_id)
    return product_out(product)


def routers(catalogue: Catalogue) -> list[APIRouter]:
    api = APIRouter(
        tags=["inventory"],
        dependencies=[Depends(_Installed(catalogue)), rate_limit("default"), require_json],
    )
    api.add_api_route("/products", list_products, methods=["GET"], response_model=ProductPageOut)
    api.add_api_route(
        "/products",
        create_product,
        methods=["POST"],
        status_code=201,
        response_model=ProductOut,
        responses={409: {"description": "The sku is taken"}},
    )
    api.add_api_route("/products/{sku}", read_product, methods=["GET"], response_model=ProductOut)
    api.add_api_route(
        "/products/{sku}", patch_product, methods=["PATCH"], response_model=ProductOut
    )
    api.add_api_route(
        "/products/{sku}/stock",
        change_stock,
        methods=["POST"],
        response_model=ProductOut,
        responses={409: {"description": "The stock would fall below what is reserved"}},
    )
    return [api]
