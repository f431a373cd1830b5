"""TOWNHALL_RELAY_LINGER reaches the outbox relay `serve` runs; out of range it is refused."""

from __future__ import annotations

import pydantic
import pytest

from support.app import settings_for
from townhall.bootstrap import assemble


async def test_the_relay_lingers_as_long_as_the_setting_says(tmp_path):
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", tmp_path, relay_linger=0)
    runtime = await assemble(settings, ["identity"])
    try:
        await runtime.start()
        assert runtime.relay is not None and runtime.relay.linger == 0
    finally:
        await runtime.stop()


@pytest.mark.parametrize("linger", [-0.1, 5])
def test_a_linger_out_of_range_is_refused_naming_it(tmp_path, linger):
    with pytest.raises(pydantic.ValidationError, match="relay_linger"):
        settings_for("sqlite+aiosqlite://", tmp_path, relay_linger=linger)
