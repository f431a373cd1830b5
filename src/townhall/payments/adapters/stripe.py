"""`StripePaymentGateway`: captures as Stripe PaymentIntents and refunds as Stripe Refunds, over
HTTP with httpx (form-encoded bodies, the secret key as a bearer token, an `Idempotency-Key` on
every POST).

A capture is two calls: create the PaymentIntent under the step's key, then confirm it. Stripe
stores the first answer under a key, failures included, so one key per attempt would replay a
processing error forever; the PaymentIntent is what keeps a capture single instead: it is
created once per key and can succeed only once. When the create is a replay (`Idempotent-
Replayed: true`, a retried step), the adapter reads the intent as it is now: succeeded is
`Captured` without a second confirm, declined is the same `Declined` without asking the card
again, and only after a processing error is it confirmed again, under a key naming the failed
charge, so two racing retries still send one confirm.

Card numbers are not sent to Stripe (raw numbers need PCI scope; a real client tokenizes the card
in the browser). The test card numbers of the README map to Stripe's test PaymentMethods
(`4242424242424242` -> `pm_card_visa`, ...), a `pm_...` id passes through, and any other number
is `Declined("incorrect_number")` without a call. The never-answering card maps to
`pm_card_townhallNeverAnswers`, which only the local Stripe-like test server knows (Stripe answers
it with `resource_missing`).
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import httpx

from townhall.payments.domain import (
    IDEMPOTENCY_ERROR,
    PROCESSING_ERROR,
    Captured,
    CaptureOutcome,
    Declined,
    Permanent,
    Refunded,
    RefundOutcome,
    Transient,
)

STRIPE_TEST_PAYMENT_METHODS = {
    "4242424242424242": "pm_card_visa",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
    "4000000000000119": "pm_card_chargeDeclinedProcessingError",
    "4000000000001117": "pm_card_townhallNeverAnswers",
}


class StripePaymentGateway:
    def __init__(
        self,
        secret_key: str,
        *,
        base_url: str = "https://api.stripe.com",
        timeout: float = 10.0,
        name: str = "stripe",
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret_key}"},
            timeout=timeout,
        )

    async def capture(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        description: str = "",
    ) -> CaptureOutcome:
        method = _stripe_payment_method(payment_method)
        if method is None:
            return Declined("incorrect_number", "The card number is not a test card.")
        form = {
            "amount": str(amount_cents),
            "currency": currency.lower(),
            "payment_method": method,
            "payment_method_types[]": "card",
            "description": description,
        }
        created = await self._post("/v1/payment_intents", form, idempotency_key)
        if not isinstance(created, httpx.Response):
            return created
        if not created.is_success:
            return _failure(created)
        intent = _json(created)
        if "id" not in intent:
            return Transient(f"Stripe answered {created.status_code} without a payment intent")
        if created.headers.get("idempotent-replayed") == "true":
            current = await self._send(
                self._client.build_request("GET", f"/v1/payment_intents/{intent['id']}")
            )
            if not isinstance(current, httpx.Response):
                return current
            if not current.is_success:
                return _failure(current)
            intent = _json(current)
        return await self._settle(intent, method, idempotency_key)

    async def _settle(self, intent: dict[str, Any], method: str, key: str) -> CaptureOutcome:
        settled = _settled(intent)
        if settled is not None:
            return settled
        # Never confirmed, or its last attempt failed on Stripe's side: (re)confirm. The key
        # names the attempt it follows, so it is new per attempt and the same for racing retries.
        attempt = intent.get("latest_charge") or "first"
        confirmed = await self._post(
            f"/v1/payment_intents/{intent['id']}/confirm",
            {"payment_method": method},
            f"{key}:confirm:{attempt}",
        )
        if not isinstance(confirmed, httpx.Response):
            return confirmed
        if not confirmed.is_success:
            return _failure(confirmed)
        intent = _json(confirmed)
        return _settled(intent) or Transient(f"payment intent left {intent.get('status')!r}")

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str
    ) -> RefundOutcome:
        form = {"payment_intent": payment_id, "amount": str(amount_cents)}
        answer = await self._post("/v1/refunds", form, idempotency_key)
        if not isinstance(answer, httpx.Response):
            return answer
        if not answer.is_success:
            failure = _failure(answer)
            if isinstance(failure, Declined):  # a refund has no card to decline
                return Permanent(failure.decline_code, failure.message)
            return failure
        refund = _json(answer)
        return Refunded(str(refund["id"]), payment_id, int(refund.get("amount", amount_cents)))

    async def _post(
        self, path: str, form: dict[str, str], idempotency_key: str
    ) -> httpx.Response | Transient:
        request = self._client.build_request(
            "POST", path, data=form, headers={"Idempotency-Key": idempotency_key}
        )
        return await self._send(request)

    async def _send(self, request: httpx.Request) -> httpx.Response | Transient:
        try:
            return await self._client.send(request)
        except httpx.TransportError as exc:
            # A timeout may have reached Stripe: the retry with the same key is what is safe.
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
            return Transient(f"{kind}: {type(exc).__name__}: {exc}".rstrip(": "))

    async def aclose(self) -> None:
        await self._client.aclose()


def _stripe_payment_method(payment_method: str) -> str | None:
    if payment_method.startswith("pm_"):
        return payment_method
    return STRIPE_TEST_PAYMENT_METHODS.get(payment_method)


def _settled(intent: dict[str, Any]) -> CaptureOutcome | None:
    """What a PaymentIntent's state answers, or None when it still needs a confirm."""
    status = intent.get("status")
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        return Captured(str(intent["id"]))
    if status == "processing":
        return Transient("the payment is still processing")
    if status == "requires_action":
        return Declined("authentication_required", "The card asks for authentication.")
    if status == "canceled":
        return Permanent("payment_intent_canceled", f"{intent['id']} was canceled")
    if status == "requires_payment_method" and error and error.get("code") != PROCESSING_ERROR:
        return _declined(error)
    return None


def _failure(response: httpx.Response) -> Declined | Transient | Permanent:
    """Stripe's error answer as an outcome: a card error is a decline (or, for a processing
    error, worth a retry); 409, 429 and 5xx are worth a retry; any other 4xx is permanent."""
    error = _json(response).get("error") or {}
    code = str(error.get("code") or error.get("type") or response.status_code)
    message = str(error.get("message", ""))
    status = response.status_code
    if status == 402 and error.get("type") == "card_error":
        if error.get("code") == PROCESSING_ERROR:
            return Transient(f"{PROCESSING_ERROR}: {message}".rstrip(": "))
        return _declined(error)
    if status in (409, 429) or status >= 500:
        return Transient(f"{status} {code}: {message}".rstrip(": "), _retry_after(response))
    if error.get("type") == IDEMPOTENCY_ERROR:
        return Permanent(IDEMPOTENCY_ERROR, message)
    return Permanent(code, message)


def _declined(error: dict[str, Any]) -> Declined:
    # Stripe's `generic_decline` says no more than its `card_declined` code; keep the code then.
    decline_code = error.get("decline_code")
    if not decline_code or decline_code == "generic_decline":
        decline_code = error.get("code") or "card_declined"
    return Declined(str(decline_code), str(error.get("message", "")))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
