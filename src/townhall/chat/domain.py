"""Chat's domain: rooms, messages with a per-room gap-free seq, mentions, and the pure rules
the gateway applies (a room's live stream put back in seq order; token buckets for limits).

No I/O here: the store gives seqs, the gateway moves frames; this decides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from townhall.platform.errors import Conflict, Forbidden, Invalid, NotFound


class RoomNotFound(NotFound):
    """No such room, or the caller is not a member (the two are not told apart)."""

    frame_code = "not_a_member"  # the protocol's error code, in `error` frames


class MessageNotFound(NotFound):
    frame_code = "message_not_found"


class NotAllowed(Forbidden):
    """A member doing what only the owner or the author may."""

    frame_code = "forbidden"


class InvalidInput(Invalid):
    frame_code = "invalid"


class BodyTooLong(InvalidInput):
    frame_code = "body_too_long"


class RoomFull(Conflict):
    frame_code = "room_full"


class AttachmentRefused(InvalidInput):
    """An attachment names no upload of the author's (someone else's, an infected one, or
    none at all): told the same way, so nobody learns of another user's upload."""

    frame_code = "not_attachable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="attachments")


class RoomMoved(Exception):
    """The room's history left the shard written to (`townhall chat rebalance`); `shard`
    has it now."""

    def __init__(self, room_id: str, shard: str) -> None:
        super().__init__(f"room {room_id} moved to {shard}")
        self.room_id = room_id
        self.shard = shard


class DuplicateSend(Exception):
    """A concurrent send with the same client_id stored its message first."""

    def __init__(self, room_id: str, author: str, client_id: str) -> None:
        super().__init__(f"client_id {client_id!r} of {author} in {room_id} already stored")
        self.room_id = room_id
        self.author = author
        self.client_id = client_id


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    owner: str
    created_at: datetime
    members: tuple[str, ...] = ()
    direct: bool = False  # a 1:1 room (`POST /direct/{user}`): two members, no owner's rights


@dataclass(frozen=True)
class ChatMessage:
    id: str
    room: str
    seq: int
    author: str
    body: str
    created_at: datetime
    client_id: str
    attachments: tuple[str, ...] = ()
    edited_at: datetime | None = None
    deleted: bool = False  # a tombstone: body emptied, seq kept so history stays gap-free


@dataclass(frozen=True)
class Attachment:
    """How an attachment is shown to a reader: the file once its scan found it clean
    (`status` "CLEAN", with its name, type and size), else a placeholder with the status
    ("PENDING_SCAN", "FAILED"). An infected or deleted upload is not shown at all."""

    id: str
    status: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None

    @property
    def clean(self) -> bool:
        return self.status == "CLEAN"


@dataclass(frozen=True)
class Appended:
    """What a send stored: the message, and whether this send stored it (False: a retry of
    the same `client_id`, answered with the message stored the first time)."""

    message: ChatMessage
    created: bool


@dataclass(frozen=True)
class RoomSummary:
    """A room as its member lists it: the last message and how many they have not read."""

    room: Room
    last_message: ChatMessage | None
    unread: int


# An `@` right after what an email's local part may end with is an address, not a mention.
MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9_.-]+)")
USERNAME_MOST = 32  # identity's usernames: 3 to 32 of a-z, 0-9, '_', '.', '-'


def mentioned_usernames(body: str) -> list[str]:
    """The usernames `@name` in a body, case-folded, each once, in order of first appearance.
    Dots ending a name end the sentence; a name longer than any username is no mention."""
    seen: dict[str, None] = {}
    for match in MENTION.finditer(body):
        name = match.group(1).rstrip(".").lower()
        if 1 <= len(name) <= USERNAME_MOST:
            seen.setdefault(name, None)
    return list(seen)


def check_body(body: str, max_length: int) -> str:
    if not body.strip():
        raise InvalidInput("body must not be empty", field="body")
    if len(body) > max_length:
        raise BodyTooLong(f"body is longer than {max_length} characters", field="body")
    if "\x00" in body:
        raise InvalidInput("body must not contain NUL", field="body")
    return body


def check_room_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("name must be 1 to 100 characters", field="name")
    if "\x00" in name:
        raise InvalidInput("name must not contain NUL", field="name")
    return name


def direct_key(a: str, b: str) -> str:
    """The one key of the 1:1 room of two users, whoever asks first."""
    low, high = sorted((a, b))
    return f"{low}:{high}"


@dataclass
class TokenBucket:
    """`rate` tokens a second up to `burst`; `take` says whether one was there. Time is given
    (monotonic seconds), so the rule is pure."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


@dataclass
class Sequencer:
    """A room's live messages put back in seq order. `offer(seq, item)` returns what can be
    delivered now, in order; a seq already passed is dropped (a duplicate). A later seq waits
    for the ones before it; `missing()` says which range to read from history when they do
    not come, and `fill(items)` delivers what history gave."""

    next_seq: int | None = None  # None until the first message sets it
    waiting: dict[int, object] = field(default_factory=dict)

    def offer(self, seq: int, item: object) -> list[object]:
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.waiting:
            return []
        self.waiting[seq] = item
        return self._drain()

    def missing(self) -> tuple[int, int] | None:
        """(first, last) seqs missing before the earliest one waiting, or None."""
        if not self.waiting or self.next_seq is None:
            return None
        return self.next_seq, min(self.waiting) - 1

    def fill(
        self, found: Sequence[tuple[int, object]], asked: tuple[int, int] | None = None
    ) -> list[object]:
        """Deliver history's messages (seq, item) past `next_seq`, then what waited behind
        them. `asked` is the range (first, last) history was read for, as `missing()` gave
        it: a seq in it that history does not have was pruned (or never stored), and the
        stream moves past it. Seqs after `asked` are never skipped: they may still come.
        Without `asked`, the hole in front of the earliest waiting seq now is taken as asked;
        pass it when a read may be answered after that hole moved on."""
        if asked is None:
            asked = self.missing()
        if self.next_seq is None:
            if not found:
                return []
            self.next_seq = min(seq for seq, _ in found)  # as the first offer would
        for seq, item in found:
            if seq >= self.next_seq:
                self.waiting.setdefault(seq, item)
        out = self._drain()
        if asked is not None:
            last = asked[1]
            while self.next_seq <= last:  # history lacks next_seq: skip to what it has
                self.next_seq = min([*self.waiting, last + 1])
                out += self._drain()
        return out

    def skip_to(self, seq: int) -> list[object]:
        """The stream is known to be at `seq` (the last stored): the next expected is seq+1.
        Returns what waited right behind it and can be delivered now."""
        if self.next_seq is None or seq + 1 > self.next_seq:
            self.next_seq = seq + 1
            for old in [s for s in self.waiting if s < self.next_seq]:
                del self.waiting[old]
            return self._drain()
        return []

    def _drain(self) -> list[object]:
        out: list[object] = []
        assert self.next_seq is not None
        while self.next_seq in self.waiting:
            out.append(self.waiting.pop(self.next_seq))
            self.next_seq += 1
        return out
