"""Classroom load: N students drawing on the Draw page of ONE server while M trainings run.

Starts `streamlit run app.py` on loopback (real data, temporary runs and cache folders) and, for
each N in --sessions, runs N protocol clients at once (benchmarks/st_client.py: Streamlit's own
websocket protocol, no browser; in a room the browsers run on the students' laptops). Each
student opens /draw, then draws --strokes strokes, one every 1-2 s (jittered), digit after digit
(a few strokes each, jittered shapes, Clear between digits). Meanwhile M trainings run
(`python -m lenet_core train`, nice 10; see start_trainings).

Each student's canvas speaks as lenet_app/draw_canvas.py's does in a browser that runs the model:
nothing while the pen moves (the prediction is made in the browser), one message per finished
stroke (the 28x28 image), an empty drawing for Clear. Per N it prints the latency from a stroke's
message being sent to the server's analysis of it arriving (p50/p95; "prediction" below),
the failures (no prediction within --timeout s, errors, disconnects), the trainings' samples/s
against one training alone before the load, and the server's RSS and CPU. Then "memory flat":
--memory-sessions sessions opened, drawn on once and closed. Then a Chromium check: real
browsers drawing while --browser-sessions protocol clients load the server, to show the two
kinds of client see comparable latencies. The last line is
`canvas_p95_ms X sessions N trainings M` for the largest N.

    LENET_DATA_DIR=../shared/data python benchmarks/classroom_load.py [--sessions 1,10,20,30,40]
        [--trainings 1] [--strokes 10] [--server-env STREAMLIT_RUNNER_POST_SCRIPT_GC=true] [--quick]
        [--compare-env STREAMLIT_RUNNER_POST_SCRIPT_GC=true]   # A/B against a second server
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from browser import AppServer, start_app  # noqa: E402
from draw_page import DIGITS, Answer, DrawTab, jittered  # noqa: E402
from st_client import Request, Session, live_image  # noqa: E402

CLEAR = "clear"
VERBOSE = False
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] if s else float("nan")


def default_data_dir() -> str | None:
    """LENET_DATA_DIR, else ../shared/data next to the project (or next to the main checkout,
    for a worktree under wt/)."""
    if os.environ.get("LENET_DATA_DIR"):
        return os.environ["LENET_DATA_DIR"]
    for candidate in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
        if candidate.is_dir():
            return str(candidate)
    return None


# -- the server process, from /proc -----------------------------------------------------

def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def own_cpu_s(pid: int) -> float:
    """CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    except OSError:
        return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants."""
    return sum(own_cpu_s(p) for p in process_tree(pid))


def machine_busy_s() -> float:
    """CPU seconds all processes of this machine have used (user, nice, system, irq, steal)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(f[i]) for i in (0, 1, 2, 5, 6, 7)) / CLK_TCK


class CpuMeter:
    """Who used the CPU over a stretch of time: the server, the trainings, the protocol clients
    (this process), the browsers (this process's other children) and everything else on the machine
    (other people's work on a shared machine; when it is large, the numbers are disturbed).
    poll() now and then keeps the time of processes that end before the stretch does."""

    def __init__(self, server_pid: int, training_pids: list[int]):
        self.server_pid, self.training_pids = server_pid, set(training_pids)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.t = time.perf_counter()
        self.machine0 = machine_busy_s()
        self.poll(first=True)

    def poll(self, first: bool = False) -> None:
        server = set(process_tree(self.server_pid))
        for pid in process_tree(os.getpid()):
            cpu = own_cpu_s(pid)
            if first:
                self.first[pid] = cpu
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))
            self.group.setdefault(pid, "server" if pid in server else "trainings" if pid in self.training_pids
                                  else "clients" if pid == os.getpid() else "browsers")

    def cores(self) -> dict[str, float]:
        self.poll()
        seconds = max(1e-6, time.perf_counter() - self.t)
        used = dict.fromkeys(["server", "trainings", "clients", "browsers"], 0.0)
        for pid, cpu in self.last.items():
            used[self.group[pid]] += (cpu - self.first.get(pid, 0.0)) / seconds
        used["other processes"] = (machine_busy_s() - self.machine0) / seconds - sum(used.values())
        return used


