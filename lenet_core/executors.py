"""Where trainings run: the seam between whoever asks for runs (the app, the CLI) and the processes
that train them.

An executor is handed run folders. Everything else travels through the folder: settings, pause
and stop requests, progress and results (runs.py), so the app never talks to a trainer, and a
trainer can be a process of this machine's pool or a Ray worker on another machine.

- `LocalPool` (the default): a few worker processes of this machine that keep torch imported and
  the data sets loaded, at most `LENET_MAX_JOBS` trainings at once per device (a pair asked for
  together, e.g. exercise 1's, counts as one and trains side by side), the rest queued in
  the order they were asked for. Workers run at a lower priority than the web server.
- `RayExecutor` (`LENET_EXECUTOR=ray`): the same job on a Ray cluster (lenet_core/ray_executor.py).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time

from pathlib import Path

from .runs import (Run, fair_order, free_mb, list_runs, min_free_mb, queue as queued_runs, runs_root,
                   waiting_runs)

log = logging.getLogger(__name__)
WORKER_NICE = 10      # trainings yield the CPU to the web server: pages stay responsive
GPU_JOBS = 4          # trainings at once per GPU unless LENET_MAX_JOBS says otherwise


class Executor:
    """Trains run folders. Subclasses say where."""

    name = "executor"

    def start(self, root: str | os.PathLike | None = None) -> Executor:
        """Take up the runs under `root` still waiting in the queue (e.g. after a restart), oldest first."""
        for info in queued_runs(root):
            self.submit(Run(info.path))
        return self

    def submit(self, run: Run) -> None:
        raise NotImplementedError

    def submit_together(self, runs: list[Run]) -> None:
        """Runs to train side by side (their curves compared as they rise). Here: each in turn,
        where the executor has slots for them."""
        for run in runs:
            self.submit(run)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the trainings this executor runs (each is saved as stopped) and let its processes go."""

    @property
    def slots(self) -> int:
        """How many runs train at once."""
        return 1

    def describe(self) -> str:
        return self.name

    def health(self) -> dict:
        """What the app's health route reports; "ok" False when no run could train now."""
        return {"ok": True, "why": "", "executor": self.name}


