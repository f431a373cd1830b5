"""`townhall chat rebalance` on real databases (three PostgreSQL databases, or three SQLite
files): adding a shard moves the history of exactly the rooms whose ring owner changed, about
1/3 of them; every room's history reads the same after; sends during the move are stored
once with gap-free seqs; a run stopped between steps is finished by the next; the CLI retires
a shard."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from support.app import settings_for
from support.services import create_database, database_name, drop_database
from townhall.bootstrap import migrate_database
from townhall.chat.adapters.memory import MemoryPresence
from townhall.chat.adapters.moves import ShardDirectory, SqlShardMover
from townhall.chat.adapters.outbox import OutboxChatEvents
from townhall.chat.adapters.shards import DatabaseShards, shard_name
from townhall.chat.adapters.sql import SqlMessages, SqlRooms
from townhall.chat.adapters.tables import room_seqs
from townhall.chat.rebalance import Rebalancer, RebalanceReport
from townhall.chat.ring import HashRing
from townhall.chat.service import ChatService
from townhall.cli import app
from townhall.platform.clock import SystemClock
from townhall.platform.db import Database
from townhall.platform.pubsub import connect as connect_pubsub

USER = "user-1"
ROOMS = 300


class AnyUsers:
    """Every id names a user (identity is not what these tests are about)."""

    async def existing(self, user_ids: Collection[str]) -> set[str]:
        return set(user_ids)

    async def by_usernames(self, usernames: Collection[str]) -> dict[str, str]:
        return {}

    async def username(self, user_id: str) -> str:
        return user_id


@pytest.fixture(params=["sqlite", "postgresql"])
async def urls(request, tmp_path) -> AsyncIterator[list[str]]:
    """Three empty databases: the main one (migrated) and two more; the main one is a shard."""
    if request.param == "sqlite":
        found = [f"sqlite+aiosqlite:///{tmp_path / f'db{n}.db'}" for n in range(3)]
        names: list[str] = []
    else:
        names = [database_name(f"chat{n}") for n in range(3)]
        found = [await create_database(name) for name in names]
    await migrate_database(settings_for(found[0], tmp_path))
    try:
        yield found
    finally:
        for name in names:
            await drop_database(name)


@dataclass
class Chat:
    """A chat process's view: the service on a list of shards, as `chat._install` builds it."""

    service: ChatService
    shards: DatabaseShards
    main: Database

    def rebalancer(self, mover: Any = None, rooms: Any = None, retire: Sequence[str] = ()):
        directory = ShardDirectory(self.shards, retire)
        return Rebalancer(
            self.main,
            rooms or SqlRooms(),
            directory,
            mover or SqlShardMover(),
            directory.names,
        )


@asynccontextmanager
async def chat(main_url: str, shard_urls: list[str]) -> AsyncIterator[Chat]:
    main = Database(main_url)
    shards = DatabaseShards(main, shard_urls)
    await shards.create_tables()
    pubsub = await connect_pubsub("memory://")
    service = ChatService(
        main,
        SqlRooms(),
        SqlMessages(),
        shards,
        MemoryPresence(),
        pubsub,
        AnyUsers(),
        OutboxChatEvents(),
        SystemClock(),
    )
    try:
        yield Chat(service, shards, main)
    finally:
        await pubsub.close()
        await shards.close()
        await main.dispose()


async def make_rooms(service: ChatService, count: int) -> dict[str, int]:
    """`count` rooms, room n with n % 4 messages (a quarter have none); one edited and one
    deleted message among them. Room id -> its message count."""
    rooms: dict[str, int] = {}
    for n in range(count):
        room = await service.create_room(USER, f"room {n}", [])
        rooms[room.id] = n % 4
    semaphore = asyncio.Semaphore(8)

    async def fill(room_id: str, messages: int) -> None:
        async with semaphore:
            for i in range(messages):
                await service.send(USER, room_id, f"hello {i} in {room_id}", f"{room_id}-{i}")

    await asyncio.gather(*(fill(room, n) for room, n in rooms.items()))
    full = [room for room, n in rooms.items() if n == 3]
    edited = (await service.history(USER, full[0], None, 10))[-1]
    await service.edit(USER, full[0], edited.id, "edited")
    deleted = (await service.history(USER, full[1], None, 10))[-1]
    await service.delete(USER, full[1], deleted.id)
    return rooms