# -- trainings ---------------------------------------------------------------------------

EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\s.*?([\d.]+) samples/s\s+([\d.]+)s")


@dataclass
class Epoch:
    end: float        # perf_counter when its line was printed
    rate: float       # samples/s
    seconds: float


class Trainings:
    """Trainings running beside the server; each one's epochs as they are printed."""

    def __init__(self, procs: list[subprocess.Popen], logs: list[Path]):
        self.procs, self.logs = procs, logs
        self.epochs: list[list[Epoch]] = [[] for _ in procs]
        self._threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(len(procs))]
        for t in self._threads:
            t.start()

    def _read(self, i: int) -> None:
        for line in self.procs[i].stdout:
            if m := EPOCH_LINE.match(line):
                self.epochs[i].append(Epoch(time.perf_counter(), float(m.group(2)), float(m.group(3))))

    def wait_epochs(self, count: int, timeout: float) -> bool:
        """Until every training has printed `count` epochs (more than before this call)."""
        start = [len(e) for e in self.epochs]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(e) - s >= count for e, s in zip(self.epochs, start)):
                return True
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a training exited early; see {self.logs}")
            time.sleep(0.2)
        return False

    def rates(self, t0: float, t1: float) -> list[float | None]:
        """Each training's samples/s between t0 and t1: its epochs' rates, weighted by how much of
        each epoch falls in the window (None when less than half the window is covered)."""
        out = []
        for epochs in self.epochs:
            weights = [(e.rate, max(0.0, min(e.end, t1) - max(e.end - e.seconds, t0))) for e in epochs]
            covered = sum(w for _, w in weights)
            out.append(sum(r * w for r, w in weights) / covered if covered >= 0.5 * (t1 - t0) else None)
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # the CLI stops after the step (then evaluates and saves)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def start_trainings(server: AppServer, m: int, work: Path, data_dir: str, tag: str = "load",
                    threads: int | None = None) -> Trainings:
    """Start m trainings that compete with `server` for the CPU, as a class's trainings would.

    For now each is a CLI training at lower priority (nice 10), 200 epochs of the chapter's
    classic LeNet on Fashion-MNIST, stopped by Trainings.stop(). When the app has its own training
    pool, this is the one place to change: queue m runs in the app's store instead (`server` is
    passed for that), and fill Trainings.epochs from their progress. `threads`: torch's threads per
    training (OMP_NUM_THREADS; default torch's own, one per core)."""
    procs, logs = [], []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for i in range(m):
        log = work / f"training-{tag}-{i}.log"
        cmd = ["nice", "-n", "10", sys.executable, "-m", "lenet_core", "train", "--preset", "classic",
               "--epochs", "200", "--out", str(work / "runs" / f"{tag}-{i}"), "--data-dir", data_dir]
        with open(log, "wb") as err:  # (the child keeps its own copy of the handle)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env))
        logs.append(log)
    return Trainings(procs, logs)


# -- students ----------------------------------------------------------------------------

@dataclass
class StrokeRecord:
    sent: float            # when the student lifted the pen; the request leaves then, or once the
    request: Request       # previous request's run has started (see st_client)
    answer: Answer | None = None
    finished: float | None = None
    server_ms: int | None = None

    @property
    def latency_ms(self) -> float | None:
        return None if self.answer is None else (self.answer.t - self.sent) * 1000


@dataclass
class Student:
    plan: list             # drawings (canvas values) and CLEARs
    page_load_s: float | None = None
    strokes: list[StrokeRecord] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)
    error: str | None = None
    session_errors: list[str] = field(default_factory=list)
    disconnected: str | None = None
    bytes_in: int = 0
    media: tuple[int, int] = (0, 0)  # images fetched, images gone before they were fetched (404)


