"""Training on a Ray cluster: the same job as the local pool's (worker.train_run on a run folder),
run as a Ray task. The run folders must be at the same path on every node (a shared filesystem:
NFS or the like), since the task writes the folder as it trains and the app reads it.

    LENET_EXECUTOR=ray            use this executor in the app (the CLI: train --executor ray)
    LENET_RAY_ADDRESS             unset: start a Ray on this machine; "auto": join the cluster this
                                  machine is part of; "ray://host:10001": a remote one (needs ray[client])
    LENET_RAY_GPU_SHARE           the share of a GPU each run asks for where the cluster has GPUs
                                  (default 0.1: about ten runs per GPU); shares are Ray's accounting,
                                  not a memory cap
    LENET_RAY_CPUS                CPUs each run asks for (default 1; on a GPU cluster, with the share)

Ray retries a task whose worker died: that would train a run twice into its folder, so retries
are off; a run whose worker died is marked interrupted, and Resume carries it on."""
from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from .executors import Executor
from .runs import Run

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[1]
PASSED_ON = ("LENET_DATA_DIR", "LENET_CACHE_DIR", "LENET_OFFLINE")


def _train_on_ray(run_dir: str, data_dir, threads: int) -> str:
    import torch

    from .worker import train_run

    torch.set_num_threads(threads)  # a reused Ray worker keeps the thread count of its first task
    return train_run(run_dir, data_dir=data_dir, executor=f"ray-{socket.gethostname()}-{os.getpid()}")


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, gpu_share: float | None = None, cpus: float | None = None,
                 data_dir=None, local_cpus: int | None = None):
        import ray

        self.ray = ray
        address = address or os.environ.get("LENET_RAY_ADDRESS") or None
        self.gpu_share = float(gpu_share or os.environ.get("LENET_RAY_GPU_SHARE") or 0.1)
        self.cpus = float(cpus or os.environ.get("LENET_RAY_CPUS") or 1)
        self.data_dir = str(data_dir) if data_dir else None
        self.address = address or "a Ray started on this machine"
        self._started_here = False
        if not ray.is_initialized():
            env = {"PYTHONPATH": str(PROJECT), **{k: os.environ[k] for k in PASSED_ON if os.environ.get(k)}}
            options = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                           runtime_env={"env_vars": env})
            if address is None:  # a small Ray of our own: this machine's CPUs, a small object store
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                options.update(num_cpus=local_cpus or os.cpu_count() or 1, object_store_memory=80 << 20,
                               _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: a socket path limit
            main_thread = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGTERM) if main_thread else None
            ray.init(address=address, **options)
            if main_thread:  # ray.init takes SIGTERM over (sys.exit); the caller's handler stays in charge
                signal.signal(signal.SIGTERM, previous)
            self._started_here = True
        self._task = ray.remote(max_retries=0, retry_exceptions=False)(_train_on_ray)
        self._refs: dict = {}
        self._lock = threading.Lock()
        self._closing = False
        self._monitor = threading.Thread(target=self._watch, daemon=True, name="lenet-ray-monitor")
        self._monitor.start()

    @property
    def gpus(self) -> float:
        return self.ray.cluster_resources().get("GPU", 0)

    @property
    def slots(self) -> int:
        resources = self.ray.cluster_resources()
        if self.gpus:
            return int(self.gpus / self.gpu_share)
        return max(1, int(resources.get("CPU", 1) / self.cpus))

    def describe(self) -> str:
        where = f"{self.gpus:g} GPU{'s' * (self.gpus != 1)}" if self.gpus else \
            f"{self.ray.cluster_resources().get('CPU', 0):g} CPUs"
        return f"Ray ({where}, up to {self.slots} runs at once)"

    def submit(self, run: Run) -> None:
        # A GPU share where the cluster has GPUs; asking for one where it has none would wait forever.
        options = {"num_cpus": self.cpus, **({"num_gpus": self.gpu_share} if self.gpus else {})}
        ref = self._task.options(**options).remote(str(run.path.resolve()), self.data_dir, max(1, int(self.cpus)))
        with self._lock:
            self._refs[ref] = run.path

    def _watch(self) -> None:
        ray = self.ray
        while not self._closing:
            with self._lock:
                refs = list(self._refs)
            if not refs:
                time.sleep(0.5)
                continue
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0.5)
            for ref in done:
                with self._lock:
                    path = self._refs.pop(ref, None)
                try:
                    ray.get(ref)
                except ray.exceptions.WorkerCrashedError:
                    Run(path).mark_lost("the Ray worker training it died")
                except ray.exceptions.RayTaskError as e:
                    Run(path).mark_lost(f"it failed on Ray: {e.cause!r}"[:300], status="failed", reason="crashed")
                except ray.exceptions.RayError as e:
                    Run(path).mark_lost(f"Ray lost it ({type(e).__name__})")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop what this executor still trains (each run saves itself as stopped), then leave Ray."""
        with self._lock:
            paths = [p for p in self._refs.values() if Run(p).status().get("status") in ("running", "paused")]
        for path in paths:  # queued ones stay queued: the next start takes them up again
            Run(path).request(stop=True, by="shutdown")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(Run(p).info().live for p in paths):
            time.sleep(0.2)
        self._closing = True
        self._monitor.join(5)  # it must not call Ray after shutdown: Ray ends the process if it does
        if self._started_here:
            self.ray.shutdown()