async def histories(service: ChatService, rooms: Collection[str]) -> dict[str, list[tuple]]:
    found = {}
    for room in rooms:
        found[room] = [
            (m.id, m.seq, m.author, m.body, m.client_id, m.created_at, m.edited_at, m.deleted)
            for m in await service.history(USER, room, None, 10_000)
        ]
    return found


async def placements(main: Database) -> dict[str, str]:
    async with main.connect() as tx:
        return await SqlRooms().placements(tx)


async def stored(database: Database, room_id: str) -> tuple[int, str | None]:
    """(messages of the room on that database, its counter row's moved_to)."""
    async with database.connect() as tx:
        count = await SqlShardMover().count(tx, room_id)
        moved_to = await tx.scalar(
            sa.select(room_seqs.c.moved_to).where(room_seqs.c.room_id == room_id)
        )
    return count, moved_to


async def test_adding_a_shard_moves_exactly_the_rooms_whose_owner_changed_and_history_reads_the_same(  # noqa: E501
    urls,
):
    async with chat(urls[0], urls[:2]) as before:
        rooms = await make_rooms(before.service, ROOMS)
        was = await histories(before.service, rooms)
        placed = await placements(before.main)
        old_ring = before.shards.ring.copy()
    assert set(placed.values()) == {shard_name(urls[0]), shard_name(urls[1])}

    async with chat(urls[0], urls) as after:
        new = shard_name(urls[2])
        changed = {room for room in rooms if after.shards.owner(room) != old_ring.shard_for(room)}
        assert all(after.shards.owner(room) == new for room in changed)
        assert 0.20 * ROOMS <= len(changed) <= 0.47 * ROOMS, len(changed)
        to_copy = sum(rooms[room] for room in changed)

        dry = await after.rebalancer().run(dry_run=True)
        assert dry == RebalanceReport(ROOMS, len(changed), to_copy, 0, dry_run=True)
        assert await placements(after.main) == placed

        report = await after.rebalancer().run()
        assert report == RebalanceReport(ROOMS, len(changed), to_copy, to_copy)
        now = await placements(after.main)
        assert {room for room in rooms if now[room] != placed[room]} == changed
        assert all(now[room] == new for room in changed)
        assert await histories(after.service, rooms) == was
        for room in changed:
            left = after.shards.database(placed[room])
            assert await stored(left, room) == (0, new)  # its counter says where it went
            assert await stored(after.shards.database(new), room) == (rooms[room], None)

        # Sends go on from the copied seqs, on the new shard.
        room = next(room for room in changed if rooms[room] == 2)
        sent = await after.service.send(USER, room, "after the move", "after")
        assert sent.message.seq == 3 and sent.created
        assert await stored(after.shards.database(new), room) == (3, None)

        assert await after.rebalancer().run() == RebalanceReport(ROOMS, 0, 0, 0)


async def test_sends_during_the_rebalance_are_stored_once_with_gap_free_seqs(urls):
    async with chat(urls[0], urls[:2]) as before:
        rooms = await make_rooms(before.service, 60)
        old_ring = before.shards.ring.copy()
    async with chat(urls[0], urls) as after:
        moving = [room for room in rooms if after.shards.owner(room) != old_ring.shard_for(room)]
        staying = [room for room in rooms if room not in moving]
        watched = moving[:4] + staying[:2]
        assert len(watched) == 6
        done = asyncio.Event()
        acked: dict[str, list[tuple[str, int]]] = {room: [] for room in watched}

        async def sender(room: str, who: int) -> None:
            n = 0
            while not done.is_set() or n < 5:
                sent = await after.service.send(USER, room, f"live {who}/{n}", f"live-{who}-{n}")
                assert sent.created
                acked[room].append((sent.message.id, sent.message.seq))
                n += 1

        senders = [asyncio.create_task(sender(room, who)) for room in watched for who in range(2)]
        await asyncio.sleep(0)  # every sender on its way before the first room moves
        report = await after.rebalancer().run()
        done.set()
        await asyncio.gather(*senders)
        assert report.moved == len(moving)

        for room in watched:
            history = await after.service.history(USER, room, None, 10_000)
            seqs = sorted(message.seq for message in history)
            assert seqs == list(range(1, len(seqs) + 1)), room  # gap-free, each seq once
            assert len(seqs) == rooms[room] + len(acked[room])  # nothing else was stored
            by_id = {message.id: message.seq for message in history}
            assert Counter(message.id for message in history).most_common(1)[0][1] == 1
            assert all(by_id.get(id_) == seq for id_, seq in acked[room])


