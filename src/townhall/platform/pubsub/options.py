"""The pub/sub URL's options (`redis://host:6379/0?prefix=t1&buffer=500`), shared by adapters."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_CHANNEL_LENGTH = 200


@dataclass
class PubSubOptions:
    prefix: str = "townhall"  # keeps deployments and test runs on one server apart
    buffer: int = 1000  # messages a subscriber may have waiting before the oldest are dropped
    timeout: float = 2.0  # connect, ping and subscribe-confirmation timeout, seconds
    reconnect_wait: float = 0.5  # first wait before reconnecting (doubles, up to 2 s)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def connection_name(self) -> str:
        """The name the connections carry on the server (`?connection_name=` overrides it)."""
        default = f"townhall-pubsub-{self.prefix}-{socket.gethostname()}-{os.getpid()}"
        return self.extra.get("connection_name", default)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> PubSubOptions:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        query.update({k: str(v) for k, v in overrides.items()})
        options = cls()
        for name, cast in (
            ("prefix", str),
            ("buffer", int),
            ("timeout", float),
            ("reconnect_wait", float),
        ):
            if name in query:
                setattr(options, name, cast(query.pop(name)))
        options.extra = query
        if not options.prefix or not options.prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError("pub/sub prefix must be letters, digits, '-' or '_'")
        if options.buffer < 1:
            raise ValueError("buffer must be at least 1")
        if options.timeout <= 0 or options.reconnect_wait <= 0:
            raise ValueError("timeout and reconnect_wait must be positive")
        return options


def check_channel(channel: str) -> None:
    """A channel name: 1 to 200 printable ASCII characters, no spaces."""
    if not (
        0 < len(channel) <= MAX_CHANNEL_LENGTH
        and channel.isascii()
        and channel.isprintable()
        and " " not in channel
    ):
        raise ValueError(
            f"channel must be 1 to {MAX_CHANNEL_LENGTH} printable ASCII characters without "
            f"spaces, not {channel!r}"
        )


def strip_query(url: str) -> str:
    return url.split("?", 1)[0]