def _devices() -> list[str]:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _worker_main(index: int, device: str, threads: int, jobs, events, shutdown, parent_pid: int, data_dir) -> None:
    """A pool worker: trains the runs it is handed, one at a time, until the pool shuts down."""
    os.nice(WORKER_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches every process: the server decides
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a worker sent SIGTERM saves its run as stopped

    def watch():
        while True:
            if os.getppid() != parent_pid:  # the server died (kill -9): its runs read as interrupted
                os._exit(0)
            if shutdown.is_set():
                stop.set()
            time.sleep(0.25)

    threading.Thread(target=watch, daemon=True, name="lenet-worker-watch").start()
    import torch

    from .fastpath import for_training
    from .model import LeNet
    from .worker import dataset, train_run

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    # Warm up what a first run would otherwise wait for (the first Start took 2.9 s to its first point,
    # later ones 1.0-1.2 s): torch's optimizer machinery, a training step of the chapter's shapes through
    # the fast paths, the recording's TensorBoard writer, the default data set.
    model = LeNet()
    net, layout = for_training(model, torch.device(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for batch in (128, 96):
        net(torch.zeros(batch, 1, 28, 28, device=device).contiguous(memory_format=layout)).sum().backward()
        optimizer.step()
    import tensorboardX  # noqa: F401
    try:
        dataset("fashion-mnist", data_dir)
    except Exception:  # no data here: the run that needs it will say so
        pass
    events.put(("ready", index, os.getpid()))
    while not stop.is_set():
        try:
            path = jobs.get(timeout=0.25)
        except queue.Empty:
            continue
        if stop.is_set():  # taken while shutting down: leave it queued for the next start
            break
        path, share = path if isinstance(path, tuple) else (path, threads)
        torch.set_num_threads(share)  # half the cores each while it trains beside its pair
        events.put(("start", index, path))
        status = train_run(path, data_dir=data_dir, stop_event=stop, executor=f"local-{os.getpid()}")
        events.put(("end", index, path, status))
        torch.set_num_threads(threads)


class LocalPool(Executor):
    """Worker processes of this machine (spawned, so CUDA works in them), `per_device` per device.

    The queue is the runs folder itself: whenever a worker is free, the pool hands it the next
    queued run on disk, in fair order (runs.fair_order), whoever queued it: this server, or a
    server sharing the folder that has since died. A run's claim keeps two trainers off one run.
    The monitor thread that does this survives any error (a full disk among them) and replaces
    workers that die."""

    name = "local"
    SCAN_S = 1.0          # how often the runs folder is looked at for queued runs while a worker is free
    SETTLE_S = 2.0        # a queued run not handed to this pool waits this long (its creator may claim it)

    def __init__(self, per_device: int | None = None, data_dir=None, devices: list[str] | None = None):
        self.devices = devices or _devices()
        default = 1 if self.devices == ["cpu"] else GPU_JOBS
        self.per_device = per_device or int(os.environ.get("LENET_MAX_JOBS") or default)
        self.data_dir = data_dir
        ctx = mp.get_context("spawn")
        self._ctx, self.events, self.shutdown_event = ctx, ctx.Queue(), ctx.Event()
        n = self.per_device * len(self.devices)
        # On the CPU the workers share the cores (unless OMP_NUM_THREADS says); a GPU worker needs few.
        self.threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (
            max(1, _cores() // n) if self.devices == ["cpu"] else 1)
        # Where a device trains one run at a time, one more worker per device trains the second run of a
        # pair asked for together (submit_together) beside the first, each with half the threads; the
        # pair counts as one job: the device's worker takes its next run once both have ended.
        self.workers = n
        self.companions = len(self.devices) if self.per_device == 1 else 0
        self.pairs: dict[str, str] = {}       # run -> the run it trains beside (both ways)
        self.beside: dict[int, int] = {}      # worker -> the companion training its pair's other run
        self.jobs = [ctx.Queue() for _ in range(n + self.companions)]  # one per worker: the pool decides
        self.procs: list = [None] * (n + self.companions)
        self.current: dict[int, str] = {}    # worker -> the run it trains
        self.assigned: dict[int, str] = {}   # worker -> the run handed to it, not started yet
        self.ready: set[int] = set()
        self.roots: set[Path] = set()
        self.submitted: dict[str, float] = {}  # runs handed to this pool (by path), when
        self.last_error = ""
        self._scanned = 0.0
        self._wake = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        for i in range(len(self.procs)):
            self.procs[i] = self._spawn(i)
        self._monitor = threading.Thread(target=self._watch, daemon=True, name="lenet-pool-monitor")
        self._monitor.start()

    @property
    def slots(self) -> int:
        return self.workers

    def describe(self) -> str:
        where = "CPU" if self.devices == ["cpu"] else f"{len(self.devices)} GPU{'s' * (len(self.devices) > 1)}"
        return f"{self.slots} worker process{'es' * (self.slots != 1)} on {where}"

    def _spawn(self, i: int):
        device = self.devices[i % len(self.devices)]
        companion = i >= self.workers
        p = self._ctx.Process(target=_worker_main, name=f"lenet-{'companion' if companion else 'worker'}-{i}",
                              daemon=True, args=(i, device, self._share() if companion else self.threads, self.jobs[i],
                                                 self.events, self.shutdown_event, os.getpid(), self.data_dir))
        p.start()
        return p

    def start(self, root: str | os.PathLike | None = None) -> LocalPool:
        """Watch `root` for queued runs: those left by a restart, or by a server sharing it that died."""
        self.roots.add(Path(root) if root is not None else runs_root())
        self._wake.set()
        return self

    def submit(self, run: Run) -> None:
        self.roots.add(run.path.parent)
        self.submitted[str(run.path)] = time.monotonic()
        self._wake.set()

    def submit_together(self, runs: list[Run]) -> None:
        """A pair starts together when the first of them is taken; more than a pair, the rest in turn."""
        if self.companions and len(runs) >= 2:
            a, b = str(runs[0].path), str(runs[1].path)
            with self._lock:
                self.pairs[a], self.pairs[b] = b, a
        for run in runs:
            self.submit(run)

    def _share(self) -> int:
        return max(1, self.threads // 2)

    def health(self) -> dict:
        """What a health check reports: workers alive and ready, runs training and waiting, free disk."""
        alive = sum(p is not None and p.is_alive() for p in self.procs)
        roots = sorted(self.roots) or [runs_root()]
        free = min(free_mb(r) for r in roots)
        waiting = sum(len(queued_runs(r)) for r in roots)
        floor = min_free_mb()
        ok = alive > 0 and bool(self.ready) and free >= floor
        why = ("" if ok else "no worker is alive" if not alive else "the workers are still starting"
               if not self.ready else f"the disk has {free:,.0f} MB free, under the {floor:,} MB a run needs")
        return {"ok": ok, "why": why, "workers": self.slots, "alive": alive, "ready": len(self.ready),
                "training": len(self.current), "queued": waiting, "free_mb": round(free), "min_free_mb": floor,
                "last_error": self.last_error}

    def _drain_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return
            kind, index = event[0], event[1]
            if kind == "ready":
                self.ready.add(index)
            elif kind == "start":
                self.assigned.pop(index, None)
                self.current[index] = event[2]
            elif kind == "end":
                self.assigned.pop(index, None)
                self.current.pop(index, None)
                self.submitted.pop(event[2], None)
                self.pairs.pop(self.pairs.pop(event[2], ""), None)

    def _watch(self) -> None:
        while not self._closing:
            try:
                with self._lock:
                    self._drain_events()
                    for i, p in enumerate(self.procs):
                        if not self._closing and p is not None and not p.is_alive():
                            self._drain_events()
                            self._worker_died(i, p.exitcode)
                            self.procs[i] = self._spawn(i)
                    self._dispatch()
            except Exception as e:  # the room's training outlives any one error: say it, and go on
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("the pool's monitor met an error; it carries on")
            self._wake.wait(0.2)
            self._wake.clear()

    def _dispatch(self) -> None:
        """Hand each free worker the next run in fair order."""
        free = [i for i in sorted(self.ready) if i not in self.current and i not in self.assigned
                and self.procs[i] is not None and self.procs[i].is_alive()]
        for i, c in list(self.beside.items()):  # a pair has ended when both its workers are free
            if i in free and c in free:
                del self.beside[i]
        idle = [i for i in free if i < self.workers and i not in self.beside]
        spare = [i for i in free if i >= self.workers and i not in self.beside.values()]
        # Runs handed to this pool and not yet taken are dispatched as soon as a worker is free; the
        # folder itself (runs of other servers, runs the disk stopped) is looked at every SCAN_S.
        taken = set(self.assigned.values()) | set(self.current.values())
        waiting_here = [p for p in self.submitted if p not in taken]
        if not idle or self._closing or (not waiting_here and time.monotonic() - self._scanned < self.SCAN_S):
            return
        for path in waiting_here:  # handed here but deleted, or taken by another server meanwhile
            if Run(path).status().get("status") != "queued":
                self.submitted.pop(path, None)
        self._scanned = time.monotonic()
        candidates, others = [], []
        for root in list(self.roots):
            if free_mb(root) < min_free_mb():
                continue  # a full disk: nothing starts until there is room again
            if not waiting_runs(root):  # the cheap look (one small file a run) finds nothing to start
                continue
            for info in list_runs(root):
                if info.status == "failed" and info.reason == "disk-full":
                    Run(info.path).requeue("Waiting to carry on: the disk has room again.")
                    continue  # a candidate from the next scan on
                if info.status != "queued":
                    others.append(info)
                elif str(info.path) not in taken and self._may_take(info):
                    candidates.append(info)
        waiting = {str(c.path) for c in candidates}
        for info in fair_order(candidates, others):
            path, other = str(info.path), self.pairs.get(str(info.path))
            if not idle:
                break
            if path not in waiting:  # taken already, beside its pair
                continue
            if other in waiting and not spare and any(c not in self.ready for c in range(self.workers, len(self.procs))):
                break  # the companion is still warming up (seconds, at start): the pair, next in line, waits for it
            i = idle.pop(0)
            waiting.discard(path)
            if other in waiting and spare:  # its pair's other run starts beside it, on a companion
                c = spare.pop(0)
                waiting.discard(other)
                self.beside[i] = c
                self.assigned[c] = other
                self.jobs[c].put((other, self._share()))
                self.assigned[i] = path
                self.jobs[i].put((path, self._share()))
            else:
                self.assigned[i] = path
                self.jobs[i].put(path)

    def _may_take(self, info) -> bool:
        """A queued run handed to this pool, or one whose queuing has settled (its creator, e.g. the
        CLI, claims it at once) and that no live process has claimed."""
        if str(info.path) in self.submitted:
            return True
        settled = time.time() - (info.updated or info.created) > self.SETTLE_S
        return settled and not Run(info.path).trainer_alive()

    def _worker_died(self, i: int, exitcode: int | None) -> None:
        """A worker that died mid-run leaves its run marked, with the reason, and is replaced."""
        self.ready.discard(i)
        self.assigned.pop(i, None)
        path = self.current.pop(i, None)
        if path is None:
            return
        how = (signal.Signals(-exitcode).name if exitcode and exitcode < 0 and -exitcode in signal.valid_signals()
               else f"exit code {exitcode}")
        killed = exitcode is not None and -exitcode in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
        Run(path).mark_lost(f"the worker training it was killed ({how})" if killed
                            else f"the worker training it crashed ({how})", reason="killed" if killed else "crashed")
        log.warning("worker %d died (%s) while training %s; replaced", i, how, path)

    def shutdown(self, timeout: float = 30.0) -> None:
        self._closing = True
        self.shutdown_event.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p is not None:
                p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p is not None and p.is_alive():
                p.kill()
                p.join(5)
        self._monitor.join(1)
