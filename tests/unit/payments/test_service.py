"""The payments service on in-memory ports and the provider simulator: a capture charges an
order once whatever the deliveries, a decline is a failure event, a transient answer is
retried by the bus (and answered on the last attempt), a refund gives the money back once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from support.participant_fakes import (
    MemoryHandledCommands,
    MemoryPayments,
    MemoryTransactions,
    PaymentEventsFake,
)
from townhall.payments.adapters.simulator import NEVER_ANSWERING_CARD, SimulatedPaymentGateway
from townhall.payments.domain import (
    PROVIDER_UNAVAILABLE,
    CaptureOutcome,
    Declined,
    PaymentStatus,
    Permanent,
    RefundOutcome,
    Transient,
)
from townhall.payments.events import (
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
)
from townhall.payments.ports import Received
from townhall.payments.service import PaymentService, ProviderUnavailable, RefundRefused
from townhall.platform.messaging import Retry

pytestmark = pytest.mark.timeout(10)

SUCCEEDS = "4242424242424242"
DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
PROCESSING_ERROR = "4000000000000119"


class Scripted:
    """A gateway that answers the scripted outcomes first, then passes calls to the simulator.
    `charge_then_time_out`: the first capture charges at the simulator but answers Transient,
    as a provider that took the request and never answered in time."""

    def __init__(
        self,
        *captures: CaptureOutcome,
        refunds: tuple[RefundOutcome, ...] = (),
        charge_then_time_out: bool = False,
    ) -> None:
        self.name = "scripted"
        self.simulator = SimulatedPaymentGateway()
        self.captures = list(captures)
        self.refunds = list(refunds)
        self.charge_then_time_out = charge_then_time_out
        self.capture_calls = 0
        self.refund_calls = 0

    async def capture(self, **request) -> CaptureOutcome:
        self.capture_calls += 1
        if self.captures:
            return self.captures.pop(0)
        outcome = await self.simulator.capture(**request)
        if self.charge_then_time_out:
            self.charge_then_time_out = False
            return Transient("timeout: no answer")
        return outcome

    async def refund(self, **request) -> RefundOutcome:
        self.refund_calls += 1
        if self.refunds:
            return self.refunds.pop(0)
        return await self.simulator.refund(**request)

    async def aclose(self) -> None:
        return None


class Payments:
    def __init__(self, gateway=None, *, call_timeout: float = 5.0) -> None:
        self.gateway = gateway or SimulatedPaymentGateway()
        self.store = MemoryPayments()
        self.events = PaymentEventsFake()
        self.handled = MemoryHandledCommands()
        self.service = PaymentService(
            MemoryTransactions(),
            self.store,
            self.events,
            self.handled,
            self.gateway,
            call_timeout=call_timeout,
        )

    @property
    def simulator(self) -> SimulatedPaymentGateway:
        gateway = self.gateway
        return gateway.simulator if isinstance(gateway, Scripted) else gateway

    def charged_cents(self) -> int:
        return sum(p.amount_cents for p in self.simulator.payments.values())

    def refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.simulator.refunds)


def capture_of(card: str = SUCCEEDS, order_id: str = "o-1", amount: int = 7000) -> CapturePayment:
    return CapturePayment(order_id, amount, "EUR", card, f"order-{order_id}.capture_payment")


def refund_of(order_id: str = "o-1", payment_id: str = "", amount: int = 7000) -> RefundPayment:
    return RefundPayment(order_id, payment_id, amount, "EUR", f"order-{order_id}.refund_payment")


def message(final: bool = False, correlation: str = "saga-1") -> Received:
    return Received(str(uuid.uuid4()), correlation, final_attempt=final)


async def test_a_capture_charges_the_order_records_it_and_answers_captured_with_the_saga_ids():
    payments = Payments()
    received = message()
    await payments.service.capture(capture_of(), received)

    [(event, cause)] = payments.events.published
    assert isinstance(event, PaymentCaptured)
    assert (event.order_id, event.amount_cents, event.currency) == ("o-1", 7000, "EUR")
    assert event.payment_id in payments.simulator.payments
    assert cause == received  # the reply carries the command's correlation and cause
    stored = payments.store.rows["o-1"]
    assert (stored.status, stored.payment_id, stored.refunded_cents) == (
        PaymentStatus.CAPTURED,
        event.payment_id,
        0,
    )
    assert stored.payment_method is None  # the card is not kept once the capture settled
    assert payments.charged_cents() == 7000


@pytest.mark.parametrize(
    ("card", "code"), [(DECLINED, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")]
)
async def test_a_declined_card_answers_payment_failed_with_the_decline_code(card, code):
    payments = Payments()
    await payments.service.capture(capture_of(card), message())

    assert payments.events.events == [PaymentFailed("o-1", code)]
    assert payments.store.rows["o-1"].status is PaymentStatus.FAILED
    assert payments.charged_cents() == 0


async def test_a_permanent_answer_is_a_failure_event_with_the_providers_code():
    payments = Payments(Scripted(Permanent("resource_missing", "no such method")))
    await payments.service.capture(capture_of(), message())
    assert payments.events.events == [PaymentFailed("o-1", "resource_missing")]


async def test_a_transient_answer_raises_for_the_bus_to_retry_and_records_nothing():
    payments = Payments()
    with pytest.raises(ProviderUnavailable, match="processing_error"):
        await payments.service.capture(capture_of(PROCESSING_ERROR), message())
    assert payments.events.published == []
    assert payments.store.rows == {}
    assert payments.handled.handled == set()  # the retry is not taken for a duplicate


async def test_a_retry_after_a_transient_answer_captures_once_with_the_same_key():
    gateway = Scripted(Transient("processing_error: try again"))
    payments = Payments(gateway)
    received = message()
    with pytest.raises(ProviderUnavailable):
        await payments.service.capture(capture_of(), received)
    await payments.service.capture(capture_of(), received)  # the bus's second attempt

    [event] = payments.events.events
    assert isinstance(event, PaymentCaptured)
    assert gateway.capture_calls == 2
    assert payments.charged_cents() == 7000


async def test_a_providers_retry_after_hint_becomes_the_bus_retry_delay():
    payments = Payments(Scripted(Transient("rate limited", retry_after=3.0)))
    with pytest.raises(Retry) as raised:
        await payments.service.capture(capture_of(), message())
    assert raised.value.after == 3.0


async def test_a_call_that_never_answers_is_cut_off_by_the_call_timeout_as_transient():
    payments = Payments(call_timeout=0.05)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderUnavailable, match="timeout"):
        await payments.service.capture(capture_of(NEVER_ANSWERING_CARD), message())
    assert asyncio.get_running_loop().time() - started < 1.0
    assert payments.events.published == []


async def test_the_last_attempt_without_a_final_answer_answers_failed_and_keeps_it_unknown():
    payments = Payments()
    await payments.service.capture(capture_of(PROCESSING_ERROR), message(final=True))

    assert payments.events.events == [PaymentFailed("o-1", PROVIDER_UNAVAILABLE)]
    stored = payments.store.rows["o-1"]
    assert stored.status is PaymentStatus.UNKNOWN
    assert stored.payment_method == PROCESSING_ERROR  # to ask the provider again on a refund


async def test_a_duplicate_capture_command_charges_once_and_answers_the_same_payment_twice():
    payments = Payments()
    await payments.service.capture(capture_of(), message())
    await payments.service.capture(capture_of(), message())  # the same command, sent again

    first, second = payments.events.events
    assert first == second
    assert payments.charged_cents() == 7000
    assert len(payments.simulator.payments) == 1


async def test_a_redelivered_message_is_answered_once():
    payments = Payments()
    received = message()
    await payments.service.capture(capture_of(), received)
    await payments.service.capture(capture_of(), received)
    assert len(payments.events.published) == 1


async def test_racing_deliveries_of_one_capture_charge_once():
    payments = Payments()
    await asyncio.gather(*(payments.service.capture(capture_of(), message()) for _ in range(5)))
    assert payments.charged_cents() == 7000
    assert {event.payment_id for event in payments.events.events} == set(
        payments.simulator.payments
    )


async def test_a_duplicate_capture_after_a_decline_answers_the_decline_without_a_new_call():
    gateway = Scripted()
    payments = Payments(gateway)
    await payments.service.capture(capture_of(DECLINED), message())
    await payments.service.capture(capture_of(DECLINED), message())
    assert payments.events.events == [PaymentFailed("o-1", "card_declined")] * 2
    assert gateway.capture_calls == 1


# --- refunds --------------------------------------------------------------------------------


async def captured(payments: Payments) -> str:
    await payments.service.capture(capture_of(), message())
    event = payments.events.events[-1]
    assert isinstance(event, PaymentCaptured)
    return event.payment_id


async def test_a_refund_gives_the_captured_money_back_and_answers_refunded():
    payments = Payments()
    payment_id = await captured(payments)
    await payments.service.refund(refund_of(payment_id=payment_id), message())

    assert payments.events.events[-1] == PaymentRefunded("o-1", payment_id, 7000, "EUR")
    stored = payments.store.rows["o-1"]
    assert (stored.status, stored.refunded_cents) == (PaymentStatus.REFUNDED, 7000)
    assert payments.refunded_cents() == 7000


async def test_refunding_twice_refunds_once_and_answers_refunded_both_times():
    gateway = Scripted()
    payments = Payments(gateway)
    payment_id = await captured(payments)
    await payments.service.refund(refund_of(payment_id=payment_id), message())
    await payments.service.refund(refund_of(payment_id=payment_id), message())

    refunded = PaymentRefunded("o-1", payment_id, 7000, "EUR")
    assert payments.events.events[-2:] == [refunded, refunded]
    assert gateway.refund_calls == 1
    assert payments.refunded_cents() == 7000


async def test_racing_refunds_of_one_order_refund_once():
    payments = Payments()
    payment_id = await captured(payments)
    await asyncio.gather(
        *(payments.service.refund(refund_of(payment_id=payment_id), message()) for _ in range(4))
    )
    assert payments.refunded_cents() == 7000
    assert payments.store.rows["o-1"].refunded_cents == 7000


async def test_refunding_an_order_never_captured_answers_refunded_zero_without_a_call():
    gateway = Scripted()
    payments = Payments(gateway)
    await payments.service.refund(refund_of(), message())
    assert payments.events.events == [PaymentRefunded("o-1", "", 0, "EUR")]
    assert gateway.refund_calls == 0


async def test_refunding_a_declined_order_answers_refunded_zero():
    gateway = Scripted()
    payments = Payments(gateway)
    await payments.service.capture(capture_of(DECLINED), message())
    await payments.service.refund(refund_of(), message())
    assert payments.events.events[-1] == PaymentRefunded("o-1", "", 0, "EUR")
    assert gateway.refund_calls == 0


async def test_a_refund_finds_a_capture_that_happened_after_the_last_attempt_timed_out():
    # The provider charged but never answered in time: the capture ended UNKNOWN and the saga
    # heard PaymentFailed. The refund asks the capture again under its key, finds the charge
    # and gives it back.
    gateway = Scripted(charge_then_time_out=True)
    payments = Payments(gateway)
    await payments.service.capture(capture_of(), message(final=True))
    assert payments.events.events == [PaymentFailed("o-1", PROVIDER_UNAVAILABLE)]
    assert payments.charged_cents() == 7000

    await payments.service.refund(refund_of(), message())

    [payment_id] = payments.simulator.payments
    assert payments.events.events[-1] == PaymentRefunded("o-1", payment_id, 7000, "EUR")
    assert payments.refunded_cents() == 7000
    stored = payments.store.rows["o-1"]
    assert (stored.status, stored.payment_method) == (PaymentStatus.REFUNDED, None)


async def test_a_refund_of_an_unknown_capture_that_never_charged_answers_refunded_zero():
    gateway = Scripted(Transient("timeout: no answer"), Declined("card_declined"))
    payments = Payments(gateway)
    await payments.service.capture(capture_of(), message(final=True))
    await payments.service.refund(refund_of(), message())

    assert payments.events.events[-1] == PaymentRefunded("o-1", "", 0, "EUR")
    assert payments.store.rows["o-1"].status is PaymentStatus.FAILED
    assert gateway.refund_calls == 0


async def test_a_transient_refund_raises_for_the_bus_to_retry_and_records_nothing():
    gateway = Scripted(refunds=(Transient("503 busy"),))
    payments = Payments(gateway)
    payment_id = await captured(payments)
    with pytest.raises(ProviderUnavailable):
        await payments.service.refund(refund_of(payment_id=payment_id), message(final=True))
    assert payments.store.rows["o-1"].refunded_cents == 0
    assert not any(isinstance(e, PaymentRefunded) for e in payments.events.events)


async def test_a_refund_the_provider_refuses_for_good_goes_to_a_person_not_to_the_saga():
    gateway = Scripted(refunds=(Permanent("resource_missing", "no such payment"),))
    payments = Payments(gateway)
    payment_id = await captured(payments)
    with pytest.raises(RefundRefused, match="resource_missing"):
        await payments.service.refund(refund_of(payment_id=payment_id), message())
    assert not any(isinstance(e, PaymentRefunded) for e in payments.events.events)


async def test_a_refund_the_provider_says_is_already_done_is_recorded_as_refunded():
    gateway = Scripted(refunds=(Permanent("charge_already_refunded", "refunded"),))
    payments = Payments(gateway)
    payment_id = await captured(payments)
    await payments.service.refund(refund_of(payment_id=payment_id), message())
    assert payments.events.events[-1] == PaymentRefunded("o-1", payment_id, 7000, "EUR")
    assert payments.store.rows["o-1"].status is PaymentStatus.REFUNDED
