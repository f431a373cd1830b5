"""How a message's attachments go out in its frame: a clean file with its url, a placeholder
with the status before, nothing for an upload not shown (infected, deleted)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from townhall.chat import protocol
from townhall.chat.domain import Attachment, ChatMessage

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def message(*attachments: str) -> ChatMessage:
    return ChatMessage("m1", "r1", 7, "u1", "hi", AT, "c1", attachments)


def test_a_clean_file_is_shown_with_its_url_a_pending_one_as_a_placeholder_a_missing_one_not():
    shown = {
        "a": Attachment("a", "CLEAN", "photo.png", "image/png", 42),
        "b": Attachment("b", "PENDING_SCAN"),
        "f": Attachment("f", "FAILED"),
    }
    frame = protocol.message_frame(message("a", "b", "gone", "f"), shown)
    assert frame["attachments"] == [
        {
            "id": "a",
            "status": "CLEAN",
            "filename": "photo.png",
            "content_type": "image/png",
            "size": 42,
            "url": "/api/v1/uploads/a/content",
        },
        {"id": "b", "status": "PENDING_SCAN"},
        {"id": "f", "status": "FAILED"},
    ]


def test_the_relay_carries_the_attachments_as_shown_once_encoded():
    shown = {"b": Attachment("b", "PENDING_SCAN")}
    relayed = protocol.parse_relay(protocol.relay_message(message("b", "x"), shown))
    assert (relayed.kind, relayed.seq, relayed.user) == (protocol.MESSAGE, 7, "u1")
    assert json.loads(relayed.text)["attachments"] == [{"id": "b", "status": "PENDING_SCAN"}]


def test_a_message_without_attachments_has_an_empty_list():
    assert protocol.message_frame(message())["attachments"] == []