def make_plan(rng: random.Random, strokes: int) -> list:
    """Digits drawn stroke by stroke (each drawing is the canvas so far), Clear between digits."""
    plan, left = [], strokes
    while left > 0:
        digit = jittered(DIGITS[rng.choice(sorted(DIGITS))], rng)
        if plan:
            plan.append(CLEAR)
        for k in range(1, min(len(digit), left) + 1):
            plan.append(live_image(digit[:k]))
        left -= min(len(digit), left)
    return plan


async def student(url: str, st: Student, rng: random.Random, opts) -> None:
    s = Session(url, timeout=opts.timeout, name=str(id(st)))
    tab = DrawTab(s)
    try:
        await asyncio.sleep(rng.uniform(0, opts.ramp))  # the class arrives over a few seconds
        t0 = time.perf_counter()
        await s.connect()
        await tab.open()
        st.page_load_s = time.perf_counter() - t0
        last: StrokeRecord | None = None
        for action in st.plan:
            await asyncio.sleep(rng.uniform(*opts.interval))
            if action == CLEAR:
                if last is not None:  # look at the prediction before clearing (bounded)
                    await resolve(tab, last, opts.timeout, wait=True)
                t = time.perf_counter()
                await tab.clear(opts.timeout)
                st.clears_ms.append((time.perf_counter() - t) * 1000)
            else:
                t = time.perf_counter()
                last = StrokeRecord(t, await tab.send_drawing(action))
                st.strokes.append(last)
        for rec in st.strokes:
            await resolve(tab, rec, opts.timeout, wait=True)
    except Exception as e:
        st.error = f"{type(e).__name__}: {e}"
    finally:
        for rec in st.strokes:  # what arrived, also after an error
            await resolve(tab, rec, opts.timeout, wait=False)
        st.session_errors, st.bytes_in = list(s.errors), s.bytes_in
        st.media = (s.media_fetched, s.media_missed)
        st.disconnected = s.closed
        await s.close()


async def resolve(tab: DrawTab, rec: StrokeRecord, timeout: float, wait: bool) -> None:
    """Fill in the stroke's answer (the prediction's arrival) and its run's end, within timeout."""
    if rec.answer is None:
        left = rec.sent + timeout - time.perf_counter()
        try:
            rec.answer = await tab.wait_answer(rec.request, max(0.0, left)) if wait and left > 0 else tab.answer(rec.request)
        except Exception:
            rec.answer = None
        if rec.answer is not None and rec.answer.t - rec.sent > timeout:
            rec.answer = None  # too late counts as no answer
    if rec.finished is None and (run := tab.s.finished_run(rec.request)) is not None:
        rec.finished, rec.server_ms = run.finished, tab.server_ms(run)


async def lag_monitor(samples: list[float], stop: asyncio.Event, meter: CpuMeter, every: float = 0.05) -> None:
    """How late the client's own event loop wakes up: if this grows, the clients are the bottleneck.
    Polls the CPU meter twice a second on the way (in a thread: it reads /proc)."""
    polled = time.perf_counter()
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(every)
        samples.append(time.perf_counter() - t - every)
        if t - polled > 0.5:
            polled = t
            await asyncio.to_thread(meter.poll)


@dataclass
class PhaseResult:
    n: int
    students: list[Student]
    t0: float
    t1: float
    cores: dict[str, float]   # CpuMeter.cores() over the phase
    lag: list[float]
    rss_before: float
    rss_after: float

    @property
    def strokes(self) -> list[StrokeRecord]:
        return [r for st in self.students for r in st.strokes]

    def latencies(self) -> list[float]:
        return [r.latency_ms for r in self.strokes if r.latency_ms is not None]

    def failures(self) -> dict[str, int]:
        return {"no answer": sum(r.answer is None for r in self.strokes),
                "errors": sum(bool(st.error or st.session_errors) for st in self.students),
                "disconnects": sum(st.disconnected not in (None, "closed by client") for st in self.students),
                "not started": sum(st.page_load_s is None for st in self.students)}


