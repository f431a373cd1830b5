"""Builds the notifications module from settings: senders per channel (real providers or the
built-in sinks), workers, consumer groups, routes."""

from __future__ import annotations

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
from townhall.notifications.providers import (
    FailoverSender,
    RateLimitedSender,
    Sender,
    TokenBucket,
)


def _urls(value: str | None) -> list[str]:
    return [url.strip() for url in (value or "").split(",") if url.strip()]


@dataclass
class Senders:
    """The sender of each channel, and the built-in sinks when they stand in for providers."""

    by_channel: dict[Channel, Sender[Any]] = field(default_factory=dict)
    smtp_sink: SmtpSink | None = None
    sms_sink: SmsSink | None = None
    push_sink: PushSink | None = None
    # Built lazily: the SMTP sender needs the sink's port, known once the sink listens.
    _settings: Settings | None = None

    async def start(self) -> None:
        if self.smtp_sink is not None:
            await self.smtp_sink.start()
            assert self._settings is not None
            self.by_channel[Channel.EMAIL] = self._limited(
                SmtpEmailSender(self.smtp_sink.url, self._settings.smtp_from, name="smtp-sink")
            )

    async def stop(self) -> None:
        for sender in self.by_channel.values():
            await sender.aclose()
        if self.smtp_sink is not None:
            await self.smtp_sink.stop()

    def _limited(self, sender: Sender[Any]) -> Sender[Any]:
        assert self._settings is not None
        bucket = TokenBucket(self._settings.provider_rate, self._settings.provider_burst)
        return RateLimitedSender(sender, bucket)


def _failover(settings: Settings, providers: list[Sender[Any]]) -> Sender[Any]:
    return FailoverSender(
        providers,
        threshold=settings.provider_failure_threshold,
        cooldown=settings.provider_cooldown,
    )


def build_senders(settings: Settings) -> Senders:
    senders = Senders(_settings=settings)
    smtp_urls = _urls(settings.smtp_url)
    if smtp_urls:
        senders.by_channel[Channel.EMAIL] = _failover(
            settings,
            [
                senders._limited(SmtpEmailSender(url, settings.smtp_from, name=f"smtp{i}"))
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
                senders._limited(TwilioSmsSender(url, settings.sms_from, name=f"sms{i}"))
                for i, url in enumerate(sms_urls, 1)
            ],
        )
    else:
        senders.sms_sink = SmsSink()
        senders.by_channel[Channel.SMS] = senders.sms_sink
    push: dict[PushPlatform, Sender[PushMessage]] = {}
    if settings.fcm_base_url and settings.fcm_access_token:
        push[PushPlatform.FCM] = senders._limited(
            FcmPushSender(
                settings.fcm_project_id,
                settings.fcm_access_token.get_secret_value(),
                base_url=settings.fcm_base_url,
            )
        )
    if settings.apns_base_url and settings.apns_auth_token:
        push[PushPlatform.APNS] = senders._limited(
            ApnsPushSender(
                settings.apns_topic,
                settings.apns_auth_token.get_secret_value(),
                base_url=settings.apns_base_url,
            )
        )
    if not push:
        senders.push_sink = PushSink()
        push = {PushPlatform.FCM: senders.push_sink, PushPlatform.APNS: senders.push_sink}
    senders.by_channel[Channel.PUSH] = PushRouter(push)
    return senders
