"""One push sender for the channel: each message goes to its device's platform's sender."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from townhall.notifications.domain import Permanent, PushMessage, PushPlatform, SendOutcome
from townhall.notifications.ports import Sender


class PushRouter:
    def __init__(self, senders: Mapping[PushPlatform, Sender[PushMessage]]) -> None:
        self._senders = dict(senders)
        self.name = "+".join(sender.name for sender in self._senders.values()) or "push"

    async def send(self, message: PushMessage) -> SendOutcome:
        sender = self._senders.get(message.device.platform)
        if sender is None:
            return Permanent(f"no push provider for {message.device.platform.value}")
        return await sender.send(message)

    async def aclose(self) -> None:
        await asyncio.gather(*(sender.aclose() for sender in set(self._senders.values())))
