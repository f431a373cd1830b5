"""The ports the notifications module delivers through: one sender per channel.

Every sender classifies what its provider answered (see `SendOutcome` in the domain) instead of
raising: a worker decides from the outcome whether to record SENT, retry, or fail at once.
"""

from __future__ import annotations

from typing import Protocol

from townhall.notifications.domain import EmailMessage, PushMessage, SendOutcome, SmsMessage


class EmailSender(Protocol):
    name: str

    async def send(self, message: EmailMessage) -> SendOutcome: ...

    async def aclose(self) -> None: ...


class SmsSender(Protocol):
    name: str

    async def send(self, message: SmsMessage) -> SendOutcome: ...

    async def aclose(self) -> None: ...


class PushSender(Protocol):
    """Sends to one device; a `Permanent(token_dead=True)` answer means remove that token."""

    name: str

    async def send(self, message: PushMessage) -> SendOutcome: ...

    async def aclose(self) -> None: ...
