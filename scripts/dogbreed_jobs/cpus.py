"""How many CPUs this process may use (standard library only: preprocessing workers and the
endpoint import it without torch)."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs of this process's affinity mask (taskset, a container's cpuset) where the
    platform tells, else the machine's count."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
