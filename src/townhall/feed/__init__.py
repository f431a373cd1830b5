"""The news feed (issue 23): posts, likes, comments, follows, and home timelines built by a
hybrid fan-out (on write for most authors, on read for celebrities) into cached sorted sets
(Redis, or in process) over a durable SQL feed store. See README.md.

Other modules reach it through `townhall.feed.events` (topic `feed`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from townhall.feed.adapters.identity import IdentityProfiles
from townhall.feed.adapters.inbox import SqlInbox
from townhall.feed.adapters.outbox import OutboxFeedEvents
from townhall.feed.adapters.sql import (
    SqlActivity,
    SqlFeedStore,
    SqlFollows,
    SqlPosts,
    SqlScores,
)
from townhall.feed.adapters.uploads import AUDIENCE, UploadAttachments
from townhall.feed.http import routers
from townhall.feed.ports import TimelineStore
from townhall.feed.service import FeedService, FeedSettings
from townhall.feed.workers import Fanout, Scoring, feed_consumers
from townhall.platform.modules import Installed, ModuleSpec, Platform
from townhall.platform.pubsub import PubSubOptions

__all__ = ["module"]


def _timelines(platform: Platform) -> TimelineStore:
    """Redis when `TOWNHALL_REDIS_URL` is set (keys under the pub/sub prefix), else in
    process."""
    settings = platform.settings
    length = settings.feed_timeline_length
    if settings.redis_url:
        from redis import asyncio as aioredis

        from townhall.feed.adapters.redis import RedisTimelines

        client = aioredis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2
        )
        prefix = PubSubOptions.from_url(settings.pubsub_url).prefix
        return RedisTimelines(client, prefix=prefix, length=length)
    from townhall.feed.adapters.memory import MemoryTimelines

    return MemoryTimelines(length)


def _install(platform: Platform) -> Installed:
    from townhall.identity import IdentityFacade
    from townhall.uploads import UploadsFacade

    settings, database, clock = platform.settings, platform.database, platform.clock
    timelines = _timelines(platform)
    uploads = platform.facade(UploadsFacade)
    posts, follows, feed_store = SqlPosts(), SqlFollows(), SqlFeedStore()
    activity, scores = SqlActivity(), SqlScores()
    inactive = timedelta(days=settings.feed_inactive_days)
    service = FeedService(
        database,
        posts,
        follows,
        feed_store,
        activity,
        scores,
        timelines,
        IdentityProfiles(platform.facade(IdentityFacade)),
        OutboxFeedEvents(),
        clock,
        FeedSettings(
            celebrity_threshold=settings.feed_celebrity_threshold,
            backfill=settings.feed_backfill,
            inactive=inactive,
            max_text=settings.feed_max_text,
        ),
        attachments=UploadAttachments(uploads),
    )
    uploads.register_audience(AUDIENCE, service.may_see_post)
    fanout = Fanout(
        database,
        posts,
        follows,
        feed_store,
        activity,
        timelines,
        clock,
        celebrity_threshold=settings.feed_celebrity_threshold,
        backfill=settings.feed_backfill,
        inactive=inactive,
    )
    return Installed(
        routers=routers(service),
        consumers=feed_consumers(fanout, Scoring(database, scores, SqlInbox())),
        # /readyz names Redis already (`redis`) when it is configured; the feed still
        # answers without it, from SQL.
        on_stop=[timelines.close],
    )


module = ModuleSpec(
    name="feed",
    install=_install,
    migrations=Path(__file__).parent / "migrations",
    requires=("identity", "uploads"),
)
