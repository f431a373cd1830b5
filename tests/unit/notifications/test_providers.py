"""Provider policies: the token bucket queues a burst; failover skips a failing provider."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from townhall.notifications.adapters.sinks import SmsSink
from townhall.notifications.domain import (
    Delivered,
    Permanent,
    SendOutcome,
    SmsMessage,
    Transient,
)
from townhall.notifications.providers import (
    FailoverSender,
    LoopTimer,
    RateLimitedSender,
    TokenBucket,
)


class ManualTimer:
    """Virtual time: `sleep` moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ScriptedProvider:
    """A sender answering with scripted outcomes in turn (then Delivered)."""

    def __init__(self, name: str, *outcomes: SendOutcome) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.sent: list[SmsMessage] = []

    async def send(self, message: SmsMessage) -> SendOutcome:
        self.sent.append(message)
        return self.outcomes.pop(0) if self.outcomes else Delivered(f"{self.name}-ok")

    async def aclose(self) -> None:
        pass


def sms() -> SmsMessage:
    return SmsMessage(uuid.uuid4(), "+15005550006", "hi")


async def test_burst_beyond_the_bucket_waits_for_tokens_instead_of_failing() -> None:
    timer = ManualTimer()
    bucket = TokenBucket(rate=10, burst=5, timer=timer)
    finished: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        finished.append(timer.now)

    await asyncio.gather(*(one() for _ in range(15)))
    assert len(finished) == 15
    assert finished[:5] == [0.0] * 5  # the burst goes at once
    # then one every 1/rate seconds, in order
    assert finished[5:] == pytest.approx([0.1 * n for n in range(1, 11)])


async def test_bucket_refills_while_idle_but_never_beyond_its_burst() -> None:
    timer = ManualTimer()
    bucket = TokenBucket(rate=2, burst=3, timer=timer)
    for _ in range(3):
        await bucket.acquire()
    timer.now += 100  # a long idle time earns at most `burst` tokens
    for _ in range(3):
        await bucket.acquire()
    assert timer.sleeps == []
    await bucket.acquire()
    assert timer.sleeps == [pytest.approx(0.5)]


async def test_bucket_paces_real_time_on_the_loop_timer() -> None:
    bucket = TokenBucket(rate=50, burst=1, timer=LoopTimer())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(6):
        await bucket.acquire()
    assert loop.time() - started >= 5 / 50 * 0.9


def test_bucket_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


async def test_rate_limited_sender_delivers_through_its_provider_at_the_bucket_pace() -> None:
    timer = ManualTimer()
    sink = SmsSink()
    sender = RateLimitedSender(sink, TokenBucket(rate=1, burst=1, timer=timer))
    outcomes = [await sender.send(sms()) for _ in range(3)]
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert len(sink.sent) == 3 and timer.now == pytest.approx(2.0)
    assert sender.name == sink.name


async def test_provider_failing_n_times_in_a_row_is_skipped_for_the_cooldown() -> None:
    timer = ManualTimer()
    first = ScriptedProvider("first", *[Transient("503")] * 3)
    second = ScriptedProvider("second")
    failover = FailoverSender([first, second], threshold=3, cooldown=60, timer=timer)

    answers = [await failover.send(sms()) for _ in range(3)]
    assert answers == [Transient("503")] * 3  # returned to the caller, who retries later
    assert (len(first.sent), len(second.sent)) == (3, 0)

    assert await failover.send(sms()) == Delivered("second-ok")  # first is cooling down
    assert (len(first.sent), len(second.sent)) == (3, 1)

    timer.now += 61  # the cool-down is over: first serves again
    assert await failover.send(sms()) == Delivered("first-ok")
    assert (len(first.sent), len(second.sent)) == (4, 1)


async def test_success_or_permanent_refusal_resets_the_failure_streak() -> None:
    timer = ManualTimer()
    first = ScriptedProvider(
        "first",
        Transient("429"),
        Transient("429"),
        Permanent("invalid number"),
        Transient("429"),
        Transient("429"),
    )
    second = ScriptedProvider("second")
    failover = FailoverSender([first, second], threshold=3, cooldown=60, timer=timer)
    for _ in range(6):
        await failover.send(sms())
    assert (len(first.sent), len(second.sent)) == (6, 0)


async def test_back_from_cooldown_one_more_failure_cools_down_again() -> None:
    timer = ManualTimer()
    first = ScriptedProvider("first", *[Transient("timeout")] * 4)
    second = ScriptedProvider("second")
    failover = FailoverSender([first, second], threshold=3, cooldown=10, timer=timer)
    for _ in range(3):
        await failover.send(sms())
    timer.now += 11
    assert await failover.send(sms()) == Transient("timeout")  # the probe fails
    assert await failover.send(sms()) == Delivered("second-ok")


async def test_when_every_provider_cools_down_the_answer_says_when_to_retry() -> None:
    timer = ManualTimer()
    only = ScriptedProvider("only", *[Transient("503")] * 2)
    failover = FailoverSender([only], threshold=2, cooldown=30, timer=timer)
    await failover.send(sms())
    await failover.send(sms())
    timer.now += 10
    outcome = await failover.send(sms())
    assert isinstance(outcome, Transient) and outcome.retry_after == pytest.approx(20)
    assert len(only.sent) == 2
    assert [h.name for h in failover.health] == ["only"]
