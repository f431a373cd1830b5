"""A what-if for `bench/feed.py`: the hybrid read with its round trips folded, to show how much
of its cost is round trips rather than work. Not the feed's code: the same ports and the same
answer as `FeedService.feed` (latest) for a reader who is active and cached, with:

- the last read looked up on the read connection, a transaction opened only to record it
  (at most hourly): the service opens one (BEGIN, SELECT, COMMIT) on every read;
- the timeline's marker, size and page in one Redis pipeline: the service makes three
  (`size` in `_ensure_timeline`, then `page` and `size` in `positions`);
- every SQL statement on one connection checkout: the service checks out four.
Anything else (a first read, an inactive reader, a cache that is gone or down) goes to
`FeedService.feed` itself.
"""

from __future__ import annotations

from typing import Any

from townhall.feed.domain import decode_cursor, merge_newest
from townhall.feed.service import TOUCH_EVERY, FeedService


class LeanHybrid:
    def __init__(self, service: FeedService) -> None:
        self.service = service
        s: Any = service
        self._db, self._activity, self._follows = s._db, s._activity, s._follows
        self._feed, self._posts, self._profiles, self._clock = (
            s._feed,
            s._posts,
            s._profiles,
            s._clock,
        )
        self.timelines: Any = service.timelines

    async def feed(self, reader: str, cursor: str | None, limit: int) -> list[str]:
        before = decode_cursor(cursor) if cursor else None
        now = self._clock.now()
        tl = self.timelines
        async with self._db.connect() as tx:
            previous = await self._activity.last_read(tx, reader)
            if previous is None or now - previous >= TOUCH_EVERY:
                return await self._fallback(reader, cursor, limit)
            pipe = tl.client.pipeline(transaction=False)
            pipe.exists(tl._marker(reader))
            pipe.zcard(tl._tl(reader))
            pipe.zrevrangebylex(tl._tl(reader), f"({before}" if before else "+", "-", 0, limit)
            cached, size, page = await pipe.execute()
            if not cached:
                return await self._fallback(reader, cursor, limit)
            fanned = list(page)
            if len(fanned) < limit and size >= tl.length:
                below = fanned[-1] if fanned else before
                fanned += await self._feed.page(tx, reader, below, limit - len(fanned))
            merged_authors = await self._follows.read_time_authors(tx, reader)
            read_time: list[str] = []
            if merged_authors:
                found = await self._posts.ids_by_authors(tx, merged_authors, before, limit)
                read_time = [post_id for post_id, _ in found]
            ids = merge_newest([fanned, read_time], limit, before)
            found_posts = await self._posts.visible(tx, ids) if ids else {}
        posts = [found_posts[i] for i in ids if i in found_posts]
        await self._profiles.profiles({p.author for p in posts})
        return [p.id for p in posts]

    async def _fallback(self, reader: str, cursor: str | None, limit: int) -> list[str]:
        page = await self.service.feed(reader, cursor, limit)
        return [item.post.id for item in page.items]
