"""`townhall relay` with the outbox relay's linger set, for `bench/orders.py --relay-linger`.

    python bench/relay_linger.py SECONDS

The linger (`OutboxRelay(linger=0.01)`: how long a woken relay waits for more rows before it
reads a batch) is a constructor argument, not a setting; this runs the real `townhall relay`
command with it changed, to measure what it costs each hop of a saga. An experiment only.
"""

from __future__ import annotations

import functools
import sys

from townhall import cli
from townhall.platform.messaging import cli as messaging_cli

if __name__ == "__main__":
    linger = float(sys.argv[1])
    messaging_cli.OutboxRelay = functools.partial(  # type: ignore[misc]
        messaging_cli.OutboxRelay, linger=linger
    )
    sys.argv[1:] = ["relay"]
    cli.main()