class BlockedSendMover(SqlShardMover):
    """Starts a send to the room while the move holds its counter row lock, and copies only
    once that send waits on the lock (PostgreSQL shows it waiting; SQLite's writer waits for
    the shard's write lock)."""

    def __init__(self, service: ChatService, urls: list[str]) -> None:
        self.service = service
        self.urls = urls
        self.send: asyncio.Task | None = None

    async def copy(self, source, target, room_id):
        self.send = asyncio.create_task(self.service.send(USER, room_id, "during", "during"))
        if source.dialect.name == "postgresql":
            database = source.engine.url.database
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND wait_event_type = 'Lock'"
            )
            # Its own connection: a transaction sees one snapshot of pg_stat_activity.
            watcher = Database(self.urls[0])
            try:
                async with watcher.connect() as watch:
                    # The server's state: no event to wait on.
                    while not await watch.scalar(waiting, {"db": database}):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
            finally:
                await watcher.dispose()
        else:
            await asyncio.sleep(0.2)  # the send's BEGIN IMMEDIATE is waiting by then
        assert not self.send.done()
        return await super().copy(source, target, room_id)


async def test_a_send_waiting_on_a_moving_room_is_stored_on_the_new_shard_after_the_copy(urls):
    new_ring = HashRing(shard_name(url) for url in urls)
    async with chat(urls[0], urls[:2]) as before:
        while True:  # a room that will move (a third of them do)
            room = (await before.service.create_room(USER, "moving", [])).id
            if new_ring.shard_for(room) != before.shards.owner(room):
                break
        for n in range(2):
            await before.service.send(USER, room, f"before {n}", f"before-{n}")
    async with chat(urls[0], urls) as after:
        placed = (await placements(after.main))[room]
        mover = BlockedSendMover(after.service, urls)
        await after.rebalancer(mover=mover).move(room, placed, after.shards.owner(room))
        assert mover.send is not None
        sent = await mover.send
        assert sent.created and sent.message.seq == 3
        new = after.shards.database(after.shards.owner(room))
        assert await stored(new, room) == (3, None)
        # The old copy stays, marked as moved, until the run's last step deletes it.
        assert await stored(after.shards.database(placed), room) == (2, shard_name(urls[2]))
        history = await after.service.history(USER, room, None, 10)
        assert [m.seq for m in history] == [3, 2, 1] and history[0].id == sent.message.id


class Crash(Exception):
    pass


class CrashingMover(SqlShardMover):
    def __init__(self, at: str) -> None:
        self.at = at

    async def mark_moved(self, tx, room_id, shard):
        if self.at == "after the copy":
            raise Crash
        await super().mark_moved(tx, room_id, shard)

    async def clear(self, tx, room_id):
        if self.at == "before the delete":
            raise Crash
        return await super().clear(tx, room_id)


class CrashingRooms(SqlRooms):
    async def place(self, tx, room_id, shard):
        raise Crash


@pytest.mark.parametrize("at", ["after the copy", "after moved_to", "before the delete"])
async def test_a_run_stopped_between_steps_is_finished_by_the_next(urls, at):
    async with chat(urls[0], urls[:2]) as before:
        rooms = await make_rooms(before.service, 40)
        was = await histories(before.service, rooms)
        placed = await placements(before.main)
        old_ring = before.shards.ring.copy()
    async with chat(urls[0], urls) as after:
        changed = {room for room in rooms if after.shards.owner(room) != old_ring.shard_for(room)}
        crashing = after.rebalancer(
            mover=CrashingMover(at), rooms=CrashingRooms() if at == "after moved_to" else None
        )
        with pytest.raises(Crash):
            await crashing.run()
        assert await histories(after.service, rooms) == was  # readable meanwhile

        report = await after.rebalancer().run()
        assert report.moved == (0 if at == "before the delete" else len(changed))
        assert report.removed == sum(rooms[room] for room in changed)
        now = await placements(after.main)
        assert {room for room in rooms if now[room] != placed[room]} == changed
        assert await histories(after.service, rooms) == was
        for room in changed:
            assert (await stored(after.shards.database(placed[room]), room))[0] == 0
        assert await after.rebalancer().run() == RebalanceReport(len(rooms), 0, 0, 0)


