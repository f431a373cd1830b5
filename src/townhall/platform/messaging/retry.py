"""Retry policy: exponential backoff with full jitter, honouring a delay a handler asks for."""

from __future__ import annotations

import random
from dataclasses import dataclass


class Retry(Exception):
    """Raise from a handler to be retried no sooner than `after` seconds."""

    def __init__(self, after: float, reason: str = "") -> None:
        super().__init__(reason or f"retry after {after}s")
        self.after = max(0.0, float(after))


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 after attempt n failed: uniform in [ceiling/2, ceiling],
    where ceiling = min(cap, base * 2**(n-1)). Half-jitter keeps a floor so retries do back off.
    """

    base: float = 0.5
    cap: float = 60.0

    def ceiling(self, attempt: int) -> float:
        exponent = min(max(attempt, 1) - 1, 62)
        return min(self.cap, self.base * (2.0**exponent))

    def delay(
        self, attempt: int, error: BaseException | None = None, rng: random.Random | None = None
    ) -> float:
        if isinstance(error, Retry):
            return error.after
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(ceiling / 2, ceiling)
