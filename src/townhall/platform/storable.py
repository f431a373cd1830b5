"""Text every supported database can store: PostgreSQL refuses NUL in `text` and `jsonb`, and
no database takes a lone UTF-16 surrogate (it is not Unicode text at all).

Pure functions; the edge (`platform/request_guards.py`) applies them to every request once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

NUL = "\x00"
NUL_MESSAGE = "contains a NUL character (\\u0000), which cannot be stored"
SURROGATE_MESSAGE = "contains an unpaired surrogate (\\ud800-\\udfff), which is not text"

# How a JSON document can spell either: NUL and a surrogate only ever appear escaped (a raw
# control character inside a JSON string is a syntax error). Paired surrogates (an emoji
# written `\ud83d\ude00`) match too; they cost a second look, not a refusal.
_ESCAPED_IN_JSON = re.compile(rb"\\u(?:0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)


def why_unstorable(text: str) -> str | None:
    """None for text any database stores, else what is wrong with it."""
    if NUL in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
    return None


def json_may_hold_unstorable(document: bytes) -> bool:
    """A fast first look at a raw JSON body: False means every string in it is storable."""
    return _ESCAPED_IN_JSON.search(document) is not None


def unstorable_strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(dotted path, reason) for each string in a parsed JSON value that cannot be stored; a
    key that cannot be stored is reported at the path of the object holding it."""
    if isinstance(value, str):
        reason = why_unstorable(value)
        if reason is not None:
            yield ".".join(path), reason
    elif isinstance(value, dict):
        for key, item in value.items():
            reason = why_unstorable(key)
            if reason is not None:
                # The key cannot name itself safely: name the object holding it.
                yield ".".join(path), f"has a key that {reason}"
            else:
                yield from unstorable_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_strings(item, (*path, str(index)))
