"""One contract for every Scanner (yara-x in process; clamd over TCP and over a unix socket, a
real clamd of the tests' own): the EICAR test file is INFECTED, clean files are CLEAN, a
signature is found wherever the stream is cut, and a scan that cannot finish is a `ScanError`,
never CLEAN. Then the scan pipeline over each: zips looked into, bombs, timeouts.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from support.clamd import CHINA_CHOPPER, EICAR, Clamd, running_clamd
from support.clamd import clamd as clamd  # the fixture
from support.process import free_port
from support.zips import MiB, nested, patched, zeros_bomb, zip_of
from townhall.uploads.adapters.clamd import ClamdScanner
from townhall.uploads.adapters.yara import YaraScanner
from townhall.uploads.archives import ArchiveLimits
from townhall.uploads.domain import ScanError, Status, Verdict
from townhall.uploads.ports import Scanner
from townhall.uploads.scanning import ScanPipeline

pytestmark = pytest.mark.timeout(30)

CHUNK = 64 * 1024
SCANNERS = ["yara", "clamd-tcp", "clamd-unix"]


def make_scanner(kind: str, request: pytest.FixtureRequest) -> Scanner:
    if kind == "yara":
        return YaraScanner()
    running: Clamd = request.getfixturevalue("clamd")
    return ClamdScanner(running.tcp if kind == "clamd-tcp" else running.unix)


@pytest.fixture(params=SCANNERS)
def scanner(request: pytest.FixtureRequest) -> Scanner:
    return make_scanner(request.param, request)


async def stream(data: bytes, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def stream_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def random_chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // CHUNK):
        yield os.urandom(CHUNK)


def png(width: int = 64, height: int = 64) -> bytes:
    def part(kind: bytes, body: bytes) -> bytes:
        checksum = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", checksum)

    rows = b"".join(b"\0" + bytes((x * 4) % 256 for x in range(width * 3)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + part(b"IHDR", header)
        + part(b"IDAT", zlib.compress(rows))
        + part(b"IEND", b"")
    )


def is_eicar(verdict: Verdict) -> bool:
    return verdict.status is Status.INFECTED and "eicar" in (verdict.detection or "").lower()


# --- the scanner contract -------------------------------------------------------------------


async def test_the_eicar_test_file_is_infected(scanner: Scanner) -> None:
    assert is_eicar(await scanner.scan(stream(EICAR)))


async def test_eicar_followed_by_whitespace_is_infected(scanner: Scanner) -> None:
    assert is_eicar(await scanner.scan(stream(EICAR + b" \t\r\n\x1a" + b" " * 50)))


@pytest.mark.parametrize(
    "body",
    [
        b"Minutes of the town hall meeting.\nPHP, eval and base64 were discussed.\n" * 1000,
        png(),
        b"",
    ],
    ids=["text", "png", "empty"],
)
async def test_clean_files_are_clean(scanner: Scanner, body: bytes) -> None:
    assert await scanner.scan(stream(body)) == Verdict.clean()


async def test_twenty_mib_of_random_bytes_are_clean(scanner: Scanner) -> None:
    assert await scanner.scan(stream_of(random_chunks(20 * MiB))) == Verdict.clean()


async def test_a_signature_cut_across_chunks_and_windows_is_found(
    scanner: Scanner, request: pytest.FixtureRequest
) -> None:
    """China Chopper's one line, starting 10 bytes before a 64 KiB chunk boundary (clamd) and a
    yara window's end (a 256 KiB window here)."""
    if isinstance(scanner, YaraScanner):
        scanner = YaraScanner(window=256 * 1024, overlap=4096)
    body = b"a" * (256 * 1024 - 10) + CHINA_CHOPPER + b"'x']);?>" + b"b" * (300 * 1024)
    verdict = await scanner.scan(stream(body))
    assert verdict.status is Status.INFECTED
    assert "china" in (verdict.detection or "").lower()


# --- yara: windows, rules, and the event loop -----------------------------------------------