async def classroom(url: str, server_pid: int, n: int, opts, seed: int) -> PhaseResult:
    rng = random.Random(seed)
    students = [Student(make_plan(random.Random(rng.random()), opts.strokes)) for _ in range(n)]
    lag, stop = [], asyncio.Event()
    rss_before, t0 = rss_mb(server_pid), time.perf_counter()
    meter = CpuMeter(server_pid, getattr(opts, "training_pids", []))
    monitor = asyncio.create_task(lag_monitor(lag, stop, meter))
    bound = opts.ramp + 30 + opts.timeout * 2 + max(len(st.plan) for st in students) * (opts.interval[1] + 2)
    tasks = [asyncio.create_task(student(url, st, random.Random(rng.random()), opts)) for st in students]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    stop.set()
    await monitor
    t1, cores = time.perf_counter(), meter.cores()
    await asyncio.sleep(1.0)  # the server lets go of what the closed sessions' last runs made
    return PhaseResult(n, students, t0, t1, cores, lag, rss_before, rss_mb(server_pid))


async def memory_flat(url: str, server_pid: int, count: int, opts) -> tuple[float, float, int]:
    """Open, draw on once and close `count` sessions (5 at a time); RSS before and after."""
    before, failed = rss_mb(server_pid), 0
    sem = asyncio.Semaphore(5)
    drawing = live_image(DIGITS["7"])

    async def one(i):
        nonlocal failed
        async with sem:
            try:
                async with Session(url, timeout=opts.timeout, name=f"m{i}") as s:
                    tab = DrawTab(s)
                    await tab.open()
                    request = await tab.send_drawing(drawing)
                    await tab.wait_answer(request)
                    await s.wait_finished(request)
            except Exception:
                failed += 1

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 60 + count * opts.timeout / 5)
    await asyncio.sleep(3.0)
    return before, rss_mb(server_pid), failed


# -- real browsers beside the protocol clients ------------------------------------------------

# benchmarks/canvas_latency.py's websocket hooks, plus the moment the message carrying the awaited
# prediction arrives (before the browser renders it): the browser's counterpart of what the protocol
# clients time.
WS_HOOKS_PREDICTION = """(() => {
  const Native = window.WebSocket;
  const text = new TextDecoder('utf-8', {fatal: false});
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', (ev) => {
      if (window.__sent == null || window.__predMsg != null || !(ev.data instanceof ArrayBuffer)) return;
      const m = text.decode(ev.data).match(/class="draw-done" data-update="(\\d+)"/);
      if (m && +m[1] >= window.__target) window.__predMsg = performance.now();
    });
    const send = ws.send.bind(ws);
    ws.send = (data) => { if (window.__up != null && window.__sent == null) window.__sent = performance.now();
                          return send(data); };
    return ws;
  };
  Object.assign(window.WebSocket, Native);
  window.WebSocket.prototype = Native.prototype;
})();"""


def network_latency_ms(frames: list, target: int) -> float:
    """From the first frame sent (the drawing) to the first received frame holding the prediction
    numbered `target` or later, in DevTools timestamps (seconds); NaN when either is missing."""
    sent = next((t for kind, t, _ in frames if kind == "sent"), None)
    for kind, t, payload in frames:
        if kind == "recv" and sent is not None and t >= sent:
            m = re.search(rb'class="draw-done" data-update="(\d+)"', base64.b64decode(payload))
            if m and int(m.group(1)) >= target:
                return (t - sent) * 1000
    return float("nan")


