"""Notifications: email, SMS, push and in-app, accepted at once and delivered by workers.

Other modules notify through `NotificationsFacade.notify` or by publishing
`townhall.notifications.events.NotificationRequested` on topic `notifications`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from townhall.identity import IdentityFacade
from townhall.identity.events import TOPIC as IDENTITY_TOPIC
from townhall.identity.events import UserRegistered
from townhall.notifications.adapters.sql import SqlNotificationStore
from townhall.notifications.dev_outbox import DevOutbox
from townhall.notifications.domain import Channel
from townhall.notifications.events import TOPIC, NotificationRequested
from townhall.notifications.http import routers
from townhall.notifications.service import (
    Accepted,
    DeliveryWorker,
    HeldReleaser,
    NotificationRequest,
    NotificationService,
    UserSettings,
    topic_for,
)
from townhall.notifications.templates import TemplateRenderer
from townhall.notifications.wiring import build_senders
from townhall.platform.messaging import ConsumerSpec, Envelope
from townhall.platform.modules import Installed, ModuleSpec, Platform
from townhall.platform.observability import get_logger

__all__ = ["TOPIC", "NotificationRequested", "NotificationsFacade", "module"]

WELCOME_GROUP = "notifications.welcome"
REQUESTS_GROUP = "notifications.requests"
RELEASE_INTERVAL = 15.0

log = get_logger("townhall.notifications")


class NotificationsFacade:
    """What other modules may call: ask for a notification (returns once it is accepted)."""

    def __init__(self, service: NotificationService) -> None:
        self._service = service

    async def notify(self, request: NotificationRequested, *, requested_by: str) -> Accepted:
        return await self._service.request(
            NotificationRequest(
                recipient=request.recipient,
                channels=request.channels,
                category=request.category,
                template=request.template,
                data=request.data,
                subject=request.subject,
                body=request.body,
                locale=request.locale,
            ),
            requested_by=requested_by,
            idempotency_key=request.idempotency_key,
        )


def _install(platform: Platform) -> Installed:
    settings = platform.settings
    store = SqlNotificationStore()
    directory = platform.facade(IdentityFacade)
    renderer = TemplateRenderer(settings.templates_dir)
    service = NotificationService(platform.database, store, renderer, directory, platform.clock)
    user_settings = UserSettings(platform.database, store, platform.clock)
    facade = NotificationsFacade(service)
    senders = build_senders(settings)
    releaser = HeldReleaser(platform.database, store, platform.clock)
    release_task: asyncio.Task[None] | None = None
    delivering: set[Channel] = set()  # the channels whose consumer group runs here
    outbox = DevOutbox(senders.smtp_sink, senders.sms_sink, senders.push_sink, delivering)

    def worker(channel: Channel) -> Any:
        def factory() -> Any:
            delivering.add(channel)
            return DeliveryWorker(
                channel,
                platform.database,
                store,
                directory,
                senders.by_channel.get(channel),
                platform.clock,
                max_attempts=settings.notification_max_attempts,
                claim_seconds=settings.notification_claim_seconds,
            ).handle

        return factory

    async def on_user_registered(envelope: Envelope) -> None:
        if envelope.type != UserRegistered.type:
            return
        user_id = str(envelope.payload["user_id"])
        await facade.notify(
            NotificationRequested(
                recipient=user_id,
                channels=["email", "in_app"],
                category="account",
                template="welcome",
                data={"name": envelope.payload.get("username", "")},
                # A redelivered event finds this key taken and creates nothing new.
                idempotency_key=f"welcome:{user_id}",
            ),
            requested_by=f"event:{UserRegistered.type}",
        )

    async def on_requested(envelope: Envelope) -> None:
        if envelope.type != NotificationRequested.type:
            return
        fields = dict(envelope.payload)
        fields.setdefault("idempotency_key", str(envelope.id))
        await facade.notify(NotificationRequested(**fields), requested_by="event")

    consumers = [
        ConsumerSpec(
            topic=topic_for(channel),
            group=topic_for(channel),
            handler_factory=worker(channel),
            max_attempts=settings.notification_max_attempts,
        )
        for channel in Channel
    ]
    consumers += [
        ConsumerSpec(IDENTITY_TOPIC, WELCOME_GROUP, lambda: on_user_registered),
        ConsumerSpec(TOPIC, REQUESTS_GROUP, lambda: on_requested),
    ]

    async def release_loop() -> None:
        while True:
            try:
                await releaser.release_due()
            except Exception:  # the next round tries again; the held deliveries stay held
                log.exception("releasing held notifications failed")
            await asyncio.sleep(RELEASE_INTERVAL)

    async def start() -> None:
        nonlocal release_task
        await senders.start()
        release_task = asyncio.create_task(release_loop(), name="notifications-release-held")

    async def stop() -> None:
        if release_task is not None:
            release_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await release_task
        await senders.stop()

    api, pages = routers(service, user_settings, outbox)
    return Installed(
        routers=api,
        pages=pages,
        facade=facade,
        consumers=consumers,
        on_start=[start],
        on_stop=[stop],
    )


module = ModuleSpec(
    name="notifications",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity",),
)
