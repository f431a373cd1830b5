"""Twilio, FCM and APNs adapters against real local HTTP servers answering scripted codes."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs

import pytest

from support.provider_servers import Reply, ScriptedH2Server, ScriptedHttpServer
from townhall.notifications.adapters.apns import ApnsPushSender
from townhall.notifications.adapters.fcm import FcmPushSender
from townhall.notifications.adapters.twilio import TwilioSmsSender, split_gateway_url
from townhall.notifications.domain import (
    Delivered,
    DeviceToken,
    Permanent,
    PushMessage,
    PushPlatform,
    SmsMessage,
    Transient,
)
from townhall.platform.clock import FrozenClock

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def http_server() -> AsyncIterator[ScriptedHttpServer]:
    server = ScriptedHttpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def h2_server() -> AsyncIterator[ScriptedH2Server]:
    server = ScriptedH2Server()
    await server.start()
    yield server
    await server.stop()


def twilio_for(server: ScriptedHttpServer, **options: float) -> TwilioSmsSender:
    base = server.url.replace("http://", "http://AC123:s3cret@")
    return TwilioSmsSender(base, "+15005550000", clock=FrozenClock(NOW), **options)


def sms() -> SmsMessage:
    return SmsMessage(uuid.uuid4(), "+15005550006", "Your code is 123456")


def push(platform: PushPlatform = PushPlatform.FCM) -> PushMessage:
    return PushMessage(
        uuid.uuid4(), DeviceToken(platform, "device-token-1"), "Hi", "Welcome", {"kind": "x"}
    )


# --- Twilio ---------------------------------------------------------------------------------


def test_gateway_url_splits_into_base_sid_and_token() -> None:
    assert split_gateway_url("https://AC1:t%2Fk@api.twilio.com/") == (
        "https://api.twilio.com",
        "AC1",
        "t/k",
    )
    with pytest.raises(ValueError, match="SID"):
        split_gateway_url("https://api.twilio.com")


async def test_sms_is_a_form_post_with_basic_auth_to_the_account_messages_resource(
    http_server: ScriptedHttpServer,
) -> None:
    http_server.replies.append(Reply(201, {"sid": "SM42", "status": "queued"}))
    sender = twilio_for(http_server)
    try:
        outcome = await sender.send(sms())
    finally:
        await sender.aclose()
    assert outcome == Delivered("SM42", "201")
    (request,) = http_server.requests
    assert (request.method, request.path) == ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    assert request.headers["authorization"] == "Basic QUMxMjM6czNjcmV0"  # AC123:s3cret
    assert parse_qs(request.body.decode()) == {
        "To": ["+15005550006"],
        "From": ["+15005550000"],
        "Body": ["Your code is 123456"],
    }


async def test_invalid_number_is_permanent(http_server: ScriptedHttpServer) -> None:
    http_server.replies.append(
        Reply(400, {"code": 21211, "message": "The 'To' number is not valid", "status": 400})
    )
    sender = twilio_for(http_server)
    try:
        outcome = await sender.send(sms())
    finally:
        await sender.aclose()
    assert isinstance(outcome, Permanent) and outcome.reason.startswith("invalid number: 400")
    assert "21211" in outcome.reason and not outcome.token_dead


async def test_429_and_5xx_are_transient_honouring_retry_after_in_seconds_or_as_a_date(
    http_server: ScriptedHttpServer,
) -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    http_server.replies += [
        Reply(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "7"}),
        Reply(503, None, {"Retry-After": later}),
        Reply(500),
    ]
    sender = twilio_for(http_server)
    try:
        limited, unavailable, broken = [await sender.send(sms()) for _ in range(3)]
    finally:
        await sender.aclose()
    assert limited == Transient("429 20429 Too Many Requests", retry_after=7.0)
    assert unavailable == Transient("503", retry_after=90.0)
    assert broken == Transient("500", retry_after=None)


async def test_slow_gateway_times_out_as_transient(http_server: ScriptedHttpServer) -> None:
    http_server.replies.append(Reply(201, {"sid": "late"}, delay=1.0))
    sender = twilio_for(http_server, timeout=0.2)
    try:
        outcome = await sender.send(sms())
    finally:
        await sender.aclose()
    assert isinstance(outcome, Transient) and outcome.error.startswith("timeout")


async def test_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = TwilioSmsSender(f"http://AC1:t@127.0.0.1:{port}", "+1500")
    try:
        outcome = await sender.send(sms())
    finally:
        await sender.aclose()
    assert isinstance(outcome, Transient) and "ConnectError" in outcome.error


# --- FCM ------------------------------------------------------------------------------------


def fcm_error(status: int, code: str) -> Reply:
    detail = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
    return Reply(status, {"error": {"code": status, "status": code, "details": [detail]}})


async def test_fcm_posts_a_v1_message_with_a_fresh_bearer_token(
    http_server: ScriptedHttpServer,
) -> None:
    http_server.replies.append(Reply(200, {"name": "projects/townhall/messages/0:1"}))
    tokens = iter(["token-a"])

    async def access_token() -> str:
        return next(tokens)

    sender = FcmPushSender("townhall", access_token, base_url=http_server.url)
    message = push()
    try:
        outcome = await sender.send(message)
    finally:
        await sender.aclose()
    assert outcome == Delivered("projects/townhall/messages/0:1", "200")
    (request,) = http_server.requests
    assert request.path == "/v1/projects/townhall/messages:send"
    assert request.headers["authorization"] == "Bearer token-a"
    assert json.loads(request.body) == {
        "message": {
            "token": "device-token-1",
            "notification": {"title": "Hi", "body": "Welcome"},
            "data": {"notification_id": str(message.notification_id), "kind": "x"},
        }
    }


async def test_fcm_unregistered_token_is_permanent_and_dead(
    http_server: ScriptedHttpServer,
) -> None:
    http_server.replies += [fcm_error(404, "UNREGISTERED"), fcm_error(400, "INVALID_ARGUMENT")]
    sender = FcmPushSender("townhall", "static", base_url=http_server.url)
    try:
        gone, invalid = await sender.send(push()), await sender.send(push())
    finally:
        await sender.aclose()
    assert gone == Permanent("404 UNREGISTERED", token_dead=True)
    assert invalid == Permanent("400 INVALID_ARGUMENT", token_dead=False)


async def test_fcm_quota_and_unavailable_are_transient(http_server: ScriptedHttpServer) -> None:
    quota = fcm_error(429, "QUOTA_EXCEEDED")
    quota.headers["Retry-After"] = "30"
    http_server.replies += [quota, fcm_error(503, "UNAVAILABLE")]
    sender = FcmPushSender("townhall", "static", base_url=http_server.url)
    try:
        limited, down = await sender.send(push()), await sender.send(push())
    finally:
        await sender.aclose()
    assert limited == Transient("429 QUOTA_EXCEEDED", retry_after=30.0)
    assert down == Transient("503 UNAVAILABLE")


# --- APNs -----------------------------------------------------------------------------------


async def test_apns_sends_over_http2_with_token_auth(h2_server: ScriptedH2Server) -> None:
    h2_server.replies.append(Reply(200, headers={"apns-id": "A1B2"}))
    sender = ApnsPushSender("org.townhall.app", "jwt-123", base_url=h2_server.url)
    message = push(PushPlatform.APNS)
    try:
        outcome = await sender.send(message)
    finally:
        await sender.aclose()
    assert outcome == Delivered("A1B2", "200")
    (request,) = h2_server.requests
    assert request.http_version == "2"
    assert (request.method, request.path) == ("POST", "/3/device/device-token-1")
    assert request.headers["authorization"] == "bearer jwt-123"
    assert request.headers["apns-topic"] == "org.townhall.app"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-id"] == str(message.notification_id)
    assert json.loads(request.body)["aps"] == {"alert": {"title": "Hi", "body": "Welcome"}}


async def test_apns_410_is_permanent_and_the_token_dead(h2_server: ScriptedH2Server) -> None:
    h2_server.replies += [
        Reply(410, {"reason": "Unregistered", "timestamp": 1700000000000}),
        Reply(400, {"reason": "BadDeviceToken"}),
    ]
    sender = ApnsPushSender("org.townhall.app", "jwt", base_url=h2_server.url)
    try:
        gone, bad = await sender.send(push()), await sender.send(push())
    finally:
        await sender.aclose()
    assert gone == Permanent("410 Unregistered", token_dead=True)
    assert bad == Permanent("400 BadDeviceToken", token_dead=False)


async def test_apns_throttling_outage_and_expired_provider_token_are_transient(
    h2_server: ScriptedH2Server,
) -> None:
    h2_server.replies += [
        Reply(429, {"reason": "TooManyRequests"}, {"retry-after": "5"}),
        Reply(503, {"reason": "ServiceUnavailable"}),
        Reply(403, {"reason": "ExpiredProviderToken"}),
        Reply(403, {"reason": "InvalidProviderToken"}),
    ]
    sender = ApnsPushSender("org.townhall.app", "jwt", base_url=h2_server.url)
    try:
        outcomes = [await sender.send(push()) for _ in range(4)]
    finally:
        await sender.aclose()
    assert outcomes == [
        Transient("429 TooManyRequests", retry_after=5.0),
        Transient("503 ServiceUnavailable"),
        Transient("403 ExpiredProviderToken"),
        Permanent("403 InvalidProviderToken"),
    ]
    assert h2_server.connections == 1  # four streams on one HTTP/2 connection


async def test_apns_timeout_is_transient(h2_server: ScriptedH2Server) -> None:
    h2_server.replies.append(Reply(200, delay=1.0))
    sender = ApnsPushSender("org.townhall.app", "jwt", base_url=h2_server.url, timeout=0.2)
    try:
        outcome = await sender.send(push())
    finally:
        await sender.aclose()
    assert isinstance(outcome, Transient) and outcome.error.startswith("timeout")
