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
