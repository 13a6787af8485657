"""The live feed: a running job's panel, written to a file that the browser reads."""
import json
import os
import time

import pytest

from lenet_app import live_feed
from lenet_core.data import load_dataset
from lenet_core.model import ModelConfig
from lenet_core.train import TrainConfig, TrainingJob

SMALL = ModelConfig(activation="relu", pooling="max", conv_channels=(4, 8), dense_widths=(32,))


@pytest.fixture(scope="module")
def tiny(tiny_data_dir):
    return load_dataset("mnist", tiny_data_dir, download=False)


def job_for(tiny, epochs=2):
    return TrainingJob(TrainConfig(model=SMALL, dataset="mnist", batch_size=32, epochs=epochs, device="cpu"),
                       data=tiny, name="test")


def render(snap, ended):
    return json.dumps({"status": snap.status, "step": snap.step, "ended": ended})


def read(feed):
    return json.loads(feed.path.read_text())


def wait_for(cond, limit=20.0):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_feed_follows_the_run_writes_its_end_then_removes_the_file(tiny, tmp_path):
    job = job_for(tiny, epochs=400)
    job.pause()  # holds the run at its first step until the feed has been read
    job.start()
    feed = live_feed.LiveFeed(job, tmp_path / "live", render, every=0.05, linger=1.5).start()
    try:
        assert feed.path.parent == tmp_path / "live" and len(feed.name) > 20  # a random, unguessable name
        first = read(feed)
        assert first["ended"] is False and first["status"] in ("loading", "paused")
        job.resume()
        wait_for(lambda: read(feed)["step"] > 3)  # rewritten while the run trains
        assert read(feed)["ended"] is False
    finally:
        job.stop()
    job.join(5)
    wait_for(lambda: read(feed)["ended"])  # the end stays readable for a while, for pages still reading
    assert read(feed)["status"] == "stopped"
    assert feed.join(5), "the feed thread should end after its linger"
    assert not feed.path.exists() and feed.error is None
    assert list((tmp_path / "live").iterdir()) == []  # no temporary file left either


def test_an_unchanged_panel_is_not_rewritten(tiny, tmp_path):
    job = job_for(tiny)
    feed = live_feed.LiveFeed(job, tmp_path, lambda snap, ended: "same", every=0.05)
    feed.write()
    os.utime(feed.path, (1, 1))
    feed.write()
    assert feed.path.stat().st_mtime == 1
    live_feed.HEARTBEAT_S, saved = 0.0, live_feed.HEARTBEAT_S  # ...until the heartbeat is due
    try:
        feed.write()
    finally:
        live_feed.HEARTBEAT_S = saved
    assert feed.path.stat().st_mtime > 1


def test_one_feed_per_job_and_none_where_its_file_cannot_be_written(tiny, tmp_path):
    job = job_for(tiny, epochs=400).start()
    try:
        feed = live_feed.feed_for(job, tmp_path / "live", render, 0.05)
        assert feed is not None and feed.path.exists()
        assert live_feed.feed_for(job, tmp_path / "live", render, 0.05) is feed
        (tmp_path / "blocked").write_text("a file where the folder should be")
        other = job_for(tiny)
        assert live_feed.feed_for(other, tmp_path / "blocked", render, 0.05) is None
    finally:
        job.stop()
        job.join(5)


def test_files_left_by_a_dead_server_are_removed(tmp_path):
    old, fresh = tmp_path / "old.json", tmp_path / "fresh.json"
    old.write_text("{}")
    fresh.write_text("{}")
    os.utime(old, (time.time() - 2 * live_feed.STALE_AFTER_S,) * 2)
    assert live_feed.remove_stale(tmp_path) == 1
    assert not old.exists() and fresh.exists()
