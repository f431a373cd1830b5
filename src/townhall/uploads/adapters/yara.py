"""The embedded scanner: YARA rules through yara-x, in process, over a stream in bounded memory.

yara-x scans a buffer, so a stream is scanned in windows of `window` bytes, each one starting
`overlap` bytes before the previous one ended: a pattern up to `overlap` bytes long is whole in
some window, wherever the file is cut. Memory is about two windows, whatever the file's size.

Rules see two globals besides the buffer: `window_offset`, where the window starts in the file
(`$a at 0 and window_offset == 0` is "at the file's start"), and `total_size`, the file's size
once the last window is scanned, -1 before (YARA's `filesize` is the window's size). A condition
that combines several patterns holds only when they are in one window.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from pathlib import Path

import yara_x

from townhall.uploads.domain import ScanError, Verdict

RULES = Path(__file__).resolve().parent.parent / "rules"
WINDOW = 8 * 1024 * 1024
OVERLAP = 64 * 1024
# A backstop for a pathological rule; the caller bounds the whole scan.
WINDOW_TIMEOUT = 60


class YaraScanner:
    """Every `*.yar` file of `rules_dir` (default: the rules shipped in `uploads/rules`),
    compiled once, each in a namespace named after its file. A detection is named
    `<namespace>.<rule>`, e.g. `eicar.EICAR_Test_File`."""

    name = "yara"

    def __init__(
        self, rules_dir: Path | None = None, window: int = WINDOW, overlap: int = OVERLAP
    ) -> None:
        if overlap < 0 or window < max(1, 2 * overlap):
            raise ValueError("a window must be positive and at least twice the overlap")
        self._window, self._overlap = window, overlap
        self._rules = compile_rules(rules_dir or RULES)

    async def scan(self, chunks: AsyncIterable[bytes]) -> Verdict:
        buffer = bytearray()
        offset = 0  # where `buffer` starts in the file
        async for chunk in chunks:
            buffer += chunk
            # More than a window: a whole one can be scanned, and the file goes on past it.
            while len(buffer) > self._window:
                with memoryview(buffer) as view:
                    window = bytes(view[: self._window])
                detection = await asyncio.to_thread(self._scan_window, window, offset, -1)
                if detection is not None:
                    return Verdict.infected(detection)
                del window
                step = self._window - self._overlap
                del buffer[:step]
                offset += step
        detection = await asyncio.to_thread(
            self._scan_window, bytes(buffer), offset, offset + len(buffer)
        )
        return Verdict.clean() if detection is None else Verdict.infected(detection)

    def _scan_window(self, data: bytes, offset: int, total_size: int) -> str | None:
        # A yara-x scanner may only be used on the thread that made it (and is cheap to make).
        scanner = yara_x.Scanner(self._rules)
        scanner.set_global("window_offset", offset)
        scanner.set_global("total_size", total_size)
        scanner.set_timeout(WINDOW_TIMEOUT)
        try:
            results = scanner.scan(data)
        except Exception as exc:  # yara_x.ScanError, yara_x.TimeoutError, or worse: not CLEAN
            raise ScanError(f"yara: {exc}") from exc
        for rule in results.matching_rules:
            return f"{rule.namespace}.{rule.identifier}"
        return None

    async def close(self) -> None:
        return None


def compile_rules(rules_dir: Path) -> yara_x.Rules:
    """Compile the `*.yar` files of a directory; `ScanError` naming the file for one that does
    not compile, or when there are none (a scanner without rules would find everything clean)."""
    compiler = yara_x.Compiler()
    compiler.define_global("window_offset", 0)
    compiler.define_global("total_size", -1)
    paths = sorted(rules_dir.glob("*.yar"))
    if not paths:
        raise ScanError(f"yara: no *.yar rules in {rules_dir}")
    for path in paths:
        compiler.new_namespace(path.stem)
        try:
            compiler.add_source(path.read_text(encoding="utf-8"), origin=str(path))
        except yara_x.CompileError as exc:
            raise ScanError(f"yara: {path.name} does not compile: {exc}") from exc
    return compiler.build()
