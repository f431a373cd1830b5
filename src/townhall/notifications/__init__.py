"""Notifications: email, SMS, push and in-app, accepted at once and delivered by workers.

Other modules notify through `NotificationsFacade.notify` or by publishing
`townhall.notifications.events.NotificationRequested` on topic `notifications`.
"""

from __future__ import annotations

from pathlib import Path

from townhall.identity import IdentityFacade
from townhall.notifications.adapters.directory import DirectoryRecipients
from townhall.notifications.adapters.sql import (
    SqlDeliveries,
    SqlDevices,
    SqlInbox,
    SqlNotificationRequests,
    SqlPreferenceStore,
)
from townhall.notifications.consumers import (
    ChannelWorkers,
    chat_consumers,
    event_consumers,
    feed_consumers,
    order_consumers,
    upload_consumers,
)
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
)
from townhall.notifications.templates import TemplateRenderer
from townhall.notifications.wiring import Background, build_senders
from townhall.platform.modules import Installed, ModuleSpec, Platform

__all__ = ["TOPIC", "NotificationRequested", "NotificationsFacade", "module"]


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
    settings, database, clock = platform.settings, platform.database, platform.clock
    identity = platform.facade(IdentityFacade)
    recipients = DirectoryRecipients(identity)
    deliveries, devices = SqlDeliveries(database), SqlDevices(database)
    service = NotificationService(
        SqlNotificationRequests(database),
        DirectoryRecipients(identity, remember_with=clock),
        TemplateRenderer(settings.templates_dir),
        clock,
    )
    user_settings = UserSettings(
        SqlPreferenceStore(database), devices, SqlInbox(database), recipients, clock
    )
    facade = NotificationsFacade(service)
    senders = build_senders(settings)

    def worker(channel: Channel) -> DeliveryWorker:
        return DeliveryWorker(
            channel,
            deliveries,
            devices,
            recipients,
            senders.by_channel.get(channel),
            clock,
            max_attempts=settings.notification_max_attempts,
            claim_seconds=settings.notification_claim_seconds,
        )

    workers = ChannelWorkers(worker, max_attempts=settings.notification_max_attempts)
    outbox = DevOutbox(senders.smtp_sink, senders.sms_sink, senders.push_sink, workers.running)
    background = Background(senders, HeldReleaser(deliveries, clock))
    api, pages = routers(service, user_settings, outbox)
    return Installed(
        routers=api,
        pages=pages,
        facade=facade,
        consumers=[
            *workers.consumers(),
            *event_consumers(facade),
            *order_consumers(facade),
            *chat_consumers(facade),
            *feed_consumers(facade, identity),
            *upload_consumers(facade),
        ],
        on_start=[background.start],
        on_stop=[background.stop],
    )


module = ModuleSpec(
    name="notifications",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity",),
)
