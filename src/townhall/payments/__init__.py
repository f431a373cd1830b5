"""Payments: captures and refunds behind a payment gateway, steps of the order saga (issue 21).

Other modules reach it through `townhall.payments.events`: the commands it takes (on
`payments.commands`) and the events it publishes (on `payments`); and the orders module,
placing a choreographed order, hands it the card through `PaymentsFacade.vault` (the one
synchronous call, so the card never travels in a public event).
"""

from __future__ import annotations

from pathlib import Path

from townhall.config import ConfigError, Settings
from townhall.payments.adapters.simulator import SimulatedPaymentGateway
from townhall.payments.adapters.sql import (
    OutboxPaymentEvents,
    SqlHandledCommands,
    SqlPayments,
    SqlVault,
)
from townhall.payments.adapters.stripe import StripePaymentGateway
from townhall.payments.choreography import PaymentChoreography
from townhall.payments.consumers import (
    CHOREOGRAPHY_GROUP,
    GROUP,
    choreography_consumers,
    command_consumer,
)
from townhall.payments.ports import PaymentGateway
from townhall.payments.service import PaymentService
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["PaymentsFacade", "module"]


class PaymentsFacade:
    """The synchronous call the orders module makes into payments: at the placement of a
    choreographed order, before its `OrderPlaced` is published, it hands over what pays."""

    def __init__(self, choreography: PaymentChoreography) -> None:
        self._choreography = choreography

    async def vault(
        self, order_id: str, payment_method: str, amount_cents: int, currency: str
    ) -> None:
        """Keep the order's payment method and total in payments' own table (idempotent);
        payments captures it once inventory reports the stock reserved."""
        await self._choreography.vault(order_id, payment_method, amount_cents, currency)


def gateway_for(settings: Settings) -> PaymentGateway:
    """The gateway `TOWNHALL_PAYMENTS_GATEWAY` names."""
    if settings.payments_gateway == "simulator":
        return SimulatedPaymentGateway()
    secret = settings.stripe_secret_key
    if secret is None or not secret.get_secret_value():
        raise ConfigError("TOWNHALL_STRIPE_SECRET_KEY", "the stripe gateway needs a secret key")
    return StripePaymentGateway(
        secret.get_secret_value(),
        base_url=settings.stripe_url,
        timeout=settings.payments_call_timeout,
    )


def _install(platform: Platform) -> Installed:
    settings, database = platform.settings, platform.database
    gateway = gateway_for(settings)
    service = PaymentService(
        database,
        SqlPayments(),
        OutboxPaymentEvents(),
        SqlHandledCommands(GROUP),
        gateway,
        call_timeout=settings.payments_call_timeout,
    )
    choreographed = PaymentService(
        database,
        SqlPayments(),
        OutboxPaymentEvents(),
        SqlHandledCommands(CHOREOGRAPHY_GROUP),
        gateway,
        call_timeout=settings.payments_call_timeout,
    )
    choreography = PaymentChoreography(
        database,
        SqlVault(),
        SqlPayments(),
        choreographed,
        retry_after=settings.payments_call_timeout,
    )
    attempts = settings.payments_max_attempts
    return Installed(
        consumers=[
            command_consumer(service, max_attempts=attempts),
            *choreography_consumers(choreography, max_attempts=attempts),
        ],
        facade=PaymentsFacade(choreography),
        on_stop=[gateway.aclose],
    )


module = ModuleSpec(
    name="payments",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
)
