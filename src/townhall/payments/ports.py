"""What the payments service needs from the outside world: the provider (`PaymentGateway`), its
own table (`PaymentStore`), where its events go (`PaymentEvents`) and the commands it already
handled (`HandledCommands`), and the values they exchange.

Every call carries an idempotency key, one per saga step and the same on every retry of that
step: a retried capture or refund with the same key never charges or refunds twice, and answers
what the first attempt answered. The same key with another request is a `Permanent`
`idempotency_error`, never a second charge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from townhall.payments.domain import CaptureOutcome, Payment, RefundOutcome
from townhall.payments.events import PaymentCaptured, PaymentFailed, PaymentRefunded
from townhall.platform.transaction import Transaction

Reply = PaymentCaptured | PaymentFailed | PaymentRefunded


@dataclass(frozen=True)
class Received:
    """The message a command came in: its id (what the inbox dedupes on), its correlation id
    (the saga's, which the reply carries on), and whether the bus will try it again after a
    failure (`final_attempt`: this is the last try before the dead letters)."""

    message_id: str
    correlation_id: str
    final_attempt: bool = False


class PaymentGateway(Protocol):
    """Captures and refunds with one provider. Answers are values (see the domain), never
    exceptions; a call that gets no answer at all waits until the caller cancels it, so every
    caller bounds it with its step timeout (`asyncio.wait_for`, or the saga's durable timer)."""

    name: str

    async def capture(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        description: str = "",
    ) -> CaptureOutcome:
        """Charge `amount_cents` (in the currency's minor unit; `currency` is ISO 4217, any
        case) to `payment_method`: a card number (the test cards of the README) or a provider's
        payment-method id (`pm_...`)."""
        ...

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str
    ) -> RefundOutcome:
        """Give back `amount_cents` of a captured payment (a compensation)."""
        ...

    async def aclose(self) -> None: ...


class PaymentStore(Protocol):
    """Payments' own table: one payment per order."""

    async def get(self, conn: Transaction, order_id: str) -> Payment | None: ...

    async def add(self, conn: Transaction, payment: Payment) -> bool:
        """Insert; False (and nothing written) when the order already has a payment."""

    async def update(self, conn: Transaction, payment: Payment) -> None:
        """Replace the order's payment with `payment`."""


class PaymentEvents(Protocol):
    """Where payments' events go: written in the caller's transaction (the outbox), keyed by the
    order id, carrying the command's correlation id and the command as their cause."""

    async def publish(self, conn: Transaction, event: Reply, cause: Received) -> None: ...


class HandledCommands(Protocol):
    """The inbox: the command messages already handled."""

    async def first_time(self, conn: Transaction, message_id: str) -> bool:
        """Record `message_id` as handled in the caller's transaction; False if it was."""


# --- choreography ---------------------------------------------------------------------------


class VaultStatus(StrEnum):
    VAULTED = "vaulted"  # handed over at placement; nothing asked of the provider yet
    CAPTURING = "capturing"  # the capture is asked (a cancel waits for its answer)
    DONE = "done"  # the capture has its answer
    CANCELLED = "cancelled"  # cancelled before any capture: none will be made


@dataclass(frozen=True)
class Vaulted:
    """What pays for a choreographed order, and how much, kept from its placement."""

    order_id: str
    payment_method: str
    amount_cents: int
    currency: str
    status: VaultStatus


class Vault(Protocol):
    """Payments' own table of the choreographed orders' payment methods."""

    async def add(self, conn: Transaction, vaulted: Vaulted) -> bool:
        """Insert; False (nothing written) when the order has one already."""

    async def get(self, conn: Transaction, order_id: str) -> Vaulted | None: ...

    async def move(
        self, conn: Transaction, order_id: str, from_: tuple[VaultStatus, ...], to: VaultStatus
    ) -> bool:
        """Set the status to `to` if it is one of `from_` (one conditional update): whether it
        moved."""