async def test_yara_scans_in_bounded_memory() -> None:
    scanner = YaraScanner()  # 8 MiB windows
    tracemalloc.start()
    try:
        verdict = await scanner.scan(stream_of(random_chunks(20 * MiB)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verdict == Verdict.clean()
    assert peak < 3 * 8 * MiB, f"peak {peak / MiB:.1f} MiB"


async def test_yara_without_overlap_misses_what_straddles_windows() -> None:
    """Why windows overlap: the same file as above, cut with none, hides the shell."""
    body = b"a" * (256 * 1024 - 10) + CHINA_CHOPPER + b"'x']);?>"
    assert await YaraScanner(window=256 * 1024, overlap=0).scan(stream(body)) == Verdict.clean()
    overlapping = YaraScanner(window=256 * 1024, overlap=4096)
    assert (await overlapping.scan(stream(body))).status is Status.INFECTED


async def test_yara_eicar_is_only_the_whole_test_file() -> None:
    """EICAR's definition: at offset 0, followed by nothing but whitespace, 128 bytes at most."""
    scanner = YaraScanner()
    assert is_eicar(await scanner.scan(stream(EICAR + b" " * 60)))
    for body in (b" " + EICAR, EICAR + b"x", EICAR + b" " * 61, b"quoted: " + EICAR):
        assert await scanner.scan(stream(body)) == Verdict.clean(), body


async def test_yara_eicar_past_the_first_window_is_not_the_test_file() -> None:
    scanner = YaraScanner(window=4096, overlap=1024)
    assert await scanner.scan(stream(b" " * 10_000 + EICAR)) == Verdict.clean()


async def test_yara_finds_the_shipped_real_world_signatures() -> None:
    scanner = YaraScanner()
    pe = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x80) + bytes(0x40) + b"PE\0\0" + bytes(200)
    samples = {
        "webshells.PHP_ASP_China_Chopper": b"<?php @eval($_POST['pass']);?>",
        "webshells.PHP_Eval_Encoded_Payload": (
            b"<?php\n/* cache */\n@eval(gzinflate(base64_decode('S0lNzcjJBwA=')));\n"
        ),
        "executables.Windows_PE_Executable": pe,
    }
    for detection, body in samples.items():
        assert await scanner.scan(stream(body)) == Verdict.infected(detection)
    # What merely talks about them is not them.
    for body in (
        b"To decode, PHP has base64_decode(); never pass its result to eval().",
        b"MZ is a prefix; This program cannot be run in DOS mode.",
    ):
        assert await scanner.scan(stream(body)) == Verdict.clean(), body


async def test_yara_rules_that_do_not_compile_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match=r"no \*\.yar"):
        YaraScanner(tmp_path)
    (tmp_path / "broken.yar").write_text("rule broken { condition: no_such_thing }")
    with pytest.raises(ScanError, match=r"broken\.yar"):
        YaraScanner(tmp_path)


async def test_yara_rules_directory_is_replaceable(tmp_path: Path) -> None:
    (tmp_path / "local.yar").write_text(
        'rule Secret_Marker { strings: $a = "TOWNHALL-SECRET" condition: $a }'
    )
    scanner = YaraScanner(tmp_path)
    assert await scanner.scan(stream(b"xx TOWNHALL-SECRET")) == Verdict.infected(
        "local.Secret_Marker"
    )
    assert await scanner.scan(stream(EICAR)) == Verdict.clean()  # the shipped rules are gone


async def test_yara_does_not_block_the_event_loop() -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        await YaraScanner().scan(stream_of([bytes(4 * MiB)] * 10))
    finally:
        ticking.cancel()
    assert gaps and max(gaps) < 0.1, f"the loop stalled {max(gaps):.3f}s"


# --- clamd: when it cannot answer ----------------------------------------------------------


async def test_clamd_answers_ping(clamd: Clamd) -> None:
    await ClamdScanner(clamd.tcp).ping()
    await ClamdScanner(clamd.unix).ping()


