"""Where trainings run: the seam between whoever asks for runs (the app, the CLI) and the processes
that train them.

An executor is handed run folders. Everything else travels through the folder: settings, pause
and stop requests, progress and results (runs.py), so the app never talks to a trainer, and a
trainer can be a process of this machine's pool or a Ray worker on another machine.

- `LocalPool` (the default): a few worker processes of this machine that keep torch imported and
  the data sets loaded, at most `LENET_MAX_JOBS` trainings at once per device, the rest queued in
  the order they were asked for. Workers run at a lower priority than the web server. Runs asked
  for together (an exercise's pair) start together, sharing the cores, when a device takes one at a time.
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

from .runs import Run, queue as queued_runs

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


def _devices() -> list[str]:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _live(path: str) -> bool:
    try:
        return Run(path).info().live
    except Exception:  # a folder deleted or damaged meanwhile: nothing to wait for
        return False


def _worker_main(index: int, device: str, threads: int, jobs, events, shutdown, parent_pid: int, data_dir,
                 companions=None) -> None:
    """A pool worker: trains the runs it is handed, one at a time, until the pool shuts down.
    A job may be a list of runs to train together: this worker trains the first and hands the
    others to the companion workers (which take only those), the cores split between them; it
    takes its next job once they have all ended, so the device still trains one job at a time."""
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
        together = path if isinstance(path, list) else [path]
        path, others = together[0], together[1:]
        for other in others:
            companions.put(other)
        torch.set_num_threads(max(1, threads // len(together)))
        events.put(("start", index, path))
        status = train_run(path, data_dir=data_dir, stop_event=stop, executor=f"local-{os.getpid()}")
        events.put(("end", index, path, status))
        torch.set_num_threads(threads)
        while others and any(_live(p) for p in others) and not stop.is_set():
            time.sleep(0.5)


class LocalPool(Executor):
    """Worker processes of this machine (spawned, so CUDA works in them), `per_device` per device."""

    name = "local"

    def __init__(self, per_device: int | None = None, data_dir=None, devices: list[str] | None = None):
        self.devices = devices or _devices()
        default = 1 if self.devices == ["cpu"] else GPU_JOBS
        self.per_device = per_device or int(os.environ.get("LENET_MAX_JOBS") or default)
        self.data_dir = data_dir
        ctx = mp.get_context("spawn")
        self._ctx, self.jobs, self.events, self.shutdown_event = ctx, ctx.Queue(), ctx.Queue(), ctx.Event()
        n = self.per_device * len(self.devices)
        # On the CPU the workers share the cores (unless OMP_NUM_THREADS says); a GPU worker needs few.
        self.threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (
            max(1, _cores() // n) if self.devices == ["cpu"] else 1)
        # Where a device trains one run at a time, one more worker per device trains the second run of
        # a pair asked for together (submit_together), each with half the threads; otherwise idle.
        self.companion_jobs = ctx.Queue()
        self.companions = len(self.devices) if self.per_device == 1 else 0
        self.workers = n
        self.procs: list = [None] * (n + self.companions)
        self.current: dict[int, str] = {}
        self.ready: set[int] = set()
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
                              daemon=True, args=(i, device, max(1, self.threads // 2) if companion else self.threads,
                                                 self.companion_jobs if companion else self.jobs, self.events,
                                                 self.shutdown_event, os.getpid(), self.data_dir,
                                                 None if companion else self.companion_jobs))
        p.start()
        return p

    def submit(self, run: Run) -> None:
        self.jobs.put(str(run.path))

    def submit_together(self, runs: list[Run]) -> None:
        """A pair starts together, in one place in the queue; more than a pair, the rest after it."""
        if not self.companions or len(runs) < 2:
            return super().submit_together(runs)
        self.jobs.put([str(runs[0].path), str(runs[1].path)])
        for run in runs[2:]:
            self.submit(run)

    def _drain_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            kind, index = event[0], event[1]
            if kind == "ready":
                self.ready.add(index)
            elif kind == "start":
                self.current[index] = event[2]
            elif kind == "end":
                self.current.pop(index, None)

    def _watch(self) -> None:
        while not self._closing:
            with self._lock:
                self._drain_events()
                for i, p in enumerate(self.procs):
                    if not self._closing and p is not None and not p.is_alive():
                        self._drain_events()
                        self._worker_died(i, p.exitcode)
                        self.procs[i] = self._spawn(i)
            time.sleep(0.2)

    def _worker_died(self, i: int, exitcode: int | None) -> None:
        """A worker that died mid-run leaves its run marked, with the reason, and is replaced."""
        self.ready.discard(i)
        path = self.current.pop(i, None)
        if path is None:
            return
        run = Run(path)
        st = run.status()
        if st.get("status") not in ("running", "paused", "queued"):
            return
        done = st.get("epochs_done", 0)
        how = (signal.Signals(-exitcode).name if exitcode and exitcode < 0 and -exitcode in signal.valid_signals()
               else f"exit code {exitcode}")
        if exitcode is not None and -exitcode in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            run.set_status("interrupted", f"Interrupted: the worker training it was killed ({how}) during epoch "
                                          f"{done + 1}. Its last finished epoch ({done}) is kept: Resume carries it "
                                          "on from there.", reason="killed", ended=time.time())
        else:
            run.set_status("failed", f"The worker training it crashed ({how}) during epoch {done + 1}. Its last "
                                     f"finished epoch ({done}) is kept: Resume tries again from there.",
                           reason="crashed", ended=time.time())
        run.release()
        log.warning("worker %d died (%s) while training %s; replaced", i, how, path)

    def shutdown(self, timeout: float = 30.0) -> None:
        self._closing = True
        self.shutdown_event.set()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p is not None:
                p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p is not None and p.is_alive():
                p.kill()
                p.join(5)
        self._monitor.join(1)


def make_executor(kind: str | None = None, **options) -> Executor:
    """The executor named by `kind` or LENET_EXECUTOR: "local" (the default) or "ray"."""
    kind = (kind or os.environ.get("LENET_EXECUTOR") or "local").lower()
    if kind == "local":
        return LocalPool(**options)
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}: use local or ray")


