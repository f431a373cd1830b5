"""Fixtures of the orders tests: `saga_mode` (every saga scenario runs once per mode of
`SAGA_MODES`) and `stack` (once per database + bus of `support.participants.STACKS`)."""

from support.orders import saga_mode
from support.participants import stack

__all__ = ["saga_mode", "stack"]
