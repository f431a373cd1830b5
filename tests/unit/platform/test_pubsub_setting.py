"""TOWNHALL_PUBSUB_URL picks the pub/sub; one that cannot be used is a ConfigError naming it."""

import pytest

from support.brokers import free_port
from townhall.bootstrap import open_pubsub
from townhall.config import ConfigError, Settings


async def test_an_unusable_pubsub_url_is_a_config_error_naming_the_variable():
    for url in ("kafka://x", f"redis://127.0.0.1:{free_port()}/0?timeout=0.5"):
        with pytest.raises(ConfigError) as caught:
            await open_pubsub(Settings(pubsub_url=url))
        assert caught.value.variable == "TOWNHALL_PUBSUB_URL"
    pubsub = await open_pubsub(Settings())
    await pubsub.ping()
    await pubsub.close()
