"""Run `townhall` as a real process, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def townhall_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOWNHALL_")}
    env.update({f"TOWNHALL_{k.upper()}": v for k, v in values.items()})
    return env


STREAM_LIMITS = {
    "rate_limits": "default=1000000/minute;auth=1000/minute",
    "rate_limit_ip": "1000000/minute",
}


def installation_with_admin(password: str, **values: str) -> dict[str, str]:
    """The environment of a migrated installation whose administrator `boss` exists.

    Rate limits are out of the way of a test's stream of requests and only warnings are
    logged; `values` (settings without their TOWNHALL_ prefix) override either."""
    env = townhall_env(**{"admins": "boss", "log_level": "warning", **STREAM_LIMITS, **values})
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    made = run_cli("users", "create-admin", "boss", "--password", password, env=env)
    assert made.returncode == 0, made.stderr
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "townhall", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_townhall(*args: str, env: dict[str, str], log: IO[str]) -> subprocess.Popen:
    """`townhall ARGS...` as a background process, its output into `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "townhall", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def stop_all(processes: Iterable[subprocess.Popen | None], timeout: float = 20) -> None:
    """SIGTERM every process still running (they drain at once, side by side), wait for each,
    and kill one that outlasts `timeout`."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serving(env: dict[str, str], *args: str, log: Path, timeout: float = 60) -> Iterator[str]:
    """Start `townhall serve`, wait until /healthz answers, yield its base URL, then SIGTERM."""
    port = free_port()
    env = {**env, "TOWNHALL_PORT": str(port), "TOWNHALL_HOST": "127.0.0.1"}
    with open(log, "w") as out:
        process = start_townhall("serve", *args, env=env, log=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        stop_all([process], timeout=15)
