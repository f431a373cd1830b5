"""The WebSocket protocol's frames (README.md is the contract) and the relay's wire format.

A relay message on `chat.room.<id>` is `KIND|SEQ|USER|FRAME`: the frame's JSON text exactly as
sockets get it, encoded once by the publisher, behind a header a gateway reads without parsing
the JSON. KIND: `m` a message (SEQ its seq), `u` an update of one (edited, deleted), `p`
presence, `t` typing (USER: who, whose own sockets skip it), `x` a member removed (USER).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from townhall.chat.domain import Attachment, ChatMessage

MESSAGE, UPDATE, PRESENCE, TYPING, REMOVED = "m", "u", "p", "t", "x"

# Close codes (README.md).
UNAUTHORIZED = 4401
BAD_FRAMES = 4400
RATE_LIMITED = 4429
TOO_SLOW = 4508
GOING_AWAY = 1001

OPS = ("join", "leave", "send", "typing", "read", "ping")
MAX_SEQ = 2**63 - 1  # seqs are BIGINT columns: a larger one is refused, never sent to a query


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _iso(value: Any) -> str:
    return str(value.isoformat()).replace("+00:00", "Z")


def content_url(upload_id: str) -> str:
    return f"/api/v1/uploads/{upload_id}/content"


def attachment_frame(attachment: Attachment) -> dict[str, Any]:
    """A clean file with its name, type, size and where to read it; else `{id, status}`."""
    if not attachment.clean:
        return {"id": attachment.id, "status": attachment.status}
    return {
        "id": attachment.id,
        "status": attachment.status,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": content_url(attachment.id),
    }


def shown_attachments(
    message: ChatMessage, shown: Mapping[str, Attachment]
) -> list[dict[str, Any]]:
    """The message's attachments as readers see them (`shown`: the views of its uploads);
    one not in `shown` (infected, deleted) is left out."""
    return [attachment_frame(shown[i]) for i in message.attachments if i in shown]


NOTHING: Mapping[str, Attachment] = {}


def message_frame(
    message: ChatMessage, shown: Mapping[str, Attachment] = NOTHING
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "op": "message",
        "room": message.room,
        "id": message.id,
        "seq": message.seq,
        "author": message.author,
        "body": message.body,
        "ts": _iso(message.created_at),
        "client_id": message.client_id,
        "attachments": shown_attachments(message, shown) if message.attachments else [],
    }
    if message.edited_at is not None:
        frame["edited_at"] = _iso(message.edited_at)
    if message.deleted:
        frame["deleted"] = True
    return frame


def _relay(kind: str, seq: int, user: str, frame: dict[str, Any]) -> bytes:
    return f"{kind}|{seq}|{user}|{dumps(frame)}".encode()


def relay_message(message: ChatMessage, shown: Mapping[str, Attachment] = NOTHING) -> bytes:
    return _relay(MESSAGE, message.seq, message.author, message_frame(message, shown))


def relay_edited(message: ChatMessage) -> bytes:
    frame = {
        "op": "edited",
        "room": message.room,
        "id": message.id,
        "seq": message.seq,
        "body": message.body,
        "edited_at": _iso(message.edited_at),
    }
    return _relay(UPDATE, message.seq, message.author, frame)


def relay_deleted(message: ChatMessage) -> bytes:
    frame = {"op": "deleted", "room": message.room, "id": message.id, "seq": message.seq}
    return _relay(UPDATE, message.seq, message.author, frame)


def relay_presence(room_id: str, user: str, online: bool) -> bytes:
    status = "online" if online else "offline"
    frame = {"op": "presence", "room": room_id, "user": user, "status": status}
    return _relay(PRESENCE, 0, user, frame)


def relay_typing(room_id: str, user: str) -> bytes:
    return _relay(TYPING, 0, user, {"op": "typing", "room": room_id, "user": user})


def relay_removed(room_id: str, user: str) -> bytes:
    return _relay(REMOVED, 0, user, {"op": "left", "room": room_id, "reason": "removed"})


@dataclass(frozen=True)
class Relayed:
    kind: str
    seq: int
    user: str
    text: str  # the frame, as sockets get it


def parse_relay(data: bytes) -> Relayed:
    kind, seq, user, text = data.decode().split("|", 3)
    return Relayed(kind, int(seq), user, text)


class BadFrame(Exception):
    def __init__(self, code: str, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def error_frame(code: str, message: str, ref: Any = None, field: str | None = None) -> str:
    frame: dict[str, Any] = {"op": "error", "code": code, "message": message}
    if field is not None:
        frame["field"] = field
    if ref is not None:
        frame["ref"] = ref
    return dumps(frame)


@dataclass(frozen=True)
class ClientFrame:
    op: str
    fields: dict[str, Any]
    ref: Any

    def room(self) -> str:
        return self.text("room", max_length=36)

    def text(self, name: str, *, max_length: int | None = None) -> str:
        if name not in self.fields:
            raise BadFrame("missing_field", f"{self.op} needs {name!r}", self.ref)
        value = self.fields[name]
        if not isinstance(value, str) or not value:
            raise BadFrame("invalid", f"{name!r} must be a non-empty string", self.ref)
        if max_length is not None and len(value) > max_length:
            raise BadFrame("invalid", f"{name!r} is longer than {max_length}", self.ref)
        if "\x00" in value:  # PostgreSQL cannot store or compare it
            raise BadFrame("invalid", f"{name!r} must not contain NUL", self.ref)
        return value

    def seq(self, name: str, *, required: bool) -> int | None:
        if name not in self.fields or self.fields[name] is None:
            if required:
                raise BadFrame("missing_field", f"{self.op} needs {name!r}", self.ref)
            return None
        value = self.fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
            raise BadFrame(
                "invalid", f"{name!r} must be a seq (an integer from 0 to 2^63-1)", self.ref
            )
        return value

    def ids(self, name: str) -> list[str]:
        value = self.fields.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BadFrame("invalid", f"{name!r} must be a list of ids", self.ref)
        if len(value) > 10:
            raise BadFrame("invalid", f"{name!r} holds at most 10 ids", self.ref)
        if any(len(v) > 36 or "\x00" in v for v in value):
            raise BadFrame(
                "invalid", f"{name!r} holds ids of 1 to 36 characters, without NUL", self.ref
            )
        return value


def parse_frame(text: str) -> ClientFrame:
    try:
        frame = json.loads(text)
    except ValueError:
        raise BadFrame("bad_frame", "a frame is one JSON object") from None
    if not isinstance(frame, dict):
        raise BadFrame("bad_frame", "a frame is one JSON object")
    ref = frame.pop("ref", None)
    op = frame.pop("op", None)
    if op is None:
        raise BadFrame("missing_field", "a frame needs 'op'", ref)
    if op not in OPS:
        raise BadFrame("unknown_op", f"unknown op {op!r}; known: {', '.join(OPS)}", ref)
    if op == "send" and ref is None:
        ref = frame.get("client_id")
    return ClientFrame(op, frame, ref)
