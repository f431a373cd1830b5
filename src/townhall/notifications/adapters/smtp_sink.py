"""`SmtpSink`: the built-in SMTP server (aiosmtpd) that keeps what it receives, in memory.

The embedded default when no SMTP URL is set: `serve` starts it on a local port, points the
email sender at it, and the dev outbox shows its messages. It keeps the newest `limit` only,
and logs one line per email it receives (aiosmtpd's own line per SMTP command is debug detail).
"""

from __future__ import annotations

import asyncio
import email
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from townhall.platform.clock import Clock, SystemClock
from townhall.platform.observability import get_logger

log = get_logger("townhall.notifications.sink")
# aiosmtpd logs each command of each conversation at info: about seven lines per email.
AIOSMTPD_LOGGER = "mail.log"


def _quiet_aiosmtpd() -> None:
    """Keep aiosmtpd's per-command lines out of an info log; they show at debug, and a level
    set for its logger by whoever runs us is left alone."""
    logger = logging.getLogger(AIOSMTPD_LOGGER)
    if logger.level == logging.NOTSET and logging.getLogger().level > logging.DEBUG:
        logger.setLevel(logging.WARNING)


@dataclass(frozen=True)
class ReceivedEmail:
    to: str
    subject: str
    body: str
    message_id: str
    received_at: datetime
    html: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "message_id": self.message_id,
            "received_at": self.received_at.isoformat(),
        }


# Parsed with the compat32 classes: several times cheaper than the modern policy, which
# matters when the sink stands in for a mail server under load.
def _part(mime: Message, subtype: str) -> str | None:
    for part in mime.walk():
        if part.get_content_type() == f"text/{subtype}" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return None


def _header(mime: Message, name: str) -> str:
    raw = mime.get(name)
    if raw is None:
        return ""
    return str(make_header(decode_header(str(raw))))


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limit: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._clock = clock or SystemClock()
        self._messages: deque[ReceivedEmail] = deque(maxlen=limit)
        self._received = 0
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the SMTP sink is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[ReceivedEmail]:
        """What was received, oldest first (at most `limit`)."""
        return list(self._messages)

    @property
    def received(self) -> int:
        """How many messages arrived since start, including any the bound dropped."""
        return self._received

    def clear(self) -> None:
        self._messages.clear()

    async def start(self) -> None:
        _quiet_aiosmtpd()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="townhall-sink", enable_SMTPUTF8=True, loop=loop),
            self.host,
            self._port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int) -> None:
        """Wait until `count` messages have arrived since start (bound it with a timeout)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self._received >= count)

    # aiosmtpd handler hook
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content
        mime = email.message_from_bytes(bytes(content).replace(b"\r\n", b"\n"))
        received = ReceivedEmail(
            to=", ".join(envelope.rcpt_tos),
            subject=_header(mime, "Subject"),
            body=(_part(mime, "plain") or "").strip("\n"),
            message_id=_header(mime, "Message-ID"),
            received_at=self._clock.now(),
            html=_part(mime, "html"),
        )
        self._messages.append(received)
        self._received += 1
        log.info(
            "sink received email",
            to=received.to,
            subject=received.subject,
            message_id=received.message_id,
        )
        async with self._arrived:
            self._arrived.notify_all()
        return "250 Message accepted for delivery"
