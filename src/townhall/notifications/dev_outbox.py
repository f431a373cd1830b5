"""The development outbox: what this process's built-in sinks received (email, SMS, push), for
trying Townhall without real providers. `GET /api/v1/dev/outbox` gives it as JSON, the page
`/dev/outbox` as HTML on the machine itself.

The sinks keep messages in the memory of the process that sends them, the one running the
channel's delivery worker. When that is another process (`serve --no-consumers` beside
`townhall worker notifications.email`, ...), this process's sinks stay empty, and the outbox
says where the messages went instead.
"""

from __future__ import annotations

import html
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from townhall.notifications.domain import Channel
from townhall.notifications.ports import EmailSinkView, SentSinkView


@dataclass
class DevOutbox:
    smtp_sink: EmailSinkView | None
    sms_sink: SentSinkView | None
    push_sink: SentSinkView | None
    # The channels whose delivery worker runs in this process (filled as their groups start).
    delivering: Collection[Channel]

    @property
    def enabled(self) -> bool:
        return any(sink is not None for sink in (self.smtp_sink, self.sms_sink, self.push_sink))

    def sink_channels(self) -> list[Channel]:
        sinks = {
            Channel.EMAIL: self.smtp_sink,
            Channel.SMS: self.sms_sink,
            Channel.PUSH: self.push_sink,
        }
        return [channel for channel, sink in sinks.items() if sink is not None]

    def elsewhere(self) -> list[Channel]:
        """Channels that go to a built-in sink, but to another process's."""
        return [channel for channel in self.sink_channels() if channel not in self.delivering]

    def note(self) -> str | None:
        elsewhere = self.elsewhere()
        if not elsewhere:
            return None
        names = ", ".join(channel.value for channel in elsewhere)
        workers = ", ".join(f"notifications.{channel.value}" for channel in elsewhere)
        return (
            f"No {names} delivery worker runs in this process, so its built-in sink here stays"
            f" empty. Those messages go to the built-in sinks of the processes running the"
            f" consumer groups {workers} (`townhall worker ...`): each logs one line per message"
            ' ("sink received email", "sink received sms", "sink received push") and keeps'
            " them in its own memory."
        )

    def snapshot(self) -> dict[str, Any]:
        """Newest last, as the sinks keep them (each keeps its newest 1,000)."""
        return {
            "items": [m.as_dict() for m in self.smtp_sink.messages] if self.smtp_sink else [],
            "sms": [sms.as_dict() for sms in self.sms_sink.sent] if self.sms_sink else [],
            "push": [push.as_dict() for push in self.push_sink.sent] if self.push_sink else [],
            "sinks": [channel.value for channel in self.sink_channels()],
            "delivered_here": [c.value for c in self.sink_channels() if c in self.delivering],
            "note": self.note(),
        }

    def html(self) -> str:
        outbox = self.snapshot()
        note = outbox["note"]
        sections = [
            _table(
                "Email",
                "received by the built-in SMTP sink",
                ("received_at", "to", "subject", "body"),
                outbox["items"],
            ),
            _table("SMS", "sent to the SMS sink", ("sent_at", "to", "body"), outbox["sms"]),
            _table(
                "Push",
                "sent to the push sink",
                ("sent_at", "platform", "token", "title", "body"),
                outbox["push"],
            ),
        ]
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Townhall dev outbox</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:.4em;"
            "border-bottom:1px solid #ddd}pre{white-space:pre-wrap;margin:0}"
            ".note{background:#fff3cd;padding:.8em}</style></head><body><h1>Dev outbox</h1>"
            + (f"<p class='note'>{html.escape(note)}</p>" if note else "")
            + "".join(sections)
            + "</body></html>"
        )


def _table(title: str, what: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td><pre>{html.escape(str(row[column]))}</pre></td>" for column in columns)
        + "</tr>"
        for row in reversed(rows)
    )
    return (
        f"<h2>{title}</h2><p>{len(rows)} message(s) {what} of this process, newest first.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
    )
