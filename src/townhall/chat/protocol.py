"""The WebSocket protocol's frames (README.md is the contract) and the relay's wire format.

A relay message on `chat.room.<id>` is `KIND|SEQ|USER|FRAME`: the frame's JSON text exactly as
sockets get it, encoded once by the publisher, behind a header a gateway reads without parsing
the JSON. KIND: `m` a message (SEQ its seq), `u` an update of one (edited, deleted), `p`
presence, `t` typing (USER: who, whose own sockets skip it), `x` a member removed (USER).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from townhall.chat.domain import ChatMessage

MESSAGE, UPDATE, PRESENCE, TYPING, REMOVED = "m", "u", "p", "t", "x"

# Close codes (README.md).
UNAUTHORIZED = 4401
BAD_FRAMES = 4400
RATE_LIMITED = 4429
TOO_SLOW = 4508
GOING_AWAY = 1001

OPS = ("join", "leave", "send", "typing", "read", "ping")


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _iso(value: Any) -> str:
    return str(value.isoformat()).replace("+00:00", "Z")


def message_frame(message: ChatMessage) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "op": "message",
        "room": message.room,
        "id": message.id,
        "seq": message.seq,
        "author": message.author,
        "body": message.body,
        "ts": _iso(message.created_at),
        "client_id": message.client_id,
        "attachments": list(message.attachments),
    }
    if message.edited_at is not None:
        frame["edited_at"] = _iso(message.edited_at)
    if message.deleted:
        frame["deleted"] = True
    return frame


def _relay(kind: str, seq: int, user: str, frame: dict[str, Any]) -> bytes:
    return f"{kind}|{seq}|{user}|{dumps(frame)}".encode()


def relay_message(message: ChatMessage) -> bytes:
    return _relay(MESSAGE, message.seq, message.author, message_frame(message))


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


def error_frame(code: str, message: str, ref: Any = None) -> str:
    frame: dict[str, Any] = {"op": "error", "code": code, "message": message}
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
        return value

    def seq(self, name: str, *, required: bool) -> int | None:
        if name not in self.fields or self.fields[name] is None:
            if required:
                raise BadFrame("missing_field", f"{self.op} needs {name!r}", self.ref)
            return None
        value = self.fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadFrame("invalid", f"{name!r} must be a seq (an integer >= 0)", self.ref)
        return value

    def ids(self, name: str) -> list[str]:
        value = self.fields.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BadFrame("invalid", f"{name!r} must be a list of ids", self.ref)
        if len(value) > 10:
            raise BadFrame("invalid", f"{name!r} holds at most 10 ids", self.ref)
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
