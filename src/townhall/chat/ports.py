"""What chat's service and gateway need from the outside world."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from townhall.chat.domain import Appended, Attachment, ChatMessage, Room
from townhall.chat.events import UserMentioned
from townhall.platform.transaction import Transaction, Transactions


class Shards(Protocol):
    """The message-store shards: which one a consistent-hash ring gives a room, and each
    one's database."""

    @property
    def names(self) -> list[str]: ...

    def owner(self, room_id: str) -> str: ...

    def database(self, shard: str) -> Transactions: ...


class Users(Protocol):
    """What chat asks identity about users."""

    async def existing(self, user_ids: Collection[str]) -> set[str]:
        """Which of the ids name a user."""
        ...

    async def by_usernames(self, usernames: Collection[str]) -> dict[str, str]:
        """username -> user id, for the usernames that exist (case-insensitive)."""
        ...

    async def username(self, user_id: str) -> str: ...


class Attachments(Protocol):
    """What chat asks the uploads module about the files attached to messages."""

    async def attach(
        self, author: str, upload_ids: Sequence[str], room_id: str
    ) -> dict[str, Attachment]:
        """Let the room's members see these uploads of `author`, and how each is shown now;
        `AttachmentRefused` for an id that is not an upload of theirs, or an infected one."""
        ...

    async def views(self, upload_ids: Collection[str]) -> dict[str, Attachment]:
        """How each upload is shown now; an infected or deleted one is absent."""
        ...


class ChatEvents(Protocol):
    async def mentioned(self, tx: Transaction, events: Sequence[UserMentioned]) -> None:
        """Put the events in the outbox of the caller's transaction."""
        ...


