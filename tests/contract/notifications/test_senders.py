"""One contract for every sender adapter (EmailSender, SmsSender, PushSender), against real
local servers: an accepted message is `Delivered` with an id, a provider that is gone is a
`Transient` answer (never an exception), and a sender closes cleanly.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from support.provider_servers import Reply, ScriptedH2Server, ScriptedHttpServer
from townhall.notifications.adapters.apns import ApnsPushSender
from townhall.notifications.adapters.fcm import FcmPushSender
from townhall.notifications.adapters.sinks import PushSink, SmsSink
from townhall.notifications.adapters.smtp import SmtpEmailSender
from townhall.notifications.adapters.smtp_sink import SmtpSink
from townhall.notifications.adapters.twilio import TwilioSmsSender
from townhall.notifications.domain import (
    Delivered,
    DeviceToken,
    EmailMessage,
    PushMessage,
    PushPlatform,
    SmsMessage,
    Transient,
)

pytestmark = pytest.mark.timeout(30)


@dataclass
class Case:
    sender: Any
    message: Any
    # How many messages the provider side (a local server, or the sink itself) saw.
    received: Callable[[], int]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def smtp_case(stack: AsyncExitStack, down: bool) -> Case:
    if down:
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{free_port()}", "t@townhall.test")
        return Case(sender, email(), lambda: 0)
    sink = SmtpSink()
    await sink.start()
    stack.push_async_callback(sink.stop)
    return Case(SmtpEmailSender(sink.url, "t@townhall.test"), email(), lambda: sink.received)


async def twilio_case(stack: AsyncExitStack, down: bool) -> Case:
    if down:
        sender = TwilioSmsSender(f"http://AC1:t@127.0.0.1:{free_port()}", "+1500")
        return Case(sender, sms(), lambda: 0)
    server = ScriptedHttpServer(default=Reply(201, {"sid": "SM1"}))
    await server.start()
    stack.push_async_callback(server.stop)
    url = server.url.replace("http://", "http://AC1:t@")
    return Case(TwilioSmsSender(url, "+1500"), sms(), lambda: len(server.requests))


async def fcm_case(stack: AsyncExitStack, down: bool) -> Case:
    if down:
        sender = FcmPushSender("p", "t", base_url=f"http://127.0.0.1:{free_port()}")
        return Case(sender, push(), lambda: 0)
    server = ScriptedHttpServer(default=Reply(200, {"name": "projects/p/messages/1"}))
    await server.start()
    stack.push_async_callback(server.stop)
    return Case(FcmPushSender("p", "t", base_url=server.url), push(), lambda: len(server.requests))


async def apns_case(stack: AsyncExitStack, down: bool) -> Case:
    if down:
        sender = ApnsPushSender("org.t", "t", base_url=f"http://127.0.0.1:{free_port()}")
        return Case(sender, push(), lambda: 0)
    server = ScriptedH2Server(default=Reply(200, headers={"apns-id": "X1"}))
    await server.start()
    stack.push_async_callback(server.stop)
    sender = ApnsPushSender("org.t", "t", base_url=server.url)
    return Case(sender, push(), lambda: len(server.requests))


async def sms_sink_case(stack: AsyncExitStack, down: bool) -> Case:
    sink = SmsSink()
    return Case(sink, sms(), lambda: len(sink.sent))


async def push_sink_case(stack: AsyncExitStack, down: bool) -> Case:
    sink = PushSink()
    return Case(sink, push(), lambda: len(sink.sent))


def email() -> EmailMessage:
    return EmailMessage(uuid.uuid4(), "ada@example.org", "Hi", "text", "<p>text</p>")


def sms() -> SmsMessage:
    return SmsMessage(uuid.uuid4(), "+15005550006", "text")


def push() -> PushMessage:
    return PushMessage(uuid.uuid4(), DeviceToken(PushPlatform.FCM, "tok"), "Hi", "text")


Factory = Callable[[AsyncExitStack, bool], Awaitable[Case]]
NETWORK = [smtp_case, twilio_case, fcm_case, apns_case]
ALL = [*NETWORK, sms_sink_case, push_sink_case]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.mark.parametrize("factory", ALL, ids=lambda f: f.__name__.removesuffix("_case"))
async def test_accepted_message_is_delivered_with_a_provider_id_once(
    factory: Factory, stack: AsyncExitStack
) -> None:
    case = await factory(stack, False)
    try:
        outcome = await case.sender.send(case.message)
    finally:
        await case.sender.aclose()
    assert isinstance(outcome, Delivered) and outcome.provider_id
    assert case.received() == 1
    assert case.sender.name


@pytest.mark.parametrize("factory", NETWORK, ids=lambda f: f.__name__.removesuffix("_case"))
async def test_unreachable_provider_is_a_transient_answer_not_an_exception(
    factory: Factory, stack: AsyncExitStack
) -> None:
    case = await factory(stack, True)
    try:
        outcome = await case.sender.send(case.message)
    finally:
        await case.sender.aclose()
    assert isinstance(outcome, Transient) and outcome.error
