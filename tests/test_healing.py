"""A server that heals itself: a full disk or a failed status write costs at most the run it touched,
the pool's monitor and workers live on, a dead server's queued runs are adopted by a live one, and
the queue is fair between owners however many browsers they use."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lenet_core.cli import main
from lenet_core.executors import LocalPool
from lenet_core.model import ModelConfig, preset
from lenet_core.runs import Run, RunInfo, fair_order
from lenet_core.train import TrainConfig
from lenet_core.worker import train_run
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "lenet_lab.py"
SMALL = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(32,))
SLOW = preset("modern").replace(conv_channels=(32, 32), dense_widths=(32,))


def config(**kw):
    return TrainConfig(**{"model": SMALL, "dataset": "mnist", "lr": 0.05, "batch_size": 32, "epochs": 1,
                          "optimizer": "momentum", "device": "cpu", **kw})


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir  # conftest's small stand-ins of both data sets


def full_disk_after(monkeypatch, writes: int):
    """Run.append_steps raises ENOSPC from its `writes`-th call on, as a disk that fills mid-epoch does."""
    calls = {"n": 0}
    real = Run.append_steps

    def append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] >= writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Run, "append_steps", append)


def test_a_disk_that_fills_mid_epoch_fails_the_run_with_its_reason(data_dir, tmp_path, monkeypatch):
    run = Run.create(config(epochs=3), tmp_path)
    full_disk_after(monkeypatch, 12)
    assert train_run(run.path, data_dir=data_dir) == "failed"
    info = run.info()
    assert info.status == "failed" and info.reason == "disk-full"
    assert info.message.startswith("The disk is full (No space left on device)") and "by itself" in info.message
    assert info.epochs_done >= 1 and run.load_checkpoint().training.epoch == info.epochs_done  # earlier epochs kept


def test_the_cli_says_a_full_disk_in_one_line(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    full_disk_after(monkeypatch, 5)
    code = main(["train", "--dataset", "mnist", "--epochs", "2", "--batch-size", "32", "--conv-channels", "4,8",
                 "--dense-widths", "32", "--out", str(tmp_path / "run"), "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: The disk is full (No space left on device): its last finished epoch is kept, and it carries on by "
        "itself once there is room again (or press Resume)."]
    assert "Traceback" not in out + err and "saved run to" not in out
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


def test_starting_below_the_free_space_floor_is_refused_and_leaves_no_folder(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_MIN_FREE_MB", str(10**9))
    code = main(["train", "--dataset", "mnist", "--epochs", "1", "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: The server's disk is full") and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())

    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["lenet_session_token"] = "browser-a"
    at.run()
    at.switch_page("views/train.py").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    assert any("The server's disk is full" in e.value for e in at.error)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())

    from lenet_app import uploads
    from lenet_core.checkpoint import Checkpoint, checkpoint_bytes
    from lenet_core.train import build_model

    data = checkpoint_bytes(Checkpoint(config(), build_model(config()), "mnist", tuple("0123456789")))
    with at_session("browser-a"):
        kind, message = uploads.accept(data, "mine.pt")
    assert kind == "error" and "disk is full" in message
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


class at_session:
    """Calls into lenet_app outside a page: the session token a page would have."""

    def __init__(self, token):
        self.token = token

    def __enter__(self):
        import streamlit as st

        st.session_state["lenet_session_token"] = self.token

    def __exit__(self, *exc):
        return False


@pytest.fixture
def pool(data_dir):
    pool = LocalPool(per_device=1, data_dir=data_dir, devices=["cpu"])
    wait_for(lambda: pool.ready, 120)
    yield pool
    pool.shutdown()


def test_the_pool_outlives_a_status_write_that_fails_and_trains_the_next_run(pool, tmp_path, monkeypatch):
    first = Run.create(config(model=SLOW, batch_size=8, epochs=40), tmp_path)
    pool.submit(first)
    wait_for(lambda: first.status().get("steps_done", 0) > 3, 120)
    # The worker dies while the disk is full: the monitor's own write about it fails too.
    real = Run.set_status
    monkeypatch.setattr(Run, "set_status", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    os.kill(json.loads((first.path / "claim.json").read_text())["pid"], signal.SIGKILL)
    # Its trainer is gone: it reads so without the write (the monitor released its claim).
    wait_for(lambda: first.info().status == "interrupted", 60)
    wait_for(lambda: pool.ready and all(p.is_alive() for p in pool.procs), 120)  # replaced all the same
    assert pool._monitor.is_alive()
    monkeypatch.setattr(Run, "set_status", real)  # space is back
    nxt = Run.create(config(), tmp_path)
    t0 = time.monotonic()
    pool.submit(nxt)
    wait_for(lambda: nxt.info().status == "finished", 120)
    print(f"space back to the next run finished: {time.monotonic() - t0:.1f} s")
    assert pool.health()["ok"] and pool.health()["alive"] == len(pool.procs)


def test_a_dead_servers_queued_runs_are_adopted_by_a_live_one(pool, tmp_path):
    pool.start(tmp_path)
    # Another server sharing the folder queues two runs, then dies (kill -9) before training them.
    script = ("import sys, os, signal; sys.path.insert(0, sys.argv[2])\n"
              "from lenet_core.runs import Run; from lenet_core.train import TrainConfig\n"
              "from lenet_core.model import ModelConfig\n"
              "m = ModelConfig(activation='relu', pooling='max', conv_channels=(4, 8), dense_widths=(32,))\n"
              "for s in (1, 2): Run.create(TrainConfig(model=m, dataset='mnist', batch_size=32, epochs=1, seed=s,"
              " device='cpu'), sys.argv[1], owner='someone')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(ROOT)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    runs = [Run(p) for p in sorted(tmp_path.iterdir())]
    assert len(runs) == 2 and all(r.info().status == "queued" for r in runs)
    took = wait_for(lambda: all(r.info().status == "finished" for r in runs), 120)
    print(f"the dead server's 2 queued runs were adopted and trained in {took:.1f} s")


def info(owner, created, status="queued"):
    return RunInfo(Path(f"/runs/{owner}{created}"), f"{owner}{created}", config(), status, owner=owner,
                   created=float(created))


def test_the_fair_order_serves_the_owner_with_fewest_runs_training_first():
    # Four browsers of one person (or four people) queued 3 runs each, ahead of the class.
    queued = [info(o, t) for t, o in enumerate("aaabbbcccddd")]
    assert [i.name for i in fair_order(queued)] == ["a0", "b3", "c6", "d9", "a1", "b4", "c7", "d10", "a2", "b5",
                                                    "c8", "d11"]
    # A student who arrives later with one run goes before the second run of anyone already training.
    late = info("e", 20)
    order = fair_order(queued + [late], others=[info("a", -1, "running")])
    assert [i.name for i in order][:5] == ["b3", "c6", "d9", "e20", "a0"]


def test_the_pool_trains_four_owners_in_fair_order(pool, tmp_path):
    runs = []
    for n in range(12):  # 4 owners, 3 runs each, queued owner by owner
        runs.append(Run.create(config(seed=n, epochs=1), tmp_path, owner="abcd"[n // 3]))
        time.sleep(0.01)
    for r in runs:
        pool.submit(r)
    wait_for(lambda: all(r.info().status == "finished" for r in runs), 300)
    started = sorted(runs, key=lambda r: r.info().started)
    order = [r.info().owner for r in started]
    print("4 owners' 12 runs trained in the order", "".join(order))
    assert order == list("abcdabcdabcd")


def test_the_health_route_reports_the_pool(start_server, app_env, tmp_path):
    server = start_server(app_env)

    def healthy():
        try:
            return json.loads(urllib.request.urlopen(server.url + "/lenet/health", timeout=30).read())
        except urllib.error.HTTPError as e:  # 503 while its workers start
            assert json.loads(e.read())["why"] == "the workers are still starting"
            return None

    wait_for(healthy, 120, every=0.5)
    report = healthy()
    assert report["ok"] and report["alive"] >= 1 and report["ready"] >= 1 and report["free_mb"] > 0
    full = start_server({**app_env, "LENET_MIN_FREE_MB": str(10**9)})
    with pytest.raises(urllib.error.HTTPError) as e:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # once its workers are up, only the disk is wrong
            urllib.request.urlopen(full.url + "/lenet/health", timeout=30)
            time.sleep(0.5)
    assert e.value.code == 503
    report = json.loads(e.value.read())
    assert "the disk has" in report["why"] or "starting" in report["why"]


def test_a_short_lecturer_token_is_refused_at_start_up(app_env):
    env = {**os.environ, **app_env, "LENET_LECTURER_TOKEN": "short", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", "0",
                           "--server.headless", "true"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: LENET_LECTURER_TOKEN is 5 characters; a lecturer token needs at least 16" in proc.stderr
    assert "secrets.token_urlsafe" in proc.stderr


def test_wrong_lecturer_tokens_are_answered_ever_more_slowly(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_LECTURER_TOKEN", "the-lecturers-own-long-token")
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("views/classroom.py").run()
    waits = []
    for _ in range(3):
        at.text_input[0].input("a-wrong-guess")
        t0 = time.monotonic()
        at.button[0].click().run()
        waits.append(time.monotonic() - t0)
        assert any("not this server's lecturer token" in e.value for e in at.error)
    assert waits[1] >= 0.5 and waits[2] >= 1.0 and waits[2] > waits[0]


def test_a_real_full_disk_costs_one_run_and_training_goes_on_once_space_is_back(pool, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=15m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs is not allowed here (the fake full disk above covers the logic)")
    monkeypatch.setenv("LENET_MIN_FREE_MB", "1")
    try:
        run = Run.create(config(model=SLOW, batch_size=8, epochs=40), disk)
        pool.submit(run)
        wait_for(lambda: run.status().get("steps_done", 0) > 3, 120)
        with open(disk / "filler", "wb") as f:  # fill the disk while it trains
            try:
                while True:
                    f.write(bytes(1 << 16))
            except OSError as e:
                assert e.errno == errno.ENOSPC
        wait_for(lambda: not run.info().live, 60)
        lost = run.info()
        assert lost.status in ("failed", "interrupted"), lost
        assert pool._monitor.is_alive() and all(p.is_alive() for p in pool.procs)
        (disk / "filler").unlink()  # space is back
        t0 = time.monotonic()
        nxt = Run.create(config(), disk)
        pool.submit(nxt)
        wait_for(lambda: nxt.info().status in ("running", "finished") or run.info().status == "running", 120)
        print(f"space back to a run training again: {time.monotonic() - t0:.1f} s "
              f"(the run the disk stopped: {lost.status}, {lost.reason or 'no reason written'})")
        if lost.status == "failed" and lost.reason == "disk-full":  # it carries on by itself
            wait_for(lambda: run.info().epochs_done > lost.epochs_done or run.info().status == "running", 120)
        wait_for(lambda: nxt.info().status == "finished", 180)
        run.request(stop=True)
        wait_for(lambda: not run.info().live, 60)
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_one_upload_limit_in_the_browser_the_server_and_the_loader():
    import tomllib

    from lenet_core.checkpoint import UPLOAD_MAX_BYTES, UPLOAD_MAX_MB, CheckpointError, load_checkpoint

    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert server == UPLOAD_MAX_MB and UPLOAD_MAX_BYTES == UPLOAD_MAX_MB * 1_000_000  # the browser's MB
    with pytest.raises(CheckpointError, match="is 50.0 MB; a LeNet Lab checkpoint is at most 50.0 MB"):
        load_checkpoint(bytes(UPLOAD_MAX_BYTES + 1), name="big.pt", limit=UPLOAD_MAX_BYTES)
    with pytest.raises(CheckpointError, match="not a file written by torch.save"):  # at the limit: read, refused
        load_checkpoint(bytes(UPLOAD_MAX_BYTES), name="big.pt", limit=UPLOAD_MAX_BYTES)


def test_an_uploaded_history_is_kept_as_the_charts_draw_it(tmp_path):
    import torch

    from lenet_core.checkpoint import Checkpoint
    from lenet_core.runs import UPLOAD_STEP_ROWS, from_checkpoint
    from lenet_core.train import build_model

    n = 400_000
    steps = torch.stack([torch.arange(1, n + 1, dtype=torch.float64), torch.linspace(2.3, 0.3, n,
                                                                                     dtype=torch.float64)], 1)
    ckpt = Checkpoint(config(), build_model(config()), "mnist", tuple("0123456789"), steps=steps)
    run = from_checkpoint(ckpt, tmp_path, name="long history")
    kept, losses = run.steps()
    assert len(kept) <= UPLOAD_STEP_ROWS and kept[-1] == n  # the curve reaches its last step
    assert abs(losses.mean() - 1.3) < 0.01  # bucket means: the curve's level is kept
    assert (run.path / "steps.csv").stat().st_size < 200_000
    assert run.info().steps_done == n


def test_the_server_caps_the_runs_waiting(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LENET_MAX_QUEUED", "2")
    for owner in ("x", "y"):  # two runs of others already wait
        Run.create(config(), tmp_path / "runs", owner=owner)
    from lenet_app import runs as app_runs

    with at_session("browser-a"), pytest.raises(app_runs.LimitError, match="The server has 2 runs waiting"):
        app_runs.start(config())
    assert len(list((tmp_path / "runs").iterdir())) == 2
