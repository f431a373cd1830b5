"""In-process pub/sub (the embedded default): every `memory://` instance of one prefix in this
process hears the others' publishes, as gateways sharing a Redis would; nothing crosses
processes."""

from __future__ import annotations

from townhall.platform.pubsub.fanout import FanoutPubSub
from townhall.platform.pubsub.options import PubSubOptions, check_channel

_INSTANCES: dict[str, set[MemoryPubSub]] = {}


class MemoryPubSub(FanoutPubSub):
    def __init__(self, options: PubSubOptions) -> None:
        super().__init__(options)
        _INSTANCES.setdefault(options.prefix, set()).add(self)

    async def publish(self, channel: str, data: bytes) -> None:
        check_channel(channel)
        if self._closed:
            raise RuntimeError("pub/sub is closed")
        # Delivery is a synchronous append to each subscriber's buffer: publishes land in
        # the order they were made.
        for instance in tuple(_INSTANCES.get(self.options.prefix, ())):
            instance._deliver(channel, bytes(data))

    async def ping(self) -> None:
        if self._closed:
            raise RuntimeError("pub/sub is closed")

    async def _shutdown(self) -> None:
        peers = _INSTANCES.get(self.options.prefix)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del _INSTANCES[self.options.prefix]
