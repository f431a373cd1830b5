"""`townhall chat rebalance`: move the history of every room whose owner on the hash ring
changed (a shard added to `TOWNHALL_CHAT_SHARDS`, or one taken out of it) to its owner, while
chat keeps serving. Stopped at any step and run again, it finishes the job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from townhall.chat.ports import RoomStore, ShardMover, Shards
from townhall.platform.transaction import Transactions


@dataclass(frozen=True)
class RebalanceReport:
    examined: int  # rooms looked at
    moved: int  # rooms whose history moved (would move, on a dry run)
    copied: int  # messages copied to their room's new shard (would be copied)
    removed: int  # messages deleted from the shards their rooms left
    dry_run: bool = False


class UnknownShards(Exception):
    """Rooms are placed on shards the rebalance was not given (neither listed nor retired):
    their history cannot be read, so nothing moves."""

    def __init__(self, rooms_by_shard: dict[str, int]) -> None:
        listed = ", ".join(f"{shard} ({n} rooms)" for shard, n in sorted(rooms_by_shard.items()))
        super().__init__(
            f"rooms are placed on shards that are neither in TOWNHALL_CHAT_SHARDS nor retired: "
            f"{listed}; give each with --retire URL to move its rooms off it"
        )
        self.rooms_by_shard = rooms_by_shard


class Rebalancer:
    """Moves a room in two steps, the first committed before the second:

    1. on the old shard, one transaction takes the room's counter row lock (sends to the
       room wait on it), copies the room's messages and counter to the new shard in a
       transaction committed there first, then sets `moved_to` on the old counter row and
       commits: the sends that waited see it and store on the new shard, after the copied
       seqs (none lost, none twice, no gap);
    2. `chat_rooms.shard` names the new shard (readers go there).

    Once every room has moved, the messages left on the shards rooms left are deleted (a
    room's counter row there, which says where it went, stays). Deleting last, not room by
    room, leaves a reader that looked up a room's shard just before it moved the time to
    read it there.

    A room found on a shard that says it moved is followed to where it went, so a run
    stopped between two steps is finished by the next, whose last step deletes what the
    stopped one left behind.
    """

    def __init__(
        self,
        database: Transactions,
        rooms: RoomStore,
        shards: Shards,
        mover: ShardMover,
        shard_names: Collection[str],
    ) -> None:
        """`shard_names`: every shard to look at, those the ring places rooms on and the
        retired ones rooms move off; `shards.database` opens each, `shards.owner` says where
        a room belongs."""
        self._db = database
        self._rooms = rooms
        self._shards = shards
        self._mover = mover
        self._names = sorted(set(shard_names))

    async def run(self, *, dry_run: bool = False) -> RebalanceReport:
        async with self._db.connect() as tx:
            placements = await self._rooms.placements(tx)
        unknown = Counter(
            shard for shard in placements.values() if shard and shard not in self._names
        )
        if unknown:
            raise UnknownShards(dict(unknown))
        stale = {
            room: shard
            for room, shard in placements.items()
            if shard and shard != self._shards.owner(room)
        }
        # A room placed on a shard that says the room left it: a run stopped between moving
        # the history and saying so in `chat_rooms`.
        for shard in self._names:
            async with self._shards.database(shard).connect() as tx:
                for room in await self._mover.moved_away(tx):
                    if placements.get(room) == shard:
                        stale[room] = shard
        if dry_run:
            copied = 0
            for room, shard in sorted(stale.items()):
                async with self._shards.database(shard).connect() as tx:
                    copied += await self._mover.count(tx, room)
            return RebalanceReport(len(placements), len(stale), copied, 0, dry_run=True)
        copied = 0
        for room, shard in sorted(stale.items()):
            target = self._shards.owner(room)
            copied += await self.move(room, shard, target)
            placements[room] = target
        removed = await self._sweep(placements)
        return RebalanceReport(len(placements), len(stale), copied, removed)

    async def move(self, room_id: str, placed: str, target: str) -> int:
        """Move the room's history from where it is (`placed`, or where that shard says it
        went) to `target` and place it there; how many messages were copied. What it left
        behind stays until `run`'s last step."""
        left = [placed]
        source = placed
        copied = 0
        for _ in range(len(self._names) + 1):
            async with self._shards.database(source).transaction() as old:
                moved_to = await self._mover.hold(old, room_id)
                if moved_to is None and source != target:
                    async with self._shards.database(target).transaction() as new:
                        copied = await self._mover.copy(old, new, room_id)
                    # Committed on the target first: a send that waited on the lock and
                    # reads `moved_to` finds the room's history and counter there.
                    await self._mover.mark_moved(old, room_id, target)
            if moved_to is None:
                break
            source = moved_to
            left.append(source)
        else:
            raise RuntimeError(f"room {room_id}: its shards say it moved in a circle: {left}")
        async with self._db.transaction() as tx:
            await self._rooms.place(tx, room_id, target)
        return copied

    async def _sweep(self, placements: dict[str, str]) -> int:
        """Delete the messages left on the shards their rooms left (by this run, or by one
        that stopped before this step)."""
        removed = 0
        for shard in self._names:
            database = self._shards.database(shard)
            async with database.connect() as tx:
                gone = await self._mover.moved_away(tx)
            for room in sorted(gone):
                if placements.get(room, shard) != shard:
                    async with database.transaction() as tx:
                        removed += await self._mover.clear(tx, room)
        return removed
