"""Chat's use cases, for the HTTP routes and the WebSocket gateway alike: rooms and members,
sending (stored with its seq, then published), history, edits, read marks, presence.

What goes to the room's members is published on the pub/sub channel `chat.room.<id>` as a
`relay` frame (`protocol.py`); gateways put it on the sockets that joined the room.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from townhall.chat import protocol
from townhall.chat.domain import (
    Appended,
    Attachment,
    AttachmentRefused,
    ChatMessage,
    DuplicateSend,
    InvalidInput,
    MessageNotFound,
    NotAllowed,
    Room,
    RoomFull,
    RoomMoved,
    RoomNotFound,
    RoomSummary,
    check_body,
    check_room_name,
    direct_key,
    mentioned_usernames,
)
from townhall.chat.events import UserMentioned
from townhall.chat.ports import (
    Attachments,
    ChatEvents,
    MessageStore,
    Presence,
    RoomStore,
    Shards,
    Users,
)
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id_str
from townhall.platform.pubsub import PubSub
from townhall.platform.transaction import Transaction, Transactions

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLAY_MAX = 1000  # a resume of more than this is told `recovered: false` (read history)


@dataclass(frozen=True)
class Limits:
    max_body: int = 4000
    members_per_room: int = 5000


@dataclass(frozen=True)
class Joined:
    room: str
    last_seq: int
    recovered: bool | None  # None when no `since` was given
    replay: list[ChatMessage]
    shown: Mapping[str, Attachment] = field(default_factory=dict)  # the replay's attachments


def channel(room_id: str) -> str:
    return f"chat.room.{room_id}"


class ChatService:
    def __init__(
        self,
        database: Transactions,
        rooms: RoomStore,
        messages: MessageStore,
        shards: Shards,
        presence: Presence,
        pubsub: PubSub,
        users: Users,
        events: ChatEvents,
        clock: Clock,
        *,
        limits: Limits = Limits(),
        presence_ttl: float = 30.0,
        attachments: Attachments | None = None,
    ) -> None:
        self._db = database
        self._rooms = rooms
        self._messages = messages
        self._shards = shards
        self._presence = presence
        self._pubsub = pubsub
        self._users = users
        self._events = events
        self._clock = clock
        self.limits = limits
        self.presence_ttl = presence_ttl
        self._attachments = attachments  # None: no uploads here, and no attachment is taken

    # Rooms and members -------------------------------------------------------------------

    async def create_room(self, owner: str, name: str, members: Sequence[str]) -> Room:
        name = check_room_name(name)
        wanted = list(dict.fromkeys([owner, *members]))
        if len(wanted) > self.limits.members_per_room:
            raise RoomFull(f"a room has at most {self.limits.members_per_room} members")
        await self._check_users(wanted)
        room_id = new_id_str()
        room = Room(room_id, name, owner, self._clock.now(), tuple(wanted))
        async with self._db.transaction() as tx:
            await self._rooms.add(tx, room)
            await self._rooms.place(tx, room_id, self._shards.owner(room_id))
        return room

    async def direct(self, user: str, other: str) -> tuple[Room, bool]:
        """The 1:1 room of the two users, made on first use; True when this call made it."""
        if other == user:
            raise InvalidInput("a direct room needs another user", field="user_id")
        await self._check_users([other])
        room_id = new_id_str()
        made = Room(room_id, "direct", user, self._clock.now(), (user, other), direct=True)
        async with self._db.transaction() as tx:
            room = await self._rooms.add(tx, made, direct_key=direct_key(user, other))
            if room.id == room_id:
                await self._rooms.place(tx, room_id, self._shards.owner(room_id))
        return room, room.id == room_id

    async def rooms_of(self, user: str) -> list[RoomSummary]:
        async with self._db.connect() as tx:
            rooms = await self._rooms.rooms_of(tx, user)
            marks = await self._rooms.read_marks(tx, user)
            placements = await self._rooms.placements(tx, [room.id for room in rooms])
        last: dict[str, ChatMessage] = {}
        by_shard: dict[str, list[str]] = {}
        for room_id, shard in placements.items():
            by_shard.setdefault(shard or self._shards.owner(room_id), []).append(room_id)
        for shard, room_ids in by_shard.items():
            async with self._shards.database(shard).connect() as tx:
                last.update(await self._messages.last_messages(tx, room_ids))
        return [
            RoomSummary(
                room,
                last.get(room.id),
                max(0, (last[room.id].seq if room.id in last else 0) - marks.get(room.id, 0)),
            )
            for room in rooms
        ]

    async def room(self, user: str, room_id: str) -> Room:
        async with self._db.connect() as tx:
            room = await self._rooms.get(tx, room_id)
        if room is None or user not in room.members:
            raise RoomNotFound("no such room")
        return room

    async def add_member(self, actor: str, room_id: str, user: str) -> Room:
        room = await self.room(actor, room_id)
        if room.direct or room.owner != actor:
            raise NotAllowed("only the room's owner adds members")
        await self._check_users([user])
        async with self._db.transaction() as tx:
            if await self._rooms.member_count(tx, room_id) >= self.limits.members_per_room:
                raise RoomFull(f"a room has at most {self.limits.members_per_room} members")
            await self._rooms.add_member(tx, room_id, user, self._clock.now())
        return await self.room(actor, room_id)

    async def remove_member(self, actor: str, room_id: str, user: str) -> None:
        room = await self.room(actor, room_id)
        if room.direct or (room.owner != actor and user != actor):
            raise NotAllowed("only the room's owner removes members (or a member themself)")
        if user == room.owner:
            raise InvalidInput("the owner cannot leave their room", field="user_id")
        async with self._db.transaction() as tx:
            removed = await self._rooms.remove_member(tx, room_id, user)
        if removed:
            await self._publish(room_id, protocol.relay_removed(room_id, user))

    async def is_member(self, user: str, room_id: str) -> bool:
        """Whether `user` may see what is attached to the room's messages (the uploads
        module asks, for `chat.room:<id>`)."""
        async with self._db.connect() as tx:
            return await self._rooms.membership(tx, room_id, user) is not None

    async def _check_users(self, user_ids: Sequence[str]) -> None:
        known = await self._users.existing(user_ids)
        unknown = [user for user in user_ids if user not in known]
        if unknown:
            raise InvalidInput(f"no such user: {unknown[0]}", field="members")

    # Messages ----------------------------------------------------------------------------

    async def _shard(self, user: str, room_id: str) -> str:
        async with self._db.connect() as tx:
            shard = await self._rooms.membership(tx, room_id, user)
        if shard is None:
            raise RoomNotFound("no such room")
        return shard or self._shards.owner(room_id)

    async def send(
        self,
        user: str,
        room_id: str,
        body: str,
        client_id: str,
        attachments: Sequence[str] = (),
        *,
        stored: Callable[[Appended], None] | None = None,
    ) -> Appended:
        """Store the message (or find the one this client_id stored), call `stored` (the
        gateway acks there, so the sender's ack comes before the message's fan-out), then
        publish it. Its attachments must be uploads of the author's: the room's members are
        let see them before the message is stored (`AttachmentRefused` otherwise), and the
        published message shows them as they were then."""
        check_body(body, self.limits.max_body)
        if not client_id or len(client_id) > 100:
            raise InvalidInput("client_id must be 1 to 100 characters", field="client_id")
        shard = await self._shard(user, room_id)
        upload_ids = list(dict.fromkeys(attachments))
        shown: Mapping[str, Attachment] = {}
        try:
            if upload_ids:
                shown = await self._attach(user, upload_ids, room_id)
            appended = await self._append(shard, user, room_id, body, client_id, upload_ids)
        except AttachmentRefused:
            # A resend of a message stored before (its ack lost) is acked again, even when an
            # upload of it was deleted or found infected since.
            async with self._shards.database(shard).connect() as tx:
                found = await self._messages.by_client_id(tx, room_id, user, client_id)
            if found is None:
                raise
            appended = Appended(found, created=False)
        if stored is not None:
            stored(appended)
        if appended.created:
            await self._publish(room_id, protocol.relay_message(appended.message, shown))
            if mentioned_usernames(body):
                try:
                    await self._mentions(appended.message)
                except Exception:  # the message is stored and acked; the mention is lost
                    log.exception(
                        "chat: the mentions of message %s were not sent", appended.message.id
                    )
        return appended

    async def _attach(
        self, user: str, upload_ids: Sequence[str], room_id: str
    ) -> Mapping[str, Attachment]:
        if self._attachments is None:
            raise AttachmentRefused("attachments are not taken here")
        return await self._attachments.attach(user, upload_ids, room_id)

    async def _append(
        self,
        shard: str,
        user: str,
        room_id: str,
        body: str,
        client_id: str,
        attachments: Sequence[str],
    ) -> Appended:
        for _ in range(3):  # a room that moved (rebalance) is followed; more is a bug
            database = self._shards.database(shard)
            try:
                async with database.transaction() as tx:
                    return await self._messages.append(
                        tx,
                        room_id,
                        user,
                        body,
                        client_id,
                        attachments,
                        self._clock.now(),
                        new_id_str(),
                    )
            except DuplicateSend:
                async with database.connect() as tx:
                    found = await self._messages.by_client_id(tx, room_id, user, client_id)
                assert found is not None, "a duplicate send's message is stored"
                return Appended(found, created=False)
            except RoomMoved as moved:
                shard = moved.shard
        raise RuntimeError(f"room {room_id} keeps moving")

    async def _mentions(self, message: ChatMessage) -> None:
        """Tell the mentioned members (not the author), with whether each is online now. Sent
        after the message is stored: a crash between the two loses the mention, not the
        message."""
        room = await self.room(message.author, message.room)
        found = await self._users.by_usernames(mentioned_usernames(message.body))
        mentioned = [u for u in found.values() if u in room.members and u != message.author]
        if not mentioned:
            return
        online = await self._presence.online(mentioned)
        author = await self._users.username(message.author)
        events = [
            UserMentioned(
                message_id=message.id,
                room_id=room.id,
                room_name=room.name,
                seq=message.seq,
                author_id=message.author,
                author_username=author,
                mentioned_id=user,
                excerpt=message.body[:200],
                online=user in online,
            )
            for user in mentioned
        ]
        async with self._db.transaction() as tx:
            await self._events.mentioned(tx, events)

    async def join(self, user: str, room_id: str, since: int | None) -> Joined:
        """The room's last seq and, with `since`, the messages after it (or none, with
        `recovered` False, when `since` is older than what is kept or past the end)."""
        shard = await self._shard(user, room_id)
        async with self._shards.database(shard).connect() as tx:
            last = (await self._messages.last_seqs(tx, [room_id])).get(room_id, 0)
            if since is None:
                return Joined(room_id, last, None, [])
            if since > last or last - since > REPLAY_MAX:
                return Joined(room_id, last, False, [])
            oldest = await self._messages.oldest_seq(tx, room_id)
            if oldest is not None and since < oldest - 1:
                return Joined(room_id, last, False, [])
            replay = await self._messages.since(tx, room_id, since, last - since)
        return Joined(room_id, last, True, replay, await self.shown(replay))

    async def shown(self, messages: Sequence[ChatMessage]) -> dict[str, Attachment]:
        """How the messages' attachments are shown now (one call to uploads for them all; none
        for messages without any)."""
        upload_ids = {i for message in messages for i in message.attachments}
        if not upload_ids or self._attachments is None:
            return {}
        return await self._attachments.views(upload_ids)

    async def missing(self, room_id: str, first: int, last: int) -> list[ChatMessage]:
        """Messages first..last of a room, for a gateway filling a gap in its live stream."""
        async with self._db.connect() as tx:
            shard = await self._rooms.shard_of(tx, room_id)
        database = self._shards.database(shard or self._shards.owner(room_id))
        async with database.connect() as tx:
            return await self._messages.since(tx, room_id, first - 1, last - first + 1)

    async def last_seq(self, room_id: str) -> int:
        async with self._db.connect() as tx:
            shard = await self._rooms.shard_of(tx, room_id)
        database = self._shards.database(shard or self._shards.owner(room_id))
        async with database.connect() as tx:
            return (await self._messages.last_seqs(tx, [room_id])).get(room_id, 0)

    async def history(
        self, user: str, room_id: str, before: int | None, limit: int
    ) -> list[ChatMessage]:
        shard = await self._shard(user, room_id)
        async with self._shards.database(shard).connect() as tx:
            return await self._messages.before(tx, room_id, before, limit)

    async def edit(self, user: str, room_id: str, message_id: str, body: str) -> ChatMessage:
        check_body(body, self.limits.max_body)
        shard = await self._shard(user, room_id)
        edited = await self._on_home_shard(
            shard, room_id, lambda tx: self._edit(tx, user, room_id, message_id, body)
        )
        await self._publish(room_id, protocol.relay_edited(edited))
        return edited

    async def _edit(
        self, tx: Transaction, user: str, room_id: str, message_id: str, body: str
    ) -> ChatMessage:
        message = await self._messages.get(tx, room_id, message_id)
        if message is None:
            raise MessageNotFound("no such message")
        if message.author != user:
            raise NotAllowed("only the author edits a message")
        if message.deleted:
            raise MessageNotFound("the message was deleted")
        edited = await self._messages.edit(tx, room_id, message_id, body, self._clock.now())
        assert edited is not None
        return edited

    async def delete(self, user: str, room_id: str, message_id: str) -> None:
        shard = await self._shard(user, room_id)
        deleted = await self._on_home_shard(
            shard, room_id, lambda tx: self._delete(tx, user, room_id, message_id)
        )
        if deleted is not None:
            await self._publish(room_id, protocol.relay_deleted(deleted))

    async def _delete(
        self, tx: Transaction, user: str, room_id: str, message_id: str
    ) -> ChatMessage | None:
        message = await self._messages.get(tx, room_id, message_id)
        if message is None:
            raise MessageNotFound("no such message")
        if message.author != user:
            raise NotAllowed("only the author deletes a message")
        if message.deleted:
            return None
        return await self._messages.delete(tx, room_id, message_id, self._clock.now())

    async def _on_home_shard(
        self, shard: str, room_id: str, work: Callable[[Transaction], Awaitable[T]]
    ) -> T:
        """`work` in a transaction on the shard that holds the room's history, followed there
        when a rebalance moved it meanwhile."""
        for _ in range(3):
            try:
                async with self._shards.database(shard).transaction() as tx:
                    await self._messages.hold(tx, room_id)
                    return await work(tx)
            except RoomMoved as moved:
                shard = moved.shard
        raise RuntimeError(f"room {room_id} keeps moving")

    async def read(self, user: str, room_id: str, seq: int) -> None:
        async with self._db.transaction() as tx:
            await self._rooms.mark_read(tx, room_id, user, seq)

    async def typing(self, user: str, room_id: str) -> None:
        await self._publish(room_id, protocol.relay_typing(room_id, user))

    async def prune(self, older_than: timedelta) -> int:
        """Delete history older than `older_than` on every shard (each room's last message
        stays, so its seq goes on); a client resuming from before it is told `recovered:
        false`. Returns how many messages went."""
        cutoff = self._clock.now() - older_than
        pruned = 0
        for shard in self._shards.names:
            async with self._shards.database(shard).transaction() as tx:
                pruned += await self._messages.prune(tx, cutoff)
        return pruned

    # Presence ----------------------------------------------------------------------------

    async def presence_of(self, user: str, room_id: str) -> list[tuple[str, bool]]:
        room = await self.room(user, room_id)
        online = await self._presence.online(room.members)
        return [(member, member in online) for member in room.members]

    async def connected(self, user: str, connection_id: str) -> None:
        if await self._presence.connect(user, connection_id, self.presence_ttl):
            await self._announce(user, online=True)

    async def disconnected(self, user: str, connection_id: str) -> None:
        if await self._presence.disconnect(user, connection_id):
            await self._announce(user, online=False)

    async def refresh(self, connections: Sequence[tuple[str, str]]) -> None:
        await self._presence.refresh(connections, self.presence_ttl)

    async def sweep(self) -> int:
        """Users whose last connection lapsed (a gateway died) go offline in their rooms."""
        gone = await self._presence.expired()
        for user in gone:
            await self._announce(user, online=False)
        return len(gone)

    async def _announce(self, user: str, *, online: bool) -> None:
        async with self._db.connect() as tx:
            room_ids = await self._rooms.room_ids_of(tx, user)
        for room_id in room_ids:
            await self._publish(room_id, protocol.relay_presence(room_id, user, online))

    async def _publish(self, room_id: str, data: bytes) -> None:
        """Best effort: the message is stored already; a gateway that misses it fills the
        gap from history, a client that reconnects joins with `since`."""
        try:
            await self._pubsub.publish(channel(room_id), data)
        except Exception as exc:  # the relay is down: stored, acked, refilled later
            log.warning("chat relay publish failed for room %s: %s", room_id, exc)