def browser_strokes(url: str, strokes: int, seed: int, ready: threading.Event, out: list, errors: list) -> None:
    """One Chromium drawing on /draw: per stroke, in ms, mouse-up to prediction shown, drawing sent to
    prediction shown, and drawing sent to the prediction's message received; timed inside the page
    as benchmarks/canvas_latency.py does."""
    try:
        from canvas_latency import INSTALL, SHAPES
        from playwright.sync_api import sync_playwright

        from browser import CANVAS, canvas_box, launch_chromium, stroke, wait_for_app

        def current_update(page) -> int:
            return int(page.locator(".draw-done").get_attribute("data-update"))

        rng = random.Random(seed)
        with sync_playwright() as p:
            chromium = launch_chromium(p)
            try:
                page = chromium.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.add_init_script(WS_HOOKS_PREDICTION)
                # The websocket's frames as Chromium's network stack saw them (DevTools protocol),
                # with its timestamps: free of the page's main-thread delays.
                frames: list = []
                cdp = page.context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.on("Network.webSocketFrameSent", lambda ev: frames.append(("sent", ev["timestamp"], "")))
                cdp.on("Network.webSocketFrameReceived",
                       lambda ev: frames.append(("recv", ev["timestamp"], ev["response"]["payloadData"])))
                page.goto(f"{url}/draw")
                page.wait_for_selector(CANVAS)
                wait_for_app(page)
                page.evaluate(INSTALL)
                ready.set()
                for i in range(strokes):
                    time.sleep(rng.uniform(1.0, 2.0))
                    if i and i % 3 == 0:
                        page.locator(".ld-clear").click()
                        wait_for_app(page)
                    box = canvas_box(page)
                    target = current_update(page) + 1
                    page.evaluate("n => { window.__target = n; for (const k of ['__seen', '__up', '__sent', '__recv',"
                                  " '__first', '__pred', '__predMsg']) window[k] = null; }", target)
                    mark = len(frames)
                    stroke(page, SHAPES[i % len(SHAPES)], box)
                    try:  # the analysis painted: the page's last element shows the stroke's number
                        page.wait_for_function("() => window.__seen !== null", polling="raf", timeout=20_000)
                    except Exception:
                        errors.append(f"stroke {i + 1}: no analysis within 20 s")
                        wait_for_app(page)
                        continue
                    page.wait_for_timeout(50)  # (the frame events come in before this returns)
                    row = page.evaluate("() => [window.__seen - window.__up, window.__seen - window.__sent,"
                                        " window.__predMsg == null ? NaN : window.__predMsg - window.__sent]")
                    server_ms = float(page.locator(".draw-done").get_attribute("data-ms"))  # the page's own time
                    out.append(row + [network_latency_ms(frames[mark:], target), server_ms])
                    wait_for_app(page)
            finally:
                ready.set()
                chromium.close()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
        ready.set()


async def browser_check(url: str, server_pid: int, opts) -> tuple[PhaseResult | None, list, list]:
    rows: list = []
    errors: list = []
    threads, readies = [], []
    for b in range(opts.browsers):
        ready = threading.Event()
        t = threading.Thread(target=browser_strokes, args=(url, opts.browser_strokes, 100 + b, ready, rows, errors),
                             daemon=True)
        t.start()
        threads.append(t)
        readies.append(ready)
    for ready in readies:
        await asyncio.to_thread(ready.wait, 90)
    phase = None
    if opts.browser_sessions:
        # The protocol students draw for as long as the browsers do.
        sub = argparse.Namespace(**{**vars(opts), "strokes": max(opts.strokes, opts.browser_strokes + 2)})
        phase = await classroom(url, server_pid, opts.browser_sessions, sub, seed=opts.seed + 999)
    for t in threads:
        await asyncio.to_thread(t.join, 120)
        if t.is_alive():
            errors.append("a browser did not finish within 120 s")
    return phase, rows, errors


# -- reporting ----------------------------------------------------------------------------

