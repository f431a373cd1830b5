"""Where a benchmark's processes spend their CPU: py-spy (from the bench lock) sampling each of
them for a phase, and a short report per process (by layer, Townhall functions inclusive, the
top functions by own time). Used by `bench/orders.py --profile`.

py-spy samples on-CPU stacks only (idle threads are skipped), so shares are of CPU time. Two
blind spots: uvloop's loop is C, so its own work (socket I/O, scheduling) shows as its
caller's frame; SQLAlchemy's async calls run on greenlets, whose samples do not carry the
Townhall frames that called them (the "by layer" split counts them; the inclusive list misses
them).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Spies:
    """py-spy sampling every process of the run (CPU only: idle threads are not sampled),
    from creation to `stop()`; `report()` prints where each process's samples fall."""

    RATE = 100  # samples per second

    def __init__(self, procs: Any, label: str) -> None:
        """Attach to every process in `procs.running` (a name -> Popen map); outputs go to
        `procs.logs`."""
        self.outputs: dict[str, Path] = {}
        self.spies: list[subprocess.Popen[bytes]] = []
        spy = str(Path(sys.executable).with_name("py-spy"))
        for name, proc in procs.running.items():
            output = procs.logs / f"{name}-{label}.spy"
            log = open(procs.logs / f"{name}-{label}.spy.log", "wb")
            self.spies.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--rate",
                        str(self.RATE),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--output",
                        str(output),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            self.outputs[name] = output
        time.sleep(0.5)  # attached before the phase starts

    def stop(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on the way out
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()

    def report(self, title: str) -> None:
        samples = {name: read_spy(path) for name, path in self.outputs.items() if path.exists()}
        total = sum(sum(stacks.values()) for stacks in samples.values())
        print(f"\nWhere the CPU goes, {title}: py-spy, {self.RATE} samples/s of CPU time")
        if not total:
            print("  no samples (py-spy could not attach?); see the *.spy.log files")
            return
        for name, stacks in samples.items():
            count = sum(stacks.values())
            if not count:
                continue
            print(f"\n{name}: {count / self.RATE:.1f} CPU s sampled, {count / total:.0%} of all")
            shares = ", ".join(
                f"{layer} {share:.0%}" for layer, share in layer_shares(stacks).items()
            )
            print(f"  by layer (innermost frame): {shares}")
            print("  inclusive, Townhall functions (share of this process's samples):")
            for function, share in inclusive(stacks, "townhall/", 12):
                print(f"    {share:5.0%}  {function}")
            print("  own time, top functions:")
            for function, share in own(stacks, 8):
                print(f"    {share:5.0%}  {function}")


LAYERS = (
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("aio_pika/", "AMQP client"),
    ("aiormq/", "AMQP client"),
    ("pamqp/", "AMQP client"),
    ("pydantic", "pydantic"),
    ("fastapi/", "HTTP stack"),
    ("starlette/", "HTTP stack"),
    ("uvicorn/", "HTTP stack"),
    ("json/", "json"),
    ("orjson", "json"),
    ("asyncio/runners.py", "event loop (uvloop, native)"),
    ("asyncio/", "asyncio"),
    ("uvloop", "asyncio"),
    ("townhall/", "Townhall"),
)


def outer(frame: str) -> bool:
    """The command's own frames, under which every sample of the process falls."""
    return "townhall/cli.py:" in frame or "townhall/__main__.py:" in frame


def read_spy(path: Path) -> dict[tuple[str, ...], int]:
    """py-spy's raw (collapsed) output: one `frame;frame;... count` line per stack."""
    stacks: dict[tuple[str, ...], int] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = tuple(stack.split(";"))
            stacks[frames] = stacks.get(frames, 0) + int(count)
    return stacks


def layer_of(frame: str) -> str | None:
    return next((layer for marker, layer in LAYERS if marker in frame), None)


def layer_shares(stacks: dict[tuple[str, ...], int]) -> dict[str, float]:
    total = sum(stacks.values())
    counts: dict[str, int] = {}
    for frames, count in stacks.items():
        layer = next((x for x in map(layer_of, reversed(frames)) if x is not None), "other")
        counts[layer] = counts.get(layer, 0) + count
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def short(frame: str) -> str:
    """`handle (/work/.../src/townhall/orders/service.py:208)` -> `handle (orders/service.py)`."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if function == "Runner.run" and path.endswith("asyncio/runners.py"):
        # uvloop's loop is C: its own work (socket I/O, callbacks) shows as its caller's.
        return "the event loop itself (uvloop: socket I/O, scheduling)"
    for marker in ("townhall/", "site-packages/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{function} ({path})"


def inclusive(stacks: dict[tuple[str, ...], int], marker: str, top: int) -> list[tuple[str, float]]:
    total, counts = sum(stacks.values()), {}
    for frames, count in stacks.items():
        for function in {short(f) for f in frames if marker in f and not outer(f)}:
            counts[function] = counts.get(function, 0) + count
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [(f, c / total) for f, c in ranked][:top]


def own(stacks: dict[tuple[str, ...], int], top: int) -> list[tuple[str, float]]:
    total, counts = sum(stacks.values()), {}
    for frames, count in stacks.items():
        leaf = short(frames[-1])
        counts[leaf] = counts.get(leaf, 0) + count
    return [(f, c / total) for f, c in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]
