"""Real-time chat (issue 22): rooms, messages with a per-room gap-free seq, stateless WebSocket
gateways relayed by the pub/sub port, presence with a TTL, and rooms placed on message-store
shards by a consistent-hash ring. See README.md.

Other modules reach it through `townhall.chat.events` (topic `chat`).
"""

from __future__ import annotations

from pathlib import Path

from townhall.chat.adapters.identity import IdentityUsers
from townhall.chat.adapters.outbox import OutboxChatEvents
from townhall.chat.adapters.shards import DatabaseShards
from townhall.chat.adapters.sql import SqlMessages, SqlRooms
from townhall.chat.adapters.uploads import AUDIENCE, UploadAttachments
from townhall.chat.gateway import Gateway, GatewayLimits
from townhall.chat.http import routers
from townhall.chat.ports import Presence
from townhall.chat.retention import Retention
from townhall.chat.service import ChatService, Limits
from townhall.platform.modules import Installed, ModuleSpec, Platform
from townhall.platform.pubsub import PubSubOptions

__all__ = ["module"]


def _presence(platform: Platform) -> Presence:
    """Redis when `TOWNHALL_REDIS_URL` is set (shared by every gateway; keys under the pub/sub
    prefix), else in-process."""
    settings = platform.settings
    if settings.redis_url:
        from redis import asyncio as aioredis

        from townhall.chat.adapters.redis import RedisPresence

        prefix = PubSubOptions.from_url(settings.pubsub_url).prefix
        client = aioredis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=5
        )
        return RedisPresence(client, prefix)
    from townhall.chat.adapters.memory import MemoryPresence

    return MemoryPresence()


def _install(platform: Platform) -> Installed:
    from townhall.identity import IdentityFacade
    from townhall.uploads import UploadsFacade

    settings = platform.settings
    urls = [url.strip() for url in settings.chat_shards.split(",") if url.strip()]
    shards = DatabaseShards(platform.database, urls)
    presence = _presence(platform)
    uploads = platform.facade(UploadsFacade)
    service = ChatService(
        platform.database,
        SqlRooms(),
        SqlMessages(),
        shards,
        presence,
        platform.pubsub,
        IdentityUsers(platform.facade(IdentityFacade)),
        OutboxChatEvents(),
        platform.clock,
        limits=Limits(
            max_body=settings.chat_max_body, members_per_room=settings.chat_members_per_room
        ),
        presence_ttl=settings.chat_presence_ttl,
        attachments=UploadAttachments(uploads),
    )
    uploads.register_audience(AUDIENCE, service.is_member)
    gateway = Gateway(
        service,
        platform.pubsub,
        limits=GatewayLimits(
            send_rate=settings.chat_send_rate,
            send_burst=settings.chat_send_burst,
            frame_rate=settings.chat_frame_rate,
            bad_frames=settings.chat_bad_frames,
            rooms_per_socket=settings.chat_rooms_per_socket,
            send_queue=settings.chat_send_queue,
            gap_wait=settings.chat_gap_wait,
        ),
        presence_every=settings.chat_presence_ttl / 3,
    )

    retention = Retention(service, settings.chat_retention_days)

    async def start() -> None:
        await shards.create_tables()
        await gateway.start()
        await retention.start()

    async def stop() -> None:
        await retention.stop()
        await gateway.stop()
        await presence.close()
        await shards.close()

    return Installed(
        routers=routers(service, gateway),
        on_start=[start],
        on_stop=[stop],
        # Presence lives in TOWNHALL_REDIS_URL's Redis, which /readyz checks (`redis`).
    )


module = ModuleSpec(
    name="chat",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity", "uploads"),
)
