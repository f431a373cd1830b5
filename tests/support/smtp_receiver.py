"""An SMTP server in a thread for tests of real processes: counts what it receives."""

from __future__ import annotations

import re
import threading
from collections import Counter

from aiosmtpd.controller import Controller

from support.process import free_port

NOTIFICATION = re.compile(rb"X-Townhall-Notification: ([0-9a-f-]{36})")
MESSAGE_ID = re.compile(rb"Message-ID: (<[^>]+>)", re.IGNORECASE)


class Receiver:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        with self._lock:
            self.messages.append(envelope.content)
        return "250 OK"

    def by_notification(self) -> Counter[str]:
        with self._lock:
            found = [NOTIFICATION.search(m) for m in self.messages]
        return Counter(match.group(1).decode() for match in found if match)

    def message_ids(self) -> Counter[str]:
        with self._lock:
            found = [MESSAGE_ID.search(m) for m in self.messages]
        return Counter(match.group(1).decode() for match in found if match)


class SmtpReceiver:
    """`with SmtpReceiver() as smtp:` -> smtp.url, smtp.receiver."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.port = free_port()
        self._controller = Controller(self.receiver, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
