"""The scan pipeline with a scanner of the test's own: what is scanned, in what order, and which
verdict wins. (tests/contract/uploads runs it over the real scanners.)"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import pytest

from support.zips import nested, patched, zeros_bomb, zip_of
from townhall.uploads.archives import ArchiveLimits
from townhall.uploads.domain import ScanError, Verdict
from townhall.uploads.scanning import ScanPipeline

ZIP = "application/zip"


class MarkerScanner:
    """INFECTED `marker:<name>` for a stream holding `BAD:<name>`; records what it read."""

    name = "marker"

    def __init__(self, *, wrap_errors: bool = False, fail: bool = False) -> None:
        self.scanned: list[bytes] = []
        self.wrap_errors = wrap_errors
        self.fail = fail

    async def scan(self, chunks: AsyncIterable[bytes]) -> Verdict:
        if self.fail:
            raise ScanError("scanner down")
        try:
            data = b"".join([chunk async for chunk in chunks])
        except Exception as exc:
            if self.wrap_errors:  # as a careless adapter might
                raise ScanError(f"broken: {exc}") from exc
            raise
        self.scanned.append(data)
        if b"BAD:" in data:
            name = data.split(b"BAD:", 1)[1][:5].decode()
            return Verdict.infected(f"marker:{name}")
        return Verdict.clean()

    async def close(self) -> None:
        return None


async def stream(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def pipeline(scanner: MarkerScanner, **limits: int) -> ScanPipeline:
    return ScanPipeline(scanner, ArchiveLimits(**limits), timeout=10)


async def test_a_file_that_is_no_zip_is_scanned_once_whole() -> None:
    scanner = MarkerScanner()
    body = zip_of({"a.txt": b"BAD:inner"})  # zip bytes, declared otherwise: not looked into
    assert await pipeline(scanner).verdict(stream(body), "text/plain") == Verdict.clean()
    assert scanner.scanned == [body]


async def test_a_zip_is_scanned_whole_then_member_by_member() -> None:
    scanner = MarkerScanner()
    inner = zip_of({"c.txt": b"c"})
    body = zip_of({"a.txt": b"a", "inner.zip": inner, "b.txt": b"b"})
    assert await pipeline(scanner).verdict(stream(body), ZIP) == Verdict.clean()
    assert scanner.scanned == [body, b"a", inner, b"c", b"b"]


async def test_the_first_infected_member_wins_and_the_scan_stops() -> None:
    scanner = MarkerScanner()
    body = zip_of({"a.txt": b"a", "x.txt": b"BAD:first", "y.txt": b"BAD:later"})
    assert await pipeline(scanner).verdict(stream(body), ZIP) == Verdict.infected("marker:first")
    assert scanner.scanned[-1] == b"BAD:first"


async def test_an_infected_member_deep_inside_is_found() -> None:
    body = nested("x.txt", b"BAD:deep!", levels=2)
    verdict = await pipeline(MarkerScanner()).verdict(stream(body), ZIP)
    assert verdict == Verdict.infected("marker:deep!")


async def test_a_bomb_is_infected_even_through_a_scanner_that_wraps_errors() -> None:
    for scanner in (MarkerScanner(), MarkerScanner(wrap_errors=True)):
        verdict = await pipeline(scanner).verdict(stream(zeros_bomb()), ZIP)
        assert verdict == Verdict.infected("archive_limits")


async def test_an_infected_member_wins_over_an_encrypted_one() -> None:
    encrypted = patched(zip_of({"secret.txt": b"s"}), flag_bits=0x1)
    body = zip_of({"locked.zip": encrypted, "x.txt": b"BAD:found"})
    verdict = await pipeline(MarkerScanner()).verdict(stream(body), ZIP)
    assert verdict == Verdict.infected("marker:found")
    body = zip_of({"locked.zip": encrypted, "x.txt": b"fine"})
    verdict = await pipeline(MarkerScanner()).verdict(stream(body), ZIP)
    assert verdict == Verdict.failed("encrypted_archive")


async def test_a_scanner_error_propagates() -> None:
    with pytest.raises(ScanError, match="scanner down"):
        await pipeline(MarkerScanner(fail=True)).verdict(stream(b"x"), "text/plain")