async def test_clamd_down_is_a_scan_error(tmp_path: Path) -> None:
    for address in (f"tcp://127.0.0.1:{free_port()}", f"unix://{tmp_path}/none.sock"):
        scanner = ClamdScanner(address)
        with pytest.raises(ScanError, match="unreachable"):
            await scanner.scan(stream(EICAR))
        with pytest.raises(ScanError):
            await scanner.ping()


async def test_clamd_killed_mid_scan_is_a_scan_error(tmp_path: Path) -> None:
    with running_clamd(tmp_path / "clamd") as own:

        async def body() -> AsyncIterator[bytes]:
            for sent in range(200):
                if sent == 20:
                    own.kill()
                    await asyncio.sleep(0.05)
                yield os.urandom(CHUNK)

        with pytest.raises(ScanError):
            await ClamdScanner(own.tcp).scan(body())


async def test_clamd_refusing_a_stream_too_long_is_a_scan_error(tmp_path: Path) -> None:
    with running_clamd(tmp_path / "clamd", stream_max_length="1M") as own:
        for address in (own.tcp, own.unix):
            with pytest.raises(ScanError, match="size limit exceeded"):
                await ClamdScanner(address).scan(stream_of(random_chunks(4 * MiB)))


def test_a_clamd_address_names_tcp_or_unix() -> None:
    for address in ("tcp://127.0.0.1", "http://127.0.0.1:3310", "unix://", "127.0.0.1:3310"):
        with pytest.raises(ValueError):
            ClamdScanner(address)


# --- the scan pipeline over each scanner ----------------------------------------------------


def pipeline(scanner: Scanner, timeout: float = 20, **limits: int) -> ScanPipeline:
    return ScanPipeline(scanner, ArchiveLimits(**limits), timeout=timeout)


async def test_a_zip_holding_eicar_is_infected(scanner: Scanner) -> None:
    archive = zip_of({"readme.txt": b"hello", "eicar.com": EICAR})
    assert is_eicar(await pipeline(scanner).verdict(stream(archive), "application/zip"))


async def test_eicar_nested_within_the_depth_limit_is_infected(scanner: Scanner) -> None:
    archive = nested("eicar.com", EICAR, levels=3)
    verdict = await pipeline(scanner, max_depth=3).verdict(stream(archive), "application/zip")
    assert is_eicar(verdict)


async def test_a_zip_of_clean_files_is_clean(scanner: Scanner) -> None:
    archive = zip_of({"a.txt": b"hello", "b.png": png(), "inner.zip": zip_of({"c.txt": b"c"})})
    assert await pipeline(scanner).verdict(stream(archive), "application/zip") == Verdict.clean()


async def test_a_ratio_bomb_is_infected_archive_limits(scanner: Scanner) -> None:
    verdict = await pipeline(scanner).verdict(stream(zeros_bomb()), "application/zip")
    assert verdict == Verdict.infected("archive_limits")


async def test_a_depth_bomb_is_infected_archive_limits(scanner: Scanner) -> None:
    archive = nested("a.txt", b"a", levels=4)
    verdict = await pipeline(scanner, max_depth=3).verdict(stream(archive), "application/zip")
    assert verdict == Verdict.infected("archive_limits")


async def test_an_encrypted_zip_fails_as_encrypted(scanner: Scanner) -> None:
    archive = patched(zip_of({"secret.txt": b"s"}), flag_bits=0x1)
    verdict = await pipeline(scanner).verdict(stream(archive), "application/zip")
    assert verdict == Verdict.failed("encrypted_archive")


async def test_a_zip_is_only_looked_into_when_it_is_one(scanner: Scanner) -> None:
    """A corrupt zip is opaque bytes: the whole-file verdict stands."""
    body = b"PK\x03\x04" + b"\0" * 4096
    assert await pipeline(scanner).verdict(stream(body), "application/zip") == Verdict.clean()


async def test_a_scan_past_its_timeout_is_a_scan_error(scanner: Scanner) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield b"a" * CHUNK
        await asyncio.sleep(30)
        yield b"never"

    started = time.monotonic()
    with pytest.raises(ScanError, match="timeout"):
        await pipeline(scanner, timeout=0.3).verdict(stalled(), "text/plain")
    assert time.monotonic() - started < 2