def describe(p: PhaseResult, trainings: Trainings | None, baseline: float | None) -> list[str]:
    lat = p.latencies()
    strokes = p.strokes
    fin = [(r.finished - r.sent) * 1000 for r in strokes if r.finished is not None and r.answer is not None]
    srv = [r.server_ms for r in strokes if r.server_ms is not None]
    loads = [st.page_load_s * 1000 for st in p.students if st.page_load_s is not None]
    clears = [c for st in p.students for c in st.clears_ms]
    f = p.failures()
    seconds = p.t1 - p.t0
    lines = [f"N={p.n:<3d} stroke->prediction p50 {percentile(lat, 50):6.0f} ms  p95 {percentile(lat, 95):6.0f} ms"
             f"  max {max(lat, default=float('nan')):6.0f} ms  ({len(lat)}/{len(strokes)} strokes answered;"
             f" run finished p95 {percentile(fin, 95):.0f} ms; page's own time p50 {percentile(srv, 50):.0f}"
             f" p95 {percentile(srv, 95):.0f} ms)",
             f"       failures {sum(f.values())} ({', '.join(f'{k} {v}' for k, v in f.items())});"
             f" page load p95 {percentile(loads, 95):.0f} ms; Clear p95 {percentile(clears, 95):.0f} ms;"
             f" images gone before fetched {sum(st.media[1] for st in p.students)}"
             f" of {sum(sum(st.media) for st in p.students)}"]
    if trainings is not None:
        rates = trainings.rates(p.t0, p.t1)
        if all(r is not None for r in rates) and baseline:
            mean = sum(rates) / len(rates)
            lines.append(f"       trainings {mean / baseline:.2f}x of one alone ({', '.join(f'{r:,.0f}' for r in rates)}"
                         f" vs {baseline:,.0f} samples/s)")
        else:
            lines.append("       trainings: n/a (their epochs cover less than half of this phase)")
        if VERBOSE:
            for i, epochs in enumerate(trainings.epochs):
                lines.append(f"       training {i} epochs (start-end, s from phase start): " + ", ".join(
                    f"{e.end - e.seconds - p.t0:.1f}-{e.end - p.t0:.1f} {e.rate:,.0f}/s" for e in epochs
                    if p.t0 - 30 < e.end < p.t1 + 30))
    errs = sorted({e for st in p.students for e in ([st.error] if st.error else []) + st.session_errors})
    cores = ", ".join(f"{k} {v:.2f}" for k, v in p.cores.items() if k != "browsers" or abs(v) > 0.005)
    lines.append(f"       CPU over {seconds:.0f} s, in cores: {cores}; server"
                 f" {p.cores['server'] * seconds / max(1, len(strokes)) * 1000:.0f} ms per stroke (page loads and"
                 f" Clears included)")
    lines.append(f"       server RSS {p.rss_before:.0f} -> {p.rss_after:.0f} MB; clients' loop lag p95"
                 f" {percentile(p.lag, 95) * 1000:.0f} ms max {max(p.lag, default=0) * 1000:.0f} ms;"
                 f" {sum(st.bytes_in for st in p.students) / max(1, len(strokes)) / 1024:.0f} KiB received per stroke")
    lines += [f"       error: {e}" for e in errs[:5]]
    return lines


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="1,10,20,30,40", help="numbers of concurrent students, e.g. 1,10,30")
    ap.add_argument("--trainings", type=int, default=1, help="trainings running meanwhile (default 1)")
    ap.add_argument("--training-threads", type=int, help="torch threads per training (default: one per core)")
    ap.add_argument("--strokes", type=int, default=10, help="strokes per student (default 10)")
    ap.add_argument("--interval", default="1.0,2.0", help="seconds between a student's actions, min,max")
    ap.add_argument("--ramp", type=float, default=3.0, help="students arrive over this many seconds")
    ap.add_argument("--timeout", type=float, default=20.0, help="a stroke without a prediction after this fails")
    ap.add_argument("--memory-sessions", type=int, default=30)
    ap.add_argument("--browsers", type=int, default=1, help="Chromium sessions in the browser check (0: none)")
    ap.add_argument("--browser-sessions", type=int, default=10, help="protocol sessions beside the browsers")
    ap.add_argument("--browser-strokes", type=int, default=8)
    ap.add_argument("--data-dir", default=default_data_dir())
    ap.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                    help="extra environment for the server, e.g. STREAMLIT_RUNNER_POST_SCRIPT_GC=true "
                         "(streamlit run reads STREAMLIT_<SECTION>_<OPTION> as its command-line flag)")
    ap.add_argument("--compare-env", nargs="*", default=[], metavar="NAME=VALUE",
                    help="A/B: also start a second server with this extra environment and run each N on both, "
                         "alternating (memory and Chromium checks stay on the first)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=int, default=900, help="stop everything after this long")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (under 2 minutes)")
    ap.add_argument("--verbose", action="store_true", help="also list the trainings' epochs per phase")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    if args.quick:
        args.sessions, args.strokes, args.memory_sessions = "1,5", 4, 5
        args.browser_sessions, args.browser_strokes, args.ramp = 3, 3, 1.0
    args.sizes = [int(x) for x in args.sessions.split(",") if x.strip()]
    args.interval = tuple(float(x) for x in args.interval.split(","))
    if not args.data_dir or not Path(args.data_dir).is_dir():
        sys.exit("no data folder: set LENET_DATA_DIR or pass --data-dir (e.g. ../shared/data)")
    return args