def test_the_cli_moves_rooms_onto_a_new_shard_and_back_off_it_when_retired(tmp_path, monkeypatch):
    main, extra = (f"sqlite+aiosqlite:///{tmp_path / f'db{n}.db'}" for n in range(2))
    asyncio.run(migrate_database(settings_for(main, tmp_path)))
    monkeypatch.setenv("TOWNHALL_DATABASE_URL", main)
    monkeypatch.setenv("TOWNHALL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOWNHALL_LOG_LEVEL", "warning")
    runner = CliRunner()

    async def seed() -> tuple[dict[str, int], dict[str, list[tuple]]]:
        async with chat(main, [main]) as one:
            rooms = await make_rooms(one.service, 30)
            return rooms, await histories(one.service, rooms)

    async def read(shard_urls: list[str]) -> tuple[dict[str, str], dict[str, list[tuple]]]:
        async with chat(main, shard_urls) as now:
            return await placements(now.main), await histories(now.service, rooms)

    rooms, was = asyncio.run(seed())

    monkeypatch.setenv("TOWNHALL_CHAT_SHARDS", f"{main},{extra}")
    dry = runner.invoke(app, ["chat", "rebalance", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "30 rooms examined" in dry.output and "nothing moved" in dry.output
    assert set(asyncio.run(read([main, extra]))[0].values()) == {shard_name(main)}

    moved = runner.invoke(app, ["chat", "rebalance"])
    assert moved.exit_code == 0, moved.output
    placed, history = asyncio.run(read([main, extra]))
    on_extra = {room for room, shard in placed.items() if shard == shard_name(extra)}
    assert on_extra and f"30 rooms examined; {len(on_extra)} moved" in moved.output
    assert history == was

    # The extra shard goes: its rooms cannot be found until it is given with --retire.
    monkeypatch.setenv("TOWNHALL_CHAT_SHARDS", main)
    refused = runner.invoke(app, ["chat", "rebalance"])
    assert refused.exit_code != 0
    assert shard_name(extra) in refused.output and "--retire" in refused.output
    retired = runner.invoke(app, ["chat", "rebalance", "--retire", extra])
    assert retired.exit_code == 0, retired.output
    assert f"{len(on_extra)} moved" in retired.output
    placed, history = asyncio.run(read([main]))
    assert set(placed.values()) == {shard_name(main)} and history == was

    async def send_again() -> int:
        # A room that lived on the main database before, went and came back: its counter
        # there says where it is again.
        async with chat(main, [main]) as one:
            return (await one.service.send(USER, fullest, "back", "back")).message.seq

    fullest = max(on_extra, key=rooms.__getitem__)
    assert asyncio.run(send_again()) == rooms[fullest] + 1


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], "ftp://somewhere/db", "TOWNHALL_CHAT_SHARDS: unknown URL scheme 'ftp'"),
        (["--retire", "redis://localhost/0"], "", "--retire: unknown URL scheme 'redis'"),
        (["--retire", "{main}"], "{main}", "is in TOWNHALL_CHAT_SHARDS"),
        (["--retire", "{missing}"], "", "missing.db is not a file"),
        (["--retire", "{other}"], "", "other.db holds no chat message tables"),
    ],
)
def test_the_cli_refuses_bad_shard_urls_with_a_message(tmp_path, monkeypatch, args, env, expected):
    main = f"sqlite+aiosqlite:///{tmp_path / 'main.db'}"
    missing = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (n INT)").connection.close()
    asyncio.run(migrate_database(settings_for(main, tmp_path)))
    monkeypatch.setenv("TOWNHALL_DATABASE_URL", main)
    monkeypatch.setenv("TOWNHALL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOWNHALL_CHAT_SHARDS", env.format(main=main))
    given = [arg.format(main=main, missing=missing, other=other) for arg in args]
    result = CliRunner().invoke(app, ["chat", "rebalance", *given])
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output
