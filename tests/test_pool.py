"""The local pool of worker processes, driven only through run folders: queue order and the limit,
pause, resume and stop within a second, a killed worker's run resumed in place, a clean shutdown."""
import json
import os
import signal
import time

import pytest

from lenet_core.executors import LocalPool
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import TrainConfig
from waiting import wait_for

# Slow enough per step (wide convs) that a run is still training when the test acts on it.
SLOW = preset("modern").replace(conv_channels=(32, 32), dense_widths=(32,))


def config(**kw):
    return TrainConfig(**{"model": SLOW, "dataset": "mnist", "lr": 0.02, "batch_size": 8, "epochs": 40,
                          "optimizer": "momentum", "device": "cpu", **kw})


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir  # conftest's small stand-ins of both data sets


@pytest.fixture(scope="module")
def pool(data_dir):
    pool = LocalPool(per_device=1, data_dir=data_dir, devices=["cpu"])
    wait_for(lambda: pool.ready, 60)
    yield pool
    pool.shutdown()


def steps(run):
    return run.status().get("steps_done", 0)


def stop_all(runs):
    for r in runs:
        r.request(stop=True)
    wait_for(lambda: not any(r.info().live for r in runs), 60)


def test_runs_wait_in_order_and_one_trains_at_a_time(pool, tmp_path):
    runs = [Run.create(config(seed=i, epochs=1), tmp_path) for i in range(3)]
    for r in runs:
        pool.submit(r)
    seen_running = set()
    deadline = time.monotonic() + 120
    while any(r.info().live for r in runs) and time.monotonic() < deadline:
        statuses = [r.info().status for r in runs]
        assert statuses.count("running") + statuses.count("paused") <= 1  # the limit: one per CPU worker
        seen_running |= {i for i, s in enumerate(statuses) if s == "running"}
        time.sleep(0.02)
    infos = [r.info() for r in runs]
    assert [i.status for i in infos] == ["finished"] * 3
    assert infos[0].started < infos[1].started < infos[2].started  # in the order they were asked for
    assert infos[0].ended <= infos[1].started and infos[1].ended <= infos[2].started


def test_a_pair_asked_for_together_trains_side_by_side_and_the_queue_waits_for_both(pool, tmp_path):
    pair = [Run.create(config(seed=i, epochs=1), tmp_path) for i in range(2)]
    later = Run.create(config(seed=9, epochs=1), tmp_path)
    wait_for(lambda: len(pool.ready) == len(pool.procs), 60)
    pool.submit_together(pair)
    pool.submit(later)
    wait_for(lambda: later.info().status == "finished", 180)
    infos = [r.info() for r in pair]
    assert [i.status for i in infos] == ["finished"] * 2
    assert max(i.started for i in infos) < min(i.ended for i in infos)  # both learned at once, side by side
    assert later.info().started >= max(i.ended for i in infos)  # one job at a time: the pair, then the next
    assert "1 thread" in infos[0].device and "1 thread" in infos[1].device  # the cores split between them


def test_pause_resume_and_stop_through_the_folder_within_a_second(pool, tmp_path):
    run = Run.create(config(), tmp_path)
    pool.submit(run)
    wait_for(lambda: steps(run) > 3, 60)
    run.request(pause=True)
    assert wait_for(lambda: run.info().status == "paused") < 1.0
    held = steps(run)
    time.sleep(1.0)
    assert steps(run) == held and run.info().status == "paused"
    run.request(pause=False)
    assert wait_for(lambda: run.info().status == "running" and steps(run) > held) < 1.5
    t0 = time.monotonic()
    run.request(stop=True)
    wait_for(lambda: run.info().status == "stopped", 10)
    assert time.monotonic() - t0 < 1.5  # includes evaluating the weights it stopped with
    info = run.info()
    assert "Stopped after" in info.message and info.test_accuracy is not None
    assert run.load_checkpoint().training.step == info.steps_done


def test_a_killed_worker_is_replaced_and_its_run_resumes_in_place(pool, tmp_path):
    run = Run.create(config(epochs=3), tmp_path)
    pool.submit(run)
    wait_for(lambda: run.info().epochs_done >= 1 and steps(run) > 40, 120)
    pid = json.loads((run.path / "claim.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run.info().status == "interrupted", 10)
    # A reader sees it interrupted as soon as its trainer is gone; the pool then writes down why.
    wait_for(lambda: run.status().get("status") == "interrupted", 10)
    info = run.info()
    assert "killed (SIGKILL)" in info.message and "Resume" in info.message
    kept = info.epochs_done
    wait_for(lambda: pool.ready and all(p.is_alive() for p in pool.procs), 60)  # replaced

    run.requeue()  # what Resume does
    pool.submit(run)
    wait_for(lambda: run.info().status == "finished", 180)
    info = run.info()
    assert info.epochs_done == 3 and info.steps_done == 3 * 32
    steps_seen, _ = run.steps()
    assert steps_seen.tolist() == list(range(1, 97))  # one continuous curve, no gap, no repeat
    assert [m.epoch for m in run.epochs()] == [1, 2, 3] and kept >= 1


def test_a_worker_sent_sigterm_saves_its_run_as_stopped(pool, tmp_path):
    run = Run.create(config(), tmp_path)
    pool.submit(run)
    wait_for(lambda: steps(run) > 3, 60)
    pid = json.loads((run.path / "claim.json").read_text())["pid"]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: run.info().status == "stopped", 10)
    assert run.load_checkpoint().training.step == run.info().steps_done > 3


def test_shutting_the_pool_down_stops_and_saves_what_trains_and_leaves_the_queue(data_dir, tmp_path):
    pool = LocalPool(per_device=1, data_dir=data_dir, devices=["cpu"])
    try:
        training, waiting = Run.create(config(), tmp_path), Run.create(config(seed=1), tmp_path)
        pool.submit(training)
        pool.submit(waiting)
        wait_for(lambda: steps(training) > 3, 90)
    finally:
        pool.shutdown()
    info = training.info()
    assert info.status == "stopped" and "server shut down" in info.message
    assert waiting.info().status == "queued"  # taken up again by the next start
    assert not any(p.is_alive() for p in pool.procs)
