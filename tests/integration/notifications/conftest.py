"""`stack`: a test runs once per database + bus of `support.participants.STACKS` (a test
module may define its own `stack` over other stacks, as the notifications flow does)."""

from support.participants import stack

__all__ = ["stack"]
