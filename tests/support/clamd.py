"""A clamd of the tests' own: Debian's `clamav-daemon` binary, started on a free TCP port and a
unix socket in a temporary directory, with a signature database the test writes (no signature
download works offline): the EICAR test file, and a one-line PHP web shell that the contract
suite sends across a chunk boundary.

Without clamd installed, a test that needs it fails in CI (scripts/services.sh installs it)
and is skipped elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.process import free_port

CLAMD = Path(os.environ.get("TOWNHALL_TEST_CLAMD", "/usr/sbin/clamd"))
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CHINA_CHOPPER = b"<?php @eval($_POST["
# clamd adds `.UNOFFICIAL` to the name of a signature from a database it did not get signed.
SIGNATURES = {
    # Body signatures (.ndb): Name:TargetType:Offset:HexSignature; target 0 is any file.
    "Eicar-Test-Signature": f"0:0:{EICAR.hex()}",  # at offset 0, as EICAR defines it
    "Townhall.PHP-China-Chopper": f"0:*:{CHINA_CHOPPER.hex()}",  # anywhere
}


@dataclass
class Clamd:
    process: subprocess.Popen[bytes]
    tcp: str  # tcp://127.0.0.1:PORT
    unix: str  # unix:///PATH
    started_in: float  # seconds from exec to the first PONG
    log: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def require_clamd() -> None:
    if CLAMD.exists():
        return
    message = f"clamd is not installed at {CLAMD}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI needs it; scripts/services.sh installs clamav-daemon)")
    pytest.skip(message)


@contextmanager
def running_clamd(directory: Path, *, stream_max_length: str = "200M") -> Iterator[Clamd]:
    """Start a clamd whose files all live in `directory`; killed on exit."""
    require_clamd()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "townhall.ndb").write_text(
        "".join(f"{name}:{body}\n" for name, body in SIGNATURES.items())
    )
    sock, port, log = directory / "clamd.sock", free_port(), directory / "clamd.log"
    config = directory / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"DatabaseDirectory {directory}",
                f"LocalSocket {sock}",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"StreamMaxLength {stream_max_length}",
                # Scan all of what it takes (by default it stops looking after 100 MiB).
                f"MaxFileSize {stream_max_length}",
                f"MaxScanSize {stream_max_length}",
                f"LogFile {log}",
                "Bytecode no",
                "SelfCheck 0",
                "",
            ]
        )
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [str(CLAMD), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clamd = Clamd(process, f"tcp://127.0.0.1:{port}", f"unix://{sock}", 0.0, log)
    try:
        deadline = started + 30
        while not _pong(sock, port):
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else "(no log)"
                pytest.fail(f"clamd did not start (exit {process.poll()}):\n{text[-2000:]}")
            time.sleep(0.02)
        clamd.started_in = time.monotonic() - started
        yield clamd
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                clamd.kill()


def _pong(sock: Path, port: int) -> bool:
    """Both sockets answer PING."""
    try:
        for family, address in ((socket.AF_UNIX, str(sock)), (socket.AF_INET, ("127.0.0.1", port))):
            with socket.socket(family) as conn:
                conn.settimeout(1)
                conn.connect(address)
                conn.sendall(b"zPING\0")
                if conn.recv(16) != b"PONG\0":
                    return False
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    """One clamd for the whole run (of this worker)."""
    with running_clamd(tmp_path_factory.mktemp("clamd")) as running:
        yield running
