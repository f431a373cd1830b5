"""The home feed through the HTTP API, as its users see it, on SQLite with everything in
process and on PostgreSQL with RabbitMQ and Redis timelines: newest first, pages that neither
repeat nor skip while others post, the celebrity merge and the threshold crossed both ways,
deletes, unfollows, follow backfill, an inactive reader's lazy rebuild, scrolling past the
cached length, bad input, counts and the ranked mode."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from support.feed import FeedApp, FeedUser, feed_app

# The fixtures: each test runs once per stack, on this worker's migrated databases.
from support.feed import feed_databases as feed_databases
from support.feed import stack as stack

pytestmark = pytest.mark.timeout(90)


async def active(app: FeedApp, *readers: FeedUser) -> None:
    """Each reader reads their feed once: they are active, so they are fanned out to."""
    for reader in readers:
        await app.page(reader)


async def test_the_feed_is_the_readers_and_followed_authors_posts_newest_first(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        reader, alice, bob, stranger = await app.users(4)
        await app.follow(reader, alice)
        await app.follow(reader, bob)
        await active(app, reader)
        made = []
        for author in (alice, bob, reader, stranger, alice, bob):
            made.append((author, await app.post(author, f"by {author.username}")))
        await app.fanned_out([p for a, p in made if a in (alice, bob)], reader)

        expected = [post_id for author, post_id in reversed(made) if author != stranger]
        page = await app.page(reader, limit=100)
        assert [item["id"] for item in page["items"]] == expected
        assert page["next_cursor"] is None
        times = [item["created_at"] for item in page["items"]]
        assert times == sorted(times, reverse=True)
        first = page["items"][0]
        assert first["author"] == {"id": bob.id, "username": bob.username, "display_name": None}
        assert first["text"] == f"by {bob.username}"
        assert (first["like_count"], first["comment_count"]) == (0, 0)
        # The stranger's feed is their own post only; a new user's feed is empty.
        assert await app.feed(stranger) == [made[3][1]]
        assert await app.feed(await app.user()) == []


async def test_paging_while_others_post_neither_repeats_nor_skips(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        reader, *authors = await app.users(4)
        for author in authors:
            await app.follow(reader, author)
        await active(app, reader)
        there = []
        for n in range(24):
            author = authors[n % 3]
            there.append(await app.post(author, f"before {n}"))
        await app.fanned_out(there, reader)
        there.append(await app.post(reader, "mine"))

        seen: list[str] = []
        arrived: list[str] = []
        page = await app.page(reader, limit=4)
        seen += [item["id"] for item in page["items"]]
        n = 0
        while page["next_cursor"] is not None:
            # Others post while the reader turns the page, and in between pages.
            n += 1
            arrived.append(await app.post(authors[n % 3], f"during {n}"))
            posted, page = await asyncio.gather(
                app.post(authors[(n + 1) % 3], f"alongside {n}"),
                app.page(reader, page["next_cursor"], limit=4),
            )
            arrived.append(posted)
            arrived.append(await app.post(reader, f"mine during {n}"))
            seen += [item["id"] for item in page["items"]]

        assert len(seen) == len(set(seen)), "a post was shown twice"
        assert seen == sorted(seen, reverse=True), "pages are not newest first"
        assert set(there) <= set(seen), f"skipped: {set(there) - set(seen)}"
        assert not set(arrived) & set(seen), "a post made after the first page showed below it"
        # A new scroll shows everything, newest first.
        await app.fanned_out(arrived, reader)
        assert await app.feed(reader, limit=7) == sorted(there + arrived, reverse=True)


async def test_a_celebritys_post_is_in_no_followers_timeline_yet_in_every_followers_feed(
    stack, tmp_path
):
    # No backfill: a follow handled after the post would copy it into the fan's timeline.
    async with feed_app(stack, tmp_path, feed_celebrity_threshold=2, feed_backfill=0) as app:
        celebrity, *fans = await app.users(4)
        for fan in fans:
            await app.follow(fan, celebrity)
        await active(app, *fans)
        post_id = await app.post(celebrity, "to my many fans")
        # The fan-out group took it: the author's own timeline only.
        await app.fanned_out(post_id, celebrity)
        assert await app.holders(post_id) == {celebrity.id}
        for fan in fans:
            assert post_id not in await app.stored(fan)
            assert await app.feed(fan) == [post_id]
        # Merged with a fanned-out post of a normal author, in order.
        normal = await app.user()
        await app.follow(fans[0], normal)
        later = await app.post(normal, "an ordinary post")
        await app.fanned_out(later, fans[0])
        newest = await app.post(celebrity, "again")
        await app.fanned_out(newest, celebrity)
        assert await app.feed(fans[0], limit=1) == [newest, later, post_id]
        assert await app.feed(fans[1]) == [newest, post_id]


async def test_crossing_the_celebrity_threshold_both_ways_loses_and_repeats_no_post(
    stack, tmp_path
):
    async with feed_app(stack, tmp_path, feed_celebrity_threshold=2) as app:
        author, first, second, third = await app.users(4)
        await active(app, first, second, third)
        zero = await app.post(author, "before any follower")
        await app.fanned_out(zero, author)
        await app.follow(first, author)
        await app.follow(second, author)
        # Their follows were handled (backfilled): none comes after a later post.
        await app.feed_becomes(first, [zero])
        await app.feed_becomes(second, [zero])
        before = await app.post(author, "fanned out on write")
        await app.fanned_out(before, first, second)

        # Past the threshold: the next post is read at read time.
        await app.follow(third, author)
        await app.feed_becomes(third, [before, zero])
        during = await app.post(author, "read at read time")
        await app.fanned_out(during, author)
        assert await app.holders(during) == {author.id}

        # Under it again: fanned out on write once more.
        await app.unfollow(third, author)
        await app.feed_becomes(third, [])
        after = await app.post(author, "fanned out again")
        await app.fanned_out(after, first, second)

        for follower in (first, second):
            assert await app.feed(follower) == [after, during, before, zero]
            assert await app.feed(follower, limit=1) == [after, during, before, zero]
        assert await app.feed(third) == []
        # Past it once more, with a new follower: still every post once.
        fourth = await app.user()
        await active(app, fourth)
        await app.follow(fourth, author)
        await app.feed_becomes(fourth, [after, during, before, zero])
        last = await app.post(author, "a celebrity again")
        await app.fanned_out(last, author)
        for follower in (first, second, fourth):
            assert await app.feed(follower, limit=2) == [last, after, during, before, zero]


async def test_a_deleted_post_leaves_every_feed_at_once_then_every_timeline(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        author, *readers = await app.users(3)
        for reader in readers:
            await app.follow(reader, author)
        await active(app, *readers)
        kept = await app.post(author, "kept")
        doomed = await app.post(author, "doomed")
        await app.fanned_out(doomed, author, *readers)
        await app.fanned_out(kept, author, *readers)

        await app.delete(author, doomed)
        # At once, before the fan-out group cleaned anything: read-time filtering.
        for reader in [author, *readers]:
            assert await app.feed(reader) == [kept]
        gone = await app.client.get(f"/api/v1/posts/{doomed}", headers=readers[0].headers)
        assert gone.status_code == 404
        again = await app.client.delete(f"/api/v1/posts/{doomed}", headers=author.headers)
        assert again.status_code == 404
        # Then out of every durable timeline.
        await app.cleaned(doomed)
        for reader in [author, *readers]:
            assert await app.feed(reader) == [kept]
            assert await app.stored(reader) == {kept}


async def test_an_unfollow_takes_the_authors_posts_out_of_the_feed(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        reader, dropped, kept = await app.users(3)
        await app.follow(reader, dropped)
        await app.follow(reader, kept)
        await active(app, reader)
        posts = [await app.post(author) for author in (dropped, kept, dropped, kept)]
        await app.fanned_out(posts, reader)

        await app.unfollow(reader, dropped)
        await app.feed_becomes(reader, [posts[3], posts[1]])
        assert await app.stored(reader) == {posts[1], posts[3]}
        # Their next post does not come either.
        later = await app.post(dropped)
        await app.fanned_out(later, dropped)
        assert await app.feed(reader) == [posts[3], posts[1]]
        following = await app.client.get(
            f"/api/v1/users/{reader.id}/following", headers=reader.headers
        )
        assert [user["id"] for user in following.json()["items"]] == [kept.id]


async def test_a_follow_backfills_the_authors_last_posts(stack, tmp_path):
    async with feed_app(stack, tmp_path, feed_backfill=3) as app:
        reader, author = await app.users(2)
        await active(app, reader)
        posts = [await app.post(author, f"old {n}") for n in range(5)]
        await app.fanned_out(posts, author)  # (to nobody else) before the follow
        mine = await app.post(reader, "mine")
        await app.follow(reader, author)
        await app.feed_becomes(reader, [mine, posts[4], posts[3], posts[2]])
        followers = await app.client.get(
            f"/api/v1/users/{author.id}/followers", headers=author.headers
        )
        assert [user["id"] for user in followers.json()["items"]] == [reader.id]


async def test_an_inactive_reader_is_not_fanned_out_to_and_still_sees_the_posts(stack, tmp_path):
    # No backfill: a follow handled late would copy the missed posts into the timeline.
    async with feed_app(stack, tmp_path, feed_inactive_days=7, feed_backfill=0) as app:
        author, sleeper, awake = await app.users(3)
        await app.follow(sleeper, author)
        await app.follow(awake, author)
        await active(app, sleeper, awake)
        seen = await app.post(author, "seen before the nap")
        await app.fanned_out(seen, sleeper, awake)
        await app.set_last_read(sleeper, datetime.now(UTC) - timedelta(days=30))

        missed = [await app.post(author, f"while asleep {n}") for n in range(3)]
        # The awake follower got each of them in the same batch the sleeper would have.
        await app.fanned_out(missed, awake)
        assert not set(missed) & await app.stored(sleeper)

        expected = [*reversed(missed), seen]
        assert await app.feed(sleeper, limit=2) == expected
        # The rebuild put them in the durable timeline; the reader is active again.
        assert await app.stored(sleeper) == set(expected)
        fresh = await app.post(author, "after waking up")
        await app.fanned_out(fresh, sleeper)
        assert await app.feed(sleeper) == [fresh, *expected]


async def test_a_reader_who_never_read_sees_the_posts_on_the_first_read(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        author, newcomer = await app.users(2)
        await app.follow(newcomer, author)
        posts = [await app.post(author, f"p{n}") for n in range(3)]
        await app.fanned_out(posts, author)
        assert await app.feed(newcomer) == list(reversed(posts))


async def test_scrolling_goes_past_the_cached_length(stack, tmp_path):
    async with feed_app(stack, tmp_path, feed_timeline_length=10) as app:
        reader, author = await app.users(2)
        await app.follow(reader, author)
        await active(app, reader)
        posts = [await app.post(author, f"p{n}") for n in range(35)]
        await app.fanned_out(posts, reader)
        expected = list(reversed(posts))
        for limit in (7, 10, 20, 100):
            assert await app.feed(reader, limit=limit) == expected
        # The first page comes from the cache, which holds only the newest 10.
        first = await app.page(reader, limit=3)
        assert [item["id"] for item in first["items"]] == expected[:3]


async def test_an_inactive_reader_scrolls_past_the_cached_length_too(stack, tmp_path):
    async with feed_app(stack, tmp_path, feed_timeline_length=10) as app:
        reader, author = await app.users(2)
        await app.follow(reader, author)
        posts = [await app.post(author, f"p{n}") for n in range(15)]
        await app.fanned_out(posts, author)
        assert await app.feed(reader, limit=7) == list(reversed(posts))


async def test_bad_input_is_refused(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        me, other = await app.users(2)
        theirs = await app.post(other, "not yours")
        for params in (
            {"limit": 0},
            {"limit": 101},
            {"limit": "ten"},
            {"cursor": "not a cursor!"},
            {"cursor": "AAAA"},
            {"mode": "bogus"},
        ):
            answer = await app.client.get("/api/v1/feed", params=params, headers=me.headers)
            assert answer.status_code == 422, (params, answer.text)
        for params in ({"limit": 1}, {"limit": 100}):
            answer = await app.client.get("/api/v1/feed", params=params, headers=me.headers)
            assert answer.status_code == 200, (params, answer.text)
        ranked_bad = await app.client.get(
            "/api/v1/feed", params={"mode": "ranked", "cursor": "xyz"}, headers=me.headers
        )
        assert ranked_bad.status_code == 422, ranked_bad.text

        myself = await app.client.put(f"/api/v1/users/{me.id}/follow", headers=me.headers)
        assert myself.status_code == 422, myself.text
        nobody = await app.client.put(f"/api/v1/users/{uuid.uuid4()}/follow", headers=me.headers)
        assert nobody.status_code == 404, nobody.text
        not_mine = await app.client.delete(f"/api/v1/posts/{theirs}", headers=me.headers)
        assert not_mine.status_code == 403, not_mine.text
        assert await app.feed(other) == [theirs]
        unknown = await app.client.get(f"/api/v1/posts/{uuid.uuid4()}", headers=me.headers)
        assert unknown.status_code == 404
        empty = await app.client.post("/api/v1/posts", json={"text": ""}, headers=me.headers)
        assert empty.status_code == 422
        anonymous = await app.client.get("/api/v1/feed")
        assert anonymous.status_code == 401


async def test_counts_show_in_the_feed_and_ranked_puts_a_much_liked_post_first(stack, tmp_path):
    async with feed_app(stack, tmp_path) as app:
        author, reader, *fans = await app.users(6)
        await app.follow(reader, author)
        await active(app, reader)
        liked = await app.post(author, "the good one")
        plain = [await app.post(author, f"plain {n}") for n in range(3)]
        await app.fanned_out([liked, *plain], reader)
        for fan in fans:
            answer = await app.client.post(f"/api/v1/posts/{liked}/likes", headers=fan.headers)
            assert answer.status_code == 200, answer.text
        twice = await app.client.post(f"/api/v1/posts/{liked}/likes", headers=fans[0].headers)
        assert twice.json()["like_count"] == len(fans)
        unliked = await app.client.delete(f"/api/v1/posts/{liked}/likes", headers=fans[0].headers)
        assert unliked.json()["like_count"] == len(fans) - 1
        commented = await app.client.post(
            f"/api/v1/posts/{liked}/comments", json={"text": "nice"}, headers=fans[1].headers
        )
        assert commented.status_code == 201, commented.text
        comments = await app.client.get(f"/api/v1/posts/{liked}/comments", headers=reader.headers)
        assert [c["text"] for c in comments.json()["items"]] == ["nice"]

        latest = (await app.page(reader))["items"]
        assert [item["id"] for item in latest] == [*reversed(plain), liked]
        counts = {item["id"]: (item["like_count"], item["comment_count"]) for item in latest}
        assert counts[liked] == (len(fans) - 1, 1)
        assert counts[plain[0]] == (0, 0)

        ranked = await app.page(reader, mode="ranked")
        assert ranked["items"][0]["id"] == liked
        assert sorted(item["id"] for item in ranked["items"]) == sorted([liked, *plain])
        # Paged, the ranked feed shows each post once.
        scrolled = await app.feed(reader, limit=1, mode="ranked")
        assert scrolled[0] == liked
        assert sorted(scrolled) == sorted([liked, *plain])
