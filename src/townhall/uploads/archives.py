"""INTERIM (replaced by the scanning branch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchiveLimits:
    max_depth: int = 3
    max_members: int = 10_000
    max_total_bytes: int = 1024**3
    max_ratio: int = 100
