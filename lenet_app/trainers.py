"""This server process's executor: the pool of worker processes (or Ray) that trains its runs,
started on first use (by the server's start-up, or by the first page that needs it when pages run
without the server, under AppTest) and shut down with the process."""
from __future__ import annotations

import atexit
import os
import threading

from lenet_core.executors import Executor, LocalPool
from lenet_core.runs import runs_root

_executor: Executor | None = None
_lock = threading.Lock()


def make_executor(kind: str | None = None, **options) -> Executor:
    """The executor named by `kind` or LENET_EXECUTOR: "local" (the default) or "ray"."""
    kind = (kind or os.environ.get("LENET_EXECUTOR") or "local").lower()
    if kind == "local":
        return LocalPool(**options)
    if kind == "ray":
        from lenet_core.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}: use local or ray")


def executor() -> Executor:
    """This process's executor (LENET_EXECUTOR: the local pool by default), started on first use."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = make_executor().start(runs_root())
            atexit.register(stop_executor)
        return _executor


def stop_executor() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown()
            _executor = None
