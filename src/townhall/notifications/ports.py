"""The ports the notifications module delivers through: one sender per channel, and what the
development outbox reads of the built-in sinks.

Every sender classifies what its provider answered (see `SendOutcome` in the domain) instead of
raising: a worker decides from the outcome whether to record SENT, retry, or fail at once.
"""

from __future__ import annotations

from collections.abc import Sequence
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


class SinkRecord(Protocol):
    """One message a built-in sink kept, as the development outbox shows it."""

    def as_dict(self) -> dict[str, str]: ...


class EmailSinkView(Protocol):
    @property
    def messages(self) -> Sequence[SinkRecord]: ...


class SentSinkView(Protocol):
    """The SMS or the push sink."""

    @property
    def sent(self) -> Sequence[SinkRecord]: ...
