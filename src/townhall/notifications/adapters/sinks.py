"""Built-in SMS and push sinks: the embedded defaults, which record what they were asked to send.

Like the SMTP sink they keep the newest `limit` messages in memory for the dev outbox, log one
line per message, and answer `Delivered` with an id of their own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from townhall.notifications.domain import (
    Delivered,
    PushMessage,
    PushPlatform,
    SendOutcome,
    SmsMessage,
)
from townhall.platform.clock import Clock, SystemClock
from townhall.platform.observability import get_logger

log = get_logger("townhall.notifications.sink")


@dataclass(frozen=True)
class SentSms:
    to: str
    body: str
    notification_id: str
    sent_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "to": self.to,
            "body": self.body,
            "notification_id": self.notification_id,
            "sent_at": self.sent_at.isoformat(),
        }


@dataclass(frozen=True)
class SentPush:
    platform: PushPlatform
    token: str
    title: str
    body: str
    data: dict[str, str]
    notification_id: str
    sent_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "platform": self.platform.value,
            "token": self.token,
            "title": self.title,
            "body": self.body,
            "notification_id": self.notification_id,
            "sent_at": self.sent_at.isoformat(),
        }


class SmsSink:
    def __init__(self, *, limit: int = 1000, clock: Clock | None = None, name: str = "sms-sink"):
        self.name = name
        self._clock = clock or SystemClock()
        self._sent: deque[SentSms] = deque(maxlen=limit)
        self._count = 0

    @property
    def sent(self) -> list[SentSms]:
        return list(self._sent)

    async def send(self, message: SmsMessage) -> SendOutcome:
        self._count += 1
        self._sent.append(
            SentSms(message.to, message.body, str(message.notification_id), self._clock.now())
        )
        log.info("sink received sms", to=message.to, notification_id=str(message.notification_id))
        return Delivered(provider_id=f"{self.name}-{self._count}")

    async def aclose(self) -> None:
        pass


class PushSink:
    def __init__(
        self, *, limit: int = 1000, clock: Clock | None = None, name: str = "push-sink"
    ) -> None:
        self.name = name
        self._clock = clock or SystemClock()
        self._sent: deque[SentPush] = deque(maxlen=limit)
        self._count = 0

    @property
    def sent(self) -> list[SentPush]:
        return list(self._sent)

    async def send(self, message: PushMessage) -> SendOutcome:
        self._count += 1
        self._sent.append(
            SentPush(
                platform=message.device.platform,
                token=message.device.token,
                title=message.title,
                body=message.body,
                data=dict(message.data),
                notification_id=str(message.notification_id),
                sent_at=self._clock.now(),
            )
        )
        log.info(
            "sink received push",
            platform=message.device.platform.value,
            title=message.title,
            notification_id=str(message.notification_id),
        )
        return Delivered(provider_id=f"{self.name}-{self._count}")

    async def aclose(self) -> None:
        pass
