"""`python -m lenet_core` as a user runs it: real subprocesses, real exit codes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenet_core.data import synthetic_idx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    synthetic_idx(root / "data" / "mnist", n_train=256, n_test=128)
    return {**os.environ, "PYTHONPATH": str(ROOT), "LENET_CACHE_DIR": str(root / "cache"), "LENET_OFFLINE": "1",
            "LENET_DATA_DIR": "", "_ROOT": str(root)}


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "lenet_core", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=env["_ROOT"])


def test_summary_prints_the_chapters_table(env):
    r = cli(env, "summary")
    assert r.returncode == 0
    assert "conv2_pool   AvgPool2d  (1, 16, 5, 5)" in r.stdout and "61,706" in r.stdout
    r = cli(env, "summary", "--preset", "modern", "--kernel-size", "3", "--conv-channels", "8,16,32", "--padding", "same")
    assert r.returncode == 0 and "MaxPool2d" in r.stdout and "(1, 32, 7, 7)" in r.stdout


def test_train_then_evaluate_with_json(env):
    out = Path(env["_ROOT"]) / "run1"
    r = cli(env, "train", "--dataset", "mnist", "--preset", "modern", "--epochs", "2", "--batch-size", "32",
            "--lr", "0.05", "--optimizer", "momentum", "--out", str(out), "--json", "--data-dir", env["_ROOT"] + "/data")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    metrics = json.loads(lines[-1])
    assert 0.3 < metrics["test_accuracy"] <= 1 and metrics["status"] == "finished"
    assert {"config.json", "metrics.json", "run.json", "checkpoint.pt"} <= {p.name for p in out.iterdir()}

    env2 = {**env, "LENET_DATA_DIR": env["_ROOT"] + "/data"}
    for target in (out, out / "checkpoint.pt"):
        r = cli(env2, "evaluate", str(target), "--json")
        assert r.returncode == 0, r.stderr
        ev = json.loads(r.stdout.strip().splitlines()[-1])
        assert ev["test_accuracy"] == pytest.approx(metrics["test_accuracy"]) and ev["count"] == 128
        assert len(ev["per_class_accuracy"]) == 10


@pytest.mark.parametrize("args,says", [
    (["train", "--epochs", "many"], "invalid int value"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--conv-channels", "6,x"], "not a comma-separated list"),
    (["summary", "--conv-channels", "6,16,32"], "conv_channels"),
    (["summary", "--kernel-size", "40"], "kernel_size"),
    (["train", "--lr", "-1", "--dataset", "mnist"], "learning rate"),
    (["frobnicate"], "invalid choice"),
    (["evaluate", "/nonexistent/ckpt.pt"], "no such file"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "LENET_DATA_DIR"),
])
def test_errors_are_one_line_and_exit_2(env, args, says):
    r = cli(env, *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and says in r.stderr
    if "LENET_DATA_DIR" not in says:
        assert len(r.stderr.strip().splitlines()) == 1


def test_a_bad_checkpoint_exits_2(env, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    r = cli(env, "evaluate", str(junk))
    assert r.returncode == 2 and "not a LeNet Lab checkpoint" in r.stderr and "Traceback" not in r.stderr


def _train_args(env, *extra):
    return ["train", "--dataset", "mnist", "--epochs", "1", "--batch-size", "64", "--data-dir", env["_ROOT"] + "/data",
            *extra]


def test_an_out_folder_that_cannot_take_the_run_is_refused_before_training(env, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out, says in ((a_file, "is a file"), (a_file / "run", "cannot write the run")):
        r = cli(env, *_train_args(env, "--out", str(out)))
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr
        assert "epoch " not in r.stdout  # refused before any training
    assert a_file.read_text() == "mine"


def test_a_run_folder_is_not_overwritten_without_asking(env, tmp_path):
    out = tmp_path / "run"
    assert cli(env, *_train_args(env, "--out", str(out))).returncode == 0
    first = (out / "checkpoint.pt").read_bytes()
    r = cli(env, *_train_args(env, "--out", str(out), "--seed", "3"))
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--overwrite" in r.stderr
    assert (out / "checkpoint.pt").read_bytes() == first
    r = cli(env, *_train_args(env, "--out", str(out), "--seed", "3", "--overwrite"))
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").read_bytes() != first


def test_ctrl_c_stops_training_and_keeps_the_run(env, tmp_path):
    """The first Ctrl-C stops at the next step; the run is evaluated and saved as 'stopped'."""
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "lenet_core", "train", "--dataset", "mnist", "--epochs", "500", "--batch-size", "16",
            "--data-dir", env["_ROOT"] + "/data", "--out", str(out), "--json"]
    proc = subprocess.Popen(args, env=env, cwd=env["_ROOT"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("epoch  2") for line in lines):  # training is well under way
            line = proc.stdout.readline()
            assert line, f"training ended early: {proc.stderr.read()}"
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1 and "Traceback" not in stderr and "stopping after this step" in stderr
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert metrics["status"] == "stopped" and 2 <= metrics["epochs"] < 500
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "stopped"
    r = cli({**env, "LENET_DATA_DIR": env["_ROOT"] + "/data"}, "evaluate", str(out), "--json")
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"])


def test_a_damaged_data_file_is_one_clear_error(env, tmp_path):
    folder = synthetic_idx(tmp_path / "mnist", n_train=10, n_test=10)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])
    r = cli(env, "train", "--dataset", "mnist", "--epochs", "1", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {images} is damaged") and "good copy" in r.stderr
