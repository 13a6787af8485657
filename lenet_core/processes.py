"""Which process trains a run, told apart from a later process that got the same pid: a run's
claim records it, and a reader asks whether that process still runs."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def process_alive(proc: dict) -> bool | None:
    """Whether the process described by this_process() still runs; None when it is on another host."""
    if not isinstance(proc, dict) or proc.get("host") != socket.gethostname():
        return None
    pid = proc.get("pid")
    if not isinstance(pid, int):
        return False
    if Path("/proc").is_dir():
        return _process_start(pid) is not None and _process_start(pid) == proc.get("start")
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