async def measure(server: AppServer, args, trainings: Trainings | None, baseline: float | None,
                  other: AppServer | None = None) -> list[PhaseResult]:
    pid = server.proc.pid
    phases = []
    for i, n in enumerate(args.sizes):
        if other is None:
            phase = await classroom(server.url, pid, n, args, seed=args.seed + i)
            print("\n".join(describe(phase, trainings, baseline)), flush=True)
        else:
            # A/B: the same class on both servers, one after the other, in alternating order so
            # that a busy neighbour on a shared machine hurts both alike.
            pair = [("A", server), ("B", other)][:: 1 if i % 2 == 0 else -1]
            for label, srv in pair:
                result = await classroom(srv.url, srv.proc.pid, n, args, seed=args.seed + i)
                if label == "A":
                    phase = result
                lines = describe(result, trainings, baseline)
                print("\n".join([f"{label} {lines[0]}"] + [f"  {line}" for line in lines[1:]]), flush=True)
        phases.append(phase)
    if args.memory_sessions:
        before, after, failed = await memory_flat(server.url, pid, args.memory_sessions, args)
        print(f"memory flat: {args.memory_sessions} sessions opened, drawn on and closed: server RSS {before:.0f} -> "
              f"{after:.0f} MB ({after - before:+.0f} MB, {(after - before) / max(1, args.memory_sessions):+.1f} MB "
              f"a session; {failed} failed; closed sessions stay {server_ttl()} s for a reconnect)", flush=True)
    if args.browsers:
        phase, rows, errors = await browser_check(server.url, pid, args)
        up, sent, msg, net, srv = ([r[k] for r in rows if r[k] == r[k]] for k in range(5))  # (r == r: not NaN)
        print(f"Chromium check: {args.browsers} browser(s) beside {args.browser_sessions} protocol sessions, "
              f"{len(rows)} browser strokes{' (' + '; '.join(errors[:3]) + ')' if errors else ''}:\n"
              f"                browser drawing sent->prediction frame (network, DevTools) p50 "
              f"{percentile(net, 50):.0f} p95 {percentile(net, 95):.0f} ms; in the page: ->message handled p50 "
              f"{percentile(msg, 50):.0f} p95 {percentile(msg, 95):.0f} ms, ->shown p50 {percentile(sent, 50):.0f} "
              f"p95 {percentile(sent, 95):.0f} ms; mouse-up->shown p50 {percentile(up, 50):.0f} "
              f"p95 {percentile(up, 95):.0f} ms (the canvas sends on pen-up); the page's own time "
              f"for these runs p50 {percentile(srv, 50):.0f} p95 {percentile(srv, 95):.0f} ms", flush=True)
        if phase is not None:
            lat = phase.latencies()
            own = [r.server_ms for r in phase.strokes if r.server_ms is not None]
            print(f"                protocol clients meanwhile: sent->prediction p50 {percentile(lat, 50):.0f} "
                  f"p95 {percentile(lat, 95):.0f} ms ({len(lat)}/{len(phase.strokes)} strokes answered, "
                  f"{sum(phase.failures().values())} failures); the page's own time for their runs p50 "
                  f"{percentile(own, 50):.0f} p95 {percentile(own, 95):.0f} ms", flush=True)
            print(next(line for line in describe(phase, None, None) if "CPU over" in line), flush=True)
    return phases


