"""Payments: captures and refunds behind a payment gateway, steps of the order saga (issue 21).

Other modules reach it only through `townhall.payments.events`: the commands it takes (on
`payments.commands`) and the events it publishes (on `payments`). It has no facade: nothing
calls it synchronously.
"""

from __future__ import annotations

from pathlib import Path

from townhall.config import ConfigError, Settings
from townhall.payments.adapters.simulator import SimulatedPaymentGateway
from townhall.payments.adapters.sql import OutboxPaymentEvents, SqlHandledCommands, SqlPayments
from townhall.payments.adapters.stripe import StripePaymentGateway
from townhall.payments.consumers import GROUP, command_consumer
from townhall.payments.ports import PaymentGateway
from townhall.payments.service import PaymentService
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["module"]


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
    return Installed(
        consumers=[command_consumer(service, max_attempts=settings.payments_max_attempts)],
        on_stop=[gateway.aclose],
    )


module = ModuleSpec(
    name="payments",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
)