class RoomStore(Protocol):
    """Rooms and their members, in the main database."""

    async def add(self, tx: Transaction, room: Room, *, direct_key: str | None = None) -> Room:
        """Store a new room with its members. With `direct_key`: the existing room of that
        key when there is one (two callers racing get the same room)."""
        ...

    async def get(self, tx: Transaction, room_id: str) -> Room | None: ...

    async def membership(self, tx: Transaction, room_id: str, user_id: str) -> str | None:
        """The room's shard when `user_id` is a member of it, else None."""
        ...

    async def members_of(self, tx: Transaction, room_id: str) -> list[str]: ...

    async def rooms_of(self, tx: Transaction, user_id: str) -> list[Room]:
        """The user's rooms, with their members."""
        ...

    async def room_ids_of(self, tx: Transaction, user_id: str) -> list[str]: ...

    async def add_member(self, tx: Transaction, room_id: str, user_id: str, at: datetime) -> bool:
        """False when they already were one."""
        ...

    async def remove_member(self, tx: Transaction, room_id: str, user_id: str) -> bool: ...

    async def member_count(self, tx: Transaction, room_id: str) -> int: ...

    async def read_marks(self, tx: Transaction, user_id: str) -> dict[str, int]:
        """room id -> the last seq the user said they read, for each of their rooms."""
        ...

    async def mark_read(self, tx: Transaction, room_id: str, user_id: str, seq: int) -> None:
        """Move the user's read mark forward to `seq` (never back)."""
        ...

    async def placements(
        self, tx: Transaction, room_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        """room id -> the shard its history is on now, of every room or of those given."""
        ...

    async def shard_of(self, tx: Transaction, room_id: str) -> str | None: ...

    async def place(self, tx: Transaction, room_id: str, shard: str) -> None: ...


class MessageStore(Protocol):
    """A room's messages on one shard's database, each with its room's next gap-free seq."""

    async def append(
        self,
        tx: Transaction,
        room_id: str,
        author: str,
        body: str,
        client_id: str,
        attachments: Sequence[str],
        at: datetime,
        message_id: str,
    ) -> Appended:
        """Store a message with seq = the room's last + 1, or give back the one `author`
        stored with `client_id` in that room before (created False). The seq comes from a
        per-room counter row, so concurrent sends to one room get distinct, consecutive
        seqs."""
        ...

    async def by_client_id(
        self, tx: Transaction, room_id: str, author: str, client_id: str
    ) -> ChatMessage | None: ...

    async def since(
        self, tx: Transaction, room_id: str, after_seq: int, limit: int
    ) -> list[ChatMessage]:
        """Messages with seq > after_seq, oldest first, at most `limit`."""
        ...

    async def before(
        self, tx: Transaction, room_id: str, before_seq: int | None, limit: int
    ) -> list[ChatMessage]:
        """Messages with seq < before_seq (all when None), newest first, at most `limit`."""
        ...

    async def last_seqs(self, tx: Transaction, room_ids: Collection[str]) -> dict[str, int]:
        """room id -> its last seq, for the rooms that have a message."""
        ...

    async def last_messages(
        self, tx: Transaction, room_ids: Collection[str]
    ) -> dict[str, ChatMessage]: ...

    async def oldest_seq(self, tx: Transaction, room_id: str) -> int | None:
        """The lowest seq still kept (history before it was pruned), None when empty."""
        ...

    async def get(self, tx: Transaction, room_id: str, message_id: str) -> ChatMessage | None: ...

    async def hold(self, tx: Transaction, room_id: str) -> None:
        """Keep the room's history on this shard until the transaction ends (a move waits);
        raises `RoomMoved` when it has left."""
        ...

    async def edit(
        self, tx: Transaction, room_id: str, message_id: str, body: str, at: datetime
    ) -> ChatMessage | None: ...

    async def delete(
        self, tx: Transaction, room_id: str, message_id: str, at: datetime
    ) -> ChatMessage | None:
        """Make the message a tombstone (body emptied, seq kept)."""
        ...

    async def prune(self, tx: Transaction, older_than: datetime) -> int:
        """Delete messages created before `older_than`, keeping each room's last one (its seq
        goes on from there). Returns how many went."""
        ...


class Presence(Protocol):
    """Who is online: a user is, while one of their connections on any gateway is alive.
    A connection lives `ttl` seconds past its last refresh, so a gateway that dies takes its
    users offline within the TTL."""

    async def connect(self, user_id: str, connection_id: str, ttl: float) -> bool:
        """Record a live connection; True when the user was offline before it."""
        ...

    async def refresh(self, connections: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend each (user id, connection id) by `ttl` from now, in one round trip."""
        ...

    async def disconnect(self, user_id: str, connection_id: str) -> bool:
        """Forget a connection; True when it was the user's last live one."""
        ...

    async def online(self, user_ids: Collection[str]) -> set[str]:
        """Which of the users have a live connection now."""
        ...

    async def expired(self) -> list[str]:
        """Forget connections whose TTL lapsed; the users left with none (offline now). Across
        processes sharing the store each such user is returned once, to one caller."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class ShardMover(Protocol):
    """Moves a room's history from one message-store shard to another (`townhall chat
    rebalance`). Each call works in a transaction the caller holds open on one shard (two for
    `copy`), so the caller decides what commits, and in which order."""

    async def hold(self, tx: Transaction, room_id: str) -> str | None:
        """Lock the room's counter row on this shard until `tx` ends (making it, at seq 0,
        when the room never had a message here), so no send stores a message here meanwhile:
        a send waits, then sees what `tx` committed. The shard the room moved to from here,
        or None when its history is here."""
        ...

    async def copy(self, source: Transaction, target: Transaction, room_id: str) -> int:
        """Make the target's copy of the room the source's: its messages (any the target held
        are replaced) and its counter row (last seq kept, `moved_to` cleared, for a room that
        lived on the target before). Returns how many messages were copied."""
        ...

    async def mark_moved(self, tx: Transaction, room_id: str, shard: str) -> None:
        """Say on this shard's counter row that the room's history is on `shard` now."""
        ...

    async def moved_away(self, tx: Transaction) -> dict[str, str]:
        """room id -> the shard it moved to, for the rooms that left this shard."""
        ...

    async def clear(self, tx: Transaction, room_id: str) -> int:
        """Delete the room's messages here when it moved away (its counter row, which says
        where it went, stays); nothing otherwise. Returns how many went."""
        ...

    async def count(self, tx: Transaction, room_id: str) -> int:
        """How many messages of the room are stored here."""
        ...
