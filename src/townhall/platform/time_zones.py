"""The one rule for a time zone a user gives: an IANA name (`Europe/Paris`, `UTC`), as spelt in
the tz database. Every module that takes a time zone checks it here.

`zoneinfo` alone is not the rule: it loads any file under the system's zoneinfo directory, so
`localtime` (on many systems a link to the server's own zone, whatever that is) and names in
the wrong case on a case-insensitive file system would pass. Pure Python, so any `domain.py`
may import it.
"""

from __future__ import annotations

import functools
import zoneinfo

# Files that sit among the zones on some systems but are not zone names of the tz database
# (`Factory` is in it, but only as the placeholder zone of an unconfigured machine, "-00").
_NOT_ZONE_NAMES = frozenset({"localtime", "posixrules", "Factory"})

HINT = "an IANA time zone name such as Europe/Paris, America/New_York or UTC"


@functools.cache
def iana_time_zones() -> frozenset[str]:
    """The zone names this installation knows (read once: listing them walks the tz files)."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONE_NAMES


def is_iana_time_zone(name: str) -> bool:
    return name in iana_time_zones()


def check_time_zone(name: str) -> str:
    """`name` if it is an IANA time zone name, else a ValueError saying what is expected."""
    if not is_iana_time_zone(name):
        raise ValueError(f"{name!r} is not {HINT}")
    return name
