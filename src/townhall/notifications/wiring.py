"""Builds the notifications module from settings: senders per channel (real providers or the
built-in sinks), workers, consumer groups, routes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from townhall.config import Settings
from townhall.notifications.adapters.apns import ApnsPushSender
from townhall.notifications.adapters.fcm import FcmPushSender
from townhall.notifications.adapters.push_router import PushRouter
from townhall.notifications.adapters.sinks import PushSink, SmsSink
from townhall.notifications.adapters.smtp import SmtpEmailSender
from townhall.notifications.adapters.smtp_sink import SmtpSink
from townhall.notifications.adapters.twilio import TwilioSmsSender
from townhall.notifications.domain import Channel, PushMessage, PushPlatform
from townhall.notifications.ports import Sender
from townhall.notifications.providers import FailoverSender, RateLimitedSender, TokenBucket
from townhall.notifications.service import HeldReleaser


def _urls(value: str | None) -> list[str]:
    return [url.strip() for url in (value or "").split(",") if url.strip()]


@dataclass
class Senders:
    """The sender of each channel, and the built-in sinks when they stand in for providers."""

    by_channel: dict[Channel, Sender[Any]] = field(default_factory=dict)
    smtp_sink: SmtpSink | None = None
    sms_sink: SmsSink | None = None
    push_sink: PushSink | None = None
    # The email sender of the sink is built at start: it needs the port the sink listens on.
    settings: Settings | None = None

    async def start(self) -> None:
        if self.smtp_sink is not None:
            await self.smtp_sink.start()
            assert self.settings is not None
            self.by_channel[Channel.EMAIL] = rate_limited(
                self.settings,
                SmtpEmailSender(self.smtp_sink.url, self.settings.smtp_from, name="smtp-sink"),
            )

    async def stop(self) -> None:
        for sender in self.by_channel.values():
            await sender.aclose()
        if self.smtp_sink is not None:
            await self.smtp_sink.stop()


def rate_limited(settings: Settings, sender: Sender[Any]) -> Sender[Any]:
    """A provider's sender behind its own token bucket (TOWNHALL_PROVIDER_RATE / _BURST)."""
    return RateLimitedSender(sender, TokenBucket(settings.provider_rate, settings.provider_burst))


def _failover(settings: Settings, providers: list[Sender[Any]]) -> Sender[Any]:
    return FailoverSender(
        providers,
        threshold=settings.provider_failure_threshold,
        cooldown=settings.provider_cooldown,
    )


def build_senders(settings: Settings) -> Senders:
    senders = Senders(settings=settings)
    smtp_urls = _urls(settings.smtp_url)
    if smtp_urls:
        senders.by_channel[Channel.EMAIL] = _failover(
            settings,
            [
                rate_limited(settings, SmtpEmailSender(url, settings.smtp_from, name=f"smtp{i}"))
                for i, url in enumerate(smtp_urls, 1)
            ],
        )
    else:
        senders.smtp_sink = SmtpSink(port=settings.smtp_sink_port)
    sms_urls = _urls(settings.sms_url)
    if sms_urls:
        senders.by_channel[Channel.SMS] = _failover(
            settings,
            [
                rate_limited(settings, TwilioSmsSender(url, settings.sms_from, name=f"sms{i}"))
                for i, url in enumerate(sms_urls, 1)
            ],
        )
    else:
        senders.sms_sink = SmsSink()
        senders.by_channel[Channel.SMS] = senders.sms_sink
    push: dict[PushPlatform, Sender[PushMessage]] = {}
    if settings.fcm_base_url and settings.fcm_access_token:
        push[PushPlatform.FCM] = rate_limited(
            settings,
            FcmPushSender(
                settings.fcm_project_id,
                settings.fcm_access_token.get_secret_value(),
                base_url=settings.fcm_base_url,
            ),
        )
    if settings.apns_base_url and settings.apns_auth_token:
        push[PushPlatform.APNS] = rate_limited(
            settings,
            ApnsPushSender(
                settings.apns_topic,
                settings.apns_auth_token.get_secret_value(),
                base_url=settings.apns_base_url,
            ),
        )
    if not push:
        senders.push_sink = PushSink()
        push = {PushPlatform.FCM: senders.push_sink, PushPlatform.APNS: senders.push_sink}
    senders.by_channel[Channel.PUSH] = PushRouter(push)
    return senders


class Background:
    """What runs beside the consumers while the module runs: the senders (the SMTP sink
    listens), and the loop releasing held deliveries."""

    def __init__(self, senders: Senders, releaser: HeldReleaser) -> None:
        self._senders = senders
        self._releaser = releaser
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._senders.start()
        self._task = asyncio.create_task(self._releaser.run(), name="notifications-release-held")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._senders.stop()
