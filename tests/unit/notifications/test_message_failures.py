"""What a worker raises for a message of many deliveries when some of them failed: the bus
backs off, retries after a delay, or dead-letters according to it."""

from __future__ import annotations

import pytest

from townhall.notifications.service.delivering import TransientFailure, one_failure
from townhall.platform.messaging import Retry


def test_a_message_for_one_delivery_raises_its_error_as_it_is() -> None:
    error = Retry(7.0, "claimed by another worker")

    assert one_failure([error], asked=1) is error


def test_an_error_that_is_not_a_provider_answer_wins_so_the_message_is_dead_lettered() -> None:
    broken = ValueError("no template for sms")
    failures = [TransientFailure("421 try later"), broken, Retry(3.0)]

    assert one_failure(failures, asked=5) is broken


def test_a_transient_answer_among_waits_makes_a_transient_failure_naming_the_count() -> None:
    failures = [Retry(30.0, "claimed"), TransientFailure("503 busy")]

    raised = one_failure(failures, asked=4)

    assert type(raised) is TransientFailure
    assert str(raised) == "2 of 4 deliveries failed, first: claimed"


def test_when_every_failure_waits_the_message_waits_for_the_longest() -> None:
    failures = [Retry(2.0, "claimed"), Retry(45.0, "claimed"), Retry(10.0, "held")]

    raised = one_failure(failures, asked=3)

    assert isinstance(raised, Retry)
    assert raised.after == pytest.approx(45.0)
    assert str(raised) == "3 of 3 deliveries failed, first: claimed"
