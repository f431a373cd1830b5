"""INTERIM (replaced by the scanning branch): YARA rules through yara-x, whole buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from pathlib import Path

import yara_x

from townhall.uploads.domain import Verdict

RULES = Path(__file__).resolve().parent.parent / "rules"


class YaraScanner:
    name = "yara"

    def __init__(self, rules_dir: Path | None = None) -> None:
        compiler = yara_x.Compiler()
        for path in sorted((rules_dir or RULES).glob("*.yar")):
            compiler.add_source(path.read_text())
        self._rules = compiler.build()

    async def scan(self, chunks: AsyncIterable[bytes]) -> Verdict:
        data = b"".join([c async for c in chunks])
        results = await asyncio.to_thread(self._rules.scan, data)
        for rule in results.matching_rules:
            return Verdict.infected(f"{rule.namespace}.{rule.identifier}")
        return Verdict.clean()

    async def close(self) -> None:
        return None
