"""Lower the CPU priority of a benchmark's background processes (relays, workers).

Two ways, strongest first:
- an *idle* cgroup (`cpu.idle` = 1, what systemd's `CPUWeight=idle` sets): its processes run
  only on CPU time nothing else wants, and any other task that wakes up takes the CPU from
  them at once. This is how one runs delivery workers beside a latency-bound edge on shared
  cores. Needs a writable cgroup `cpu` controller (v1 `cpu` hierarchy, or v2 with `cpu`
  enabled at the root), i.e. root.
- nice, applied to the process's autogroup too: with Linux's autogroup scheduling (on by
  default) every session is one scheduling group and a process's own nice counts only inside
  it. A niced group still keeps its share of each scheduling period, so a waking edge can
  wait behind it for a few milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

_V1_CPU = Path("/sys/fs/cgroup/cpu")
_V2_ROOT = Path("/sys/fs/cgroup")


def _cpu_hierarchy() -> Path | None:
    if (_V1_CPU / "cpu.idle").exists():
        return _V1_CPU
    controllers = _V2_ROOT / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return _V2_ROOT
    return None


class IdleGroup:
    """A cgroup with `cpu.idle` = 1 that background processes are moved into; removed by
    `remove()` once its processes have ended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> IdleGroup | None:
        """The group, or None when this machine or user cannot make one."""
        hierarchy = _cpu_hierarchy()
        if hierarchy is None:
            return None
        path = hierarchy / name
        try:
            path.mkdir()
        except OSError:  # no permission, or the name is taken: leave whatever is there
            return None
        group = cls(path)
        try:
            (path / "cpu.idle").write_text("1")
        except OSError:
            group.remove()
            return None
        return group

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))  # every thread of the process

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass


def renice(pid: int, nice: int) -> None:
    """Nice a process and, where there is one, its autogroup (see the module docstring)."""
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        autogroup.write_text(str(nice))
    os.setpriority(os.PRIO_PROCESS, pid, nice)
