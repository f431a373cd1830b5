"""A local HTTP server that answers as Stripe does, for the PaymentIntents, confirm and refunds
calls the Stripe gateway makes.

It keeps what Stripe keeps: intents, charges (failed ones too) and refunds; and it enforces
idempotency keys as Stripe does: the first answer under a key is stored, failures included, and
a request with the same key gets that answer again with `Idempotent-Replayed: true`, or a 400
`idempotency_error` when its parameters differ. Scripted replies (`server.replies`) come first,
before the idempotency layer, like Stripe's rate limiting and outages: nothing of them is stored.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from support.provider_servers import Recorded, Reply, ScriptedHttpServer

SECRET_KEY = "sk_test_townhall"

# Stripe's test PaymentMethods: what the card does when an intent is confirmed with it.
CARD_ERRORS: dict[str, dict[str, str] | None] = {
    "pm_card_visa": None,
    "pm_card_chargeDeclined": {
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    },
    "pm_card_chargeDeclinedInsufficientFunds": {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    },
    "pm_card_chargeDeclinedProcessingError": {
        "code": "processing_error",
        "message": "An error occurred while processing your card. Try again in a little bit.",
    },
}
NEVER_ANSWERS = "pm_card_townhallNeverAnswers"


@dataclass
class Charge:
    id: str
    payment_intent: str
    amount: int
    paid: bool


@dataclass
class Intent:
    id: str
    amount: int
    currency: str
    payment_method: str | None
    description: str
    status: str = "requires_confirmation"
    latest_charge: str | None = None
    last_payment_error: dict[str, Any] | None = None
    refunded: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "currency": self.currency,
            "payment_method": self.payment_method,
            "description": self.description,
            "status": self.status,
            "latest_charge": self.latest_charge,
            "last_payment_error": self.last_payment_error,
        }


@dataclass
class _Stored:
    request: tuple[str, str, tuple[tuple[str, str], ...]]
    reply: Reply


class StripeLikeServer(ScriptedHttpServer):
    """`hang_for`: how long the never-answering card keeps its request open (the client gives
    up first; the bound only lets the server stop soon)."""

    def __init__(self, *replies: Reply, hang_for: float = 1.0) -> None:
        super().__init__(*replies)
        self.hang_for = hang_for
        self.intents: dict[str, Intent] = {}
        self.charges: list[Charge] = []
        self.refunds: list[dict[str, Any]] = []
        self._stored: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        # Paths (their last segment) whose next request is done and stored, but answered only
        # after `hang_for`: an answer lost to the client's timeout.
        self.late: list[str] = []

    @property
    def captured_cents(self) -> int:
        return sum(charge.amount for charge in self.charges if charge.paid)

    async def answer(self, request: Recorded) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        if request.headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return _error(401, "invalid_request_error", None, "Invalid API Key provided.")
        params = tuple(parse_qsl(request.body.decode(), keep_blank_values=True))
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or key is None:
            return self._route(request.method, request.path, dict(params))
        fingerprint = (request.method, request.path, tuple(sorted(params)))
        stored = self._stored.get(key)
        if stored is not None:
            if stored.request != fingerprint:
                return _error(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than {key!r}.",
                )
            return Reply(
                stored.reply.status,
                stored.reply.body,
                {**stored.reply.headers, "Idempotent-Replayed": "true"},
            )
        reply = self._route(request.method, request.path, dict(params))
        if reply.delay:  # a request that never answered stored nothing
            return reply
        self._stored[key] = _Stored(fingerprint, reply)
        segment = request.path.rsplit("/", 1)[-1]
        if segment in self.late:
            self.late.remove(segment)
            return Reply(reply.status, reply.body, reply.headers, delay=self.hang_for)
        return reply

    def _route(self, method: str, path: str, params: dict[str, str]) -> Reply:
        parts = path.strip("/").split("/")
        match method, parts:
            case "POST", ["v1", "payment_intents"]:
                return self._create_intent(params)
            case "GET", ["v1", "payment_intents", intent_id]:
                intent = self.intents.get(intent_id)
                return Reply(200, intent.as_json()) if intent else _missing(intent_id, 404)
            case "POST", ["v1", "payment_intents", intent_id, "confirm"]:
                return self._confirm(intent_id, params)
            case "POST", ["v1", "refunds"]:
                return self._refund(params)
        return _error(404, "invalid_request_error", None, f"Unrecognized request URL {path}.")

    def _next(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _create_intent(self, params: dict[str, str]) -> Reply:
        if not params.get("amount", "").isdigit() or int(params["amount"]) < 1:
            return _error(400, "invalid_request_error", "parameter_invalid_integer", "amount")
        method = params.get("payment_method")
        if method is not None and method not in CARD_ERRORS and method != NEVER_ANSWERS:
            return _missing(method, 400)
        intent = Intent(
            self._next("pi"),
            int(params["amount"]),
            params.get("currency", ""),
            method,
            params.get("description", ""),
        )
        self.intents[intent.id] = intent
        if params.get("confirm") == "true":
            return self._confirm(intent.id, {})
        return Reply(200, intent.as_json())

    def _confirm(self, intent_id: str, params: dict[str, str]) -> Reply:
        intent = self.intents.get(intent_id)
        if intent is None:
            return _missing(intent_id, 404)
        if intent.status not in ("requires_confirmation", "requires_payment_method"):
            return _error(
                400,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                f"This PaymentIntent's status is {intent.status}.",
            )
        method = params.get("payment_method") or intent.payment_method
        if method == NEVER_ANSWERS:
            return Reply(504, delay=self.hang_for)
        if method not in CARD_ERRORS:
            return _missing(str(method), 400)
        charge = Charge(self._next("ch"), intent.id, intent.amount, CARD_ERRORS[method] is None)
        self.charges.append(charge)
        intent.latest_charge = charge.id
        card_error = CARD_ERRORS[method]
        if card_error is None:
            intent.status, intent.payment_method = "succeeded", method
            return Reply(200, intent.as_json())
        error = {"type": "card_error", "charge": charge.id, **card_error}
        intent.status, intent.payment_method = "requires_payment_method", None
        intent.last_payment_error = error
        return Reply(402, {"error": {**error, "payment_intent": intent.as_json()}})

    def _refund(self, params: dict[str, str]) -> Reply:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent.status != "succeeded":
            return _missing(params.get("payment_intent", ""), 400)
        amount = int(params.get("amount") or intent.amount - intent.refunded)
        if intent.refunded >= intent.amount:
            return _error(
                400,
                "invalid_request_error",
                "charge_already_refunded",
                f"Charge {intent.latest_charge} has already been refunded.",
            )
        if amount > intent.amount - intent.refunded:
            return _error(
                400,
                "invalid_request_error",
                "amount_too_large",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge.",
            )
        intent.refunded += amount
        refund = {
            "id": self._next("re"),
            "object": "refund",
            "amount": amount,
            "payment_intent": intent.id,
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return Reply(200, refund)


def _error(status: int, kind: str, code: str | None, message: str) -> Reply:
    error = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    return Reply(status, {"error": error})


def _missing(resource_id: str, status: int) -> Reply:
    return _error(
        status, "invalid_request_error", "resource_missing", f"No such resource: {resource_id!r}"
    )
