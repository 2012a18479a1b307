"""The detector process's CPU and disk priority: intake answers Okta first, detection uses what is left.

Applied by the detector process to itself before it starts any thread (threads inherit both). A process
may always lower its own priority without privileges; where even that is refused (a stricter syscall
filter, another kernel) each step falls back quietly to the next weaker one and the reason is returned
for one warning in the log.
"""

from __future__ import annotations

import ctypes
import os
import platform

LOW_NICENESS = 5  # cpu_priority = "low": the detector's priority before SCHED_IDLE
IDLE_NICENESS = 19  # cpu_priority = "idle" where SCHED_IDLE is refused
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_IDLE = 3
# ioprio_set(2) has no wrapper in the standard library: its syscall number per architecture.
SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i386": 289, "i686": 289, "armv7l": 314, "ppc64le": 273,
                  "s390x": 282, "riscv64": 30}
SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "i386": 290, "i686": 290, "armv7l": 315, "ppc64le": 274,
                  "s390x": 283, "riscv64": 31}


def lower_cpu_priority(priority: str) -> str | None:
    """``idle``: SCHED_IDLE (nice 19 where refused); ``low``: nice +5; ``normal``: nothing. Returns why
    it could not be done as asked (None: done)."""
    if priority == "normal":
        return None
    problem = None
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return None
        except (OSError, AttributeError) as e:
            problem = f"SCHED_IDLE: {getattr(e, 'strerror', None) or e}; nice {IDLE_NICENESS} instead"
    # low: 5 below the daemon, whatever the daemon's own; idle's fallback: the lowest there is.
    step = max(0, IDLE_NICENESS - os.nice(0)) if priority == "idle" else LOW_NICENESS
    try:
        os.nice(step)
    except OSError as e:
        return f"{problem + '; ' if problem else ''}nice +{step}: {e.strerror or e}"
    return problem


def lower_io_priority(priority: str) -> str | None:
    """``idle``: the idle I/O class (served only when no one else waits for the disk); ``normal``:
    nothing. Returns why it could not be done (None: done)."""
    if priority != "idle":
        return None
    number = SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        return f"ioprio_set: unknown on {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) != 0:
        return f"ioprio_set: {os.strerror(ctypes.get_errno())}"
    return None


def io_priority_class(pid: int = 0) -> int | None:
    """The I/O scheduling class of a thread (0: none set, 1 realtime, 2 best effort, 3 idle); None if
    unknown here. For tests and diagnostics."""
    number = SYS_IOPRIO_GET.get(platform.machine())
    if number is None:
        return None
    value = ctypes.CDLL(None, use_errno=True).syscall(number, IOPRIO_WHO_PROCESS, pid)
    return None if value < 0 else int(value) >> IOPRIO_CLASS_SHIFT
