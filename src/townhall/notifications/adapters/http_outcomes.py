"""What the HTTP provider adapters share: Retry-After parsing and transport errors as outcomes."""

from __future__ import annotations

import email.utils
from datetime import datetime

import httpx

from townhall.notifications.domain import Transient


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """The `Retry-After` header in seconds (it may be seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def transport_failure(exc: httpx.TransportError) -> Transient:
    """Timeouts, refused or dropped connections: worth a retry (the provider may have sent it,
    which is the at-least-once window the README describes)."""
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
    return Transient(f"{kind}: {type(exc).__name__}: {exc}".rstrip(": "))
