"""Payments' part of the order saga in choreography mode (issue 21): no orchestrator sends it
commands. The card is vaulted at placement (`vault`, called by the orders module through
`PaymentsFacade`); payments captures once inventory reports the stock reserved, refunds when
shipping reports a failure, and answers a buyer's cancel with a definitive compensation.

Every handler decides by the order's own record here (its vault row): an order without one is
an orchestrated order (its saga sends commands instead), and is ignored. Replies go through
`PaymentService` (its inbox under the group `payments.choreography`, the provider's idempotency
keys), so a redelivered event answers once.
"""

from __future__ import annotations

from townhall.payments.events import CapturePayment, RefundPayment
from townhall.payments.ports import (
    PaymentStore,
    Received,
    Vault,
    Vaulted,
    VaultStatus,
)
from townhall.payments.service import PaymentService
from townhall.platform.messaging import Retry
from townhall.platform.transaction import Transactions


class NotYet(Retry):
    """A cancel arrived while the capture is being asked: raised so the bus delivers the
    cancel again after `after` seconds (the capture's call timeout: by then it has its
    answer, and a captured payment is refunded)."""


def capture_key(order_id: str) -> str:
    return f"order-{order_id}.capture_payment"


def refund_key(order_id: str) -> str:
    return f"order-{order_id}.refund_payment"


class PaymentChoreography:
    def __init__(
        self,
        transactions: Transactions,
        vault: Vault,
        payments: PaymentStore,
        service: PaymentService,
        *,
        retry_after: float = 10.0,
    ) -> None:
        self._tx = transactions
        self._retry_after = retry_after
        self._vault = vault
        self._payments = payments
        self._service = service

    async def vault(
        self, order_id: str, payment_method: str, amount_cents: int, currency: str
    ) -> None:
        """Keep what pays for a choreographed order (before its `OrderPlaced` is published).
        Idempotent: the order's first vaulting stands."""
        vaulted = Vaulted(order_id, payment_method, amount_cents, currency, VaultStatus.VAULTED)
        async with self._tx.transaction() as conn:
            await self._vault.add(conn, vaulted)

    async def on_stock_reserved(self, order_id: str, received: Received) -> None:
        """Capture the order's total: `PaymentCaptured`, or `PaymentFailed` (declined, or
        `payment_timeout` when the provider does not answer within the call timeout)."""
        async with self._tx.transaction() as conn:
            vaulted = await self._vault.get(conn, order_id)
            # A redelivery after a crash mid-capture captures again, under the same key.
            moving = (VaultStatus.VAULTED, VaultStatus.CAPTURING)
            if vaulted is None or not await self._vault.move(
                conn, order_id, moving, VaultStatus.CAPTURING
            ):
                return  # not choreographed here, cancelled, or captured already
        command = CapturePayment(
            order_id,
            vaulted.amount_cents,
            vaulted.currency,
            vaulted.payment_method,
            capture_key(order_id),
        )
        await self._service.capture(command, received, timeout_fails=True)
        async with self._tx.transaction() as conn:
            await self._vault.move(conn, order_id, (VaultStatus.CAPTURING,), VaultStatus.DONE)

    async def on_shipment_failed(self, order_id: str, received: Received) -> None:
        """Shipping could not ship: give the money back (`PaymentRefunded`)."""
        await self._refund(order_id, received)

    async def on_cancel_requested(self, order_id: str, received: Received) -> None:
        """The buyer cancels: a capture not yet asked never will be, and a captured payment is
        refunded. Either way the answer is `PaymentRefunded` (amount 0 when nothing was
        captured): nothing is held and nothing will be."""
        async with self._tx.transaction() as conn:
            vaulted = await self._vault.get(conn, order_id)
            if vaulted is None:
                return
            await self._vault.move(conn, order_id, (VaultStatus.VAULTED,), VaultStatus.CANCELLED)
            vaulted = await self._vault.get(conn, order_id)
        assert vaulted is not None
        if vaulted.status is VaultStatus.CAPTURING:
            raise NotYet(self._retry_after, f"order {order_id}: the capture is being asked")
        await self._refund(order_id, received)

    async def _refund(self, order_id: str, received: Received) -> None:
        async with self._tx.connect() as conn:
            vaulted = await self._vault.get(conn, order_id)
            payment = await self._payments.get(conn, order_id)
        if vaulted is None:
            return
        refund = RefundPayment(
            order_id,
            (payment.payment_id if payment else None) or "",
            vaulted.amount_cents,
            vaulted.currency,
            refund_key(order_id),
        )
        # A capture that timed out was answered `payment_timeout`: not asked again here (the
        # provider may hang again and the compensation must answer); it stays `unknown`.
        await self._service.refund(refund, received, recheck_unknown=False)