def server_ttl() -> int:
    from streamlit import config

    return int(config.get_option("server.disconnectedSessionTTL"))


def _over_time(signum, frame):
    raise TimeoutError("the run took longer than --max-seconds")


def main():
    args = parse_args()
    signal.signal(signal.SIGALRM, _over_time)
    signal.alarm(args.max_seconds)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="classroom-load-"))
    env = {"LENET_DATA_DIR": args.data_dir, "LENET_RUNS_DIR": str(work / "runs"),
           "LENET_CACHE_DIR": str(work / "cache"),
           **dict(a.split("=", 1) for a in args.server_env)}
    print(f"classroom load: sessions {args.sizes}, trainings {args.trainings}"
          f"{f' ({args.training_threads} threads each)' if args.training_threads else ''}, {args.strokes} strokes each every "
          f"{args.interval[0]:g}-{args.interval[1]:g} s; data {args.data_dir}; server env {args.server_env or '-'}; "
          f"{os.cpu_count()} CPUs", flush=True)
    server = start_app(env)
    other = None
    if args.compare_env:
        other = start_app({**env, **dict(a.split("=", 1) for a in args.compare_env)})
        print(f"A/B: A is the server above, B the same with {args.compare_env}", flush=True)
    trainings = baseline = None
    phases: list[PhaseResult] = []
    try:
        # Warm up: the first Draw run imports torch and plotly and loads the models.
        for srv in [server] + ([other] if other else []):
            asyncio.run(memory_flat(srv.url, srv.proc.pid, 1, args))
        if args.trainings:
            alone = start_trainings(server, 1, work, args.data_dir, tag="alone", threads=args.training_threads)
            try:
                alone.wait_epochs(1, 60)  # the first epoch has one-off costs
                meter = CpuMeter(server.proc.pid, [p.pid for p in alone.procs])
                t0 = alone.epochs[0][-1].end if alone.epochs[0] else time.perf_counter()
                alone.wait_epochs(2 if args.quick else 3, 30 if args.quick else 45)
                cores = meter.cores()
                rates = sorted(e.rate for e in alone.epochs[0] if e.end - e.seconds + 0.1 >= t0)
                # The median epoch (the machine may be shared); with none whole, the part-epochs' rate.
                baseline = rates[len(rates) // 2] if rates else alone.rates(t0, time.perf_counter())[0]
            finally:
                alone.stop()
            print(f"one training alone (server idle): {f'{baseline:,.0f} samples/s' if baseline else 'no epoch'} "
                  f"(epochs {', '.join(f'{r:,.0f}' for r in rates) or 'none whole'}); other processes on this "
                  f"machine used {cores['other processes']:.2f} cores meanwhile", flush=True)
            trainings = start_trainings(server, args.trainings, work, args.data_dir, threads=args.training_threads)
            args.training_pids = [p.pid for p in trainings.procs]
            trainings.wait_epochs(1, 60)
        phases = asyncio.run(measure(server, args, trainings, baseline, other))
    finally:
        signal.alarm(0)
        if trainings is not None:
            trainings.stop()
        server.stop()
        if other is not None:
            other.stop()
    print(f"took {time.perf_counter() - started:.0f} s; server log {server.log_path}; work folder {work}")
    last = phases[-1]
    print(f"canvas_p95_ms {percentile(last.latencies(), 95):.0f} sessions {last.n} trainings {args.trainings}")


if __name__ == "__main__":
    main()
