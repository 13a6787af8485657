"""`lenet` as a user runs it. Most cases call the CLI's main(argv) in this process; real processes
only where signals, exit codes and a process dying are the point."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lenet_core.cli import main
from lenet_core.runs import Run
from synthetic import synthetic_idx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    synthetic_idx(root / "data" / "mnist", n_train=256, n_test=128)
    return root


@pytest.fixture
def env(root, monkeypatch, tmp_path):
    """What a user's shell has: no data set in the environment, offline, a runs root of its own."""
    monkeypatch.setenv("LENET_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("LENET_OFFLINE", "1")
    monkeypatch.setenv("LENET_DATA_DIR", "")
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    return {**os.environ, "PYTHONPATH": str(ROOT), "_ROOT": str(root)}


def lenet(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def data(root):
    return ("--data-dir", root / "data")


def test_summary_prints_the_chapters_table(env, capsys):
    code, out, _ = lenet(capsys, "summary")
    assert code == 0 and "conv2_pool   AvgPool2d  (1, 16, 5, 5)" in out and "61,706" in out
    code, out, _ = lenet(capsys, "summary", "--preset", "modern", "--kernel-size", "3", "--conv-channels", "8,16,32",
                         "--padding", "same")
    assert code == 0 and "MaxPool2d" in out and "(1, 32, 7, 7)" in out


def test_train_then_evaluate_then_list_with_json(env, root, capsys, tmp_path):
    out = tmp_path / "run1"
    code, stdout, err = lenet(capsys, "train", "--dataset", "mnist", "--preset", "modern", "--epochs", 2,
                              "--batch-size", 32, "--lr", 0.05, "--optimizer", "momentum", "--out", out, "--json",
                              *data(root))
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    metrics = json.loads(lines[-1])
    assert 0.3 < metrics["test_accuracy"] <= 1 and metrics["status"] == "finished" and metrics["epochs"] == 2
    assert {"config.json", "run.json", "status.json", "steps.csv", "epochs.jsonl", "checkpoint.pt"} <= {
        p.name for p in out.iterdir()}

    os.environ["LENET_DATA_DIR"] = str(root / "data")
    for target in (out, out / "checkpoint.pt"):
        code, stdout, err = lenet(capsys, "evaluate", target, "--json")
        assert code == 0, err
        ev = json.loads(stdout.strip().splitlines()[-1])
        assert ev["test_accuracy"] == pytest.approx(metrics["test_accuracy"]) and ev["count"] == 128

    lenet(capsys, *_train_args(root, "--name", "second"))  # into the runs root
    code, stdout, _ = lenet(capsys, "runs", "--json")
    listed = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and [r["name"] for r in listed] == ["second"]
    assert {"path", "name", "status", "epochs_done", "epochs", "test_accuracy"} <= set(listed[0])
    assert listed[0]["status"] == "finished" and listed[0]["epochs_done"] == listed[0]["epochs"] == 1


@pytest.mark.parametrize("args,says", [
    (["train", "--epochs", "many"], "invalid int value"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--conv-channels", "6,x"], "not a comma-separated list"),
    (["summary", "--conv-channels", "6,16,32"], "conv_channels"),
    (["summary", "--kernel-size", "40"], "kernel_size"),
    (["train", "--lr", "-1", "--dataset", "mnist"], "Learning rate"),
    (["train", "--epochs", "100000", "--dataset", "mnist"], "Epochs must be 1 to 200"),
    (["train", "--dense-widths", "2000000"], "Dense widths"),
    (["frobnicate"], "invalid choice"),
    (["evaluate", "/nonexistent/ckpt.pt"], "no such file"),
    (["resume", "/nonexistent/run"], "not a run folder"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "LENET_DATA_DIR"),
])
def test_errors_are_one_line_and_exit_2(env, capsys, args, says):
    code, _, err = lenet(capsys, *args)
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("error: ") and says in err
    if "LENET_DATA_DIR" not in says:
        assert len(err.strip().splitlines()) == 1


def test_a_bad_checkpoint_exits_2(env, capsys, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    code, _, err = lenet(capsys, "evaluate", junk)
    assert code == 2 and "not a LeNet Lab checkpoint" in err and "Traceback" not in err


def _train_args(root, *extra):
    return ["train", "--dataset", "mnist", "--preset", "modern", "--optimizer", "momentum", "--lr", 0.05, "--epochs", 1,
            "--batch-size", 16, *data(root), *extra]


def test_an_out_folder_that_cannot_take_the_run_is_refused_before_training(env, root, capsys, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out, says in ((a_file, "is a file"), (a_file / "run", "cannot write the run")):
        code, stdout, err = lenet(capsys, *_train_args(root, "--out", out))
        assert code == 2 and says in err and "Traceback" not in err
        assert "epoch " not in stdout  # refused before any training
    assert a_file.read_text() == "mine"


def test_a_run_folder_is_not_overwritten_without_asking(env, root, capsys, tmp_path):
    out = tmp_path / "run"
    assert lenet(capsys, *_train_args(root, "--out", out))[0] == 0
    first = (out / "checkpoint.pt").read_bytes()
    code, _, err = lenet(capsys, *_train_args(root, "--out", out, "--seed", 3))
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (out / "checkpoint.pt").read_bytes() == first
    (out / "my-notes.txt").write_text("keep me")
    assert lenet(capsys, *_train_args(root, "--out", out, "--seed", 3, "--overwrite"))[0] == 0
    assert (out / "checkpoint.pt").read_bytes() != first
    assert (out / "my-notes.txt").read_text() == "keep me"  # only the run's own files are replaced


def test_a_finished_run_is_not_resumed(env, root, capsys, tmp_path):
    out = tmp_path / "run"
    assert lenet(capsys, *_train_args(root, "--out", out))[0] == 0
    code, _, err = lenet(capsys, "resume", out)
    assert code == 2 and "is finished" in err


def test_a_damaged_data_file_is_one_clear_error(env, capsys, tmp_path):
    folder = synthetic_idx(tmp_path / "mnist", n_train=10, n_test=10)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])
    code, _, err = lenet(capsys, "train", "--dataset", "mnist", "--epochs", 1, "--data-dir", tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: {images} is damaged") and "good copy" in err


# -- real processes: signals and kills ---------------------------------------------------------

def start_training(env, out, *extra):
    args = [sys.executable, "-m", "lenet_core", "train", "--dataset", "mnist", "--preset", "modern", "--lr", "0.05",
            "--epochs", "200", "--batch-size", "16",
            "--conv-channels", "16,16", "--data-dir", env["_ROOT"] + "/data", "--out", str(out), "--json", *extra]
    return subprocess.Popen(args, env=env, cwd=env["_ROOT"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_epoch(proc, n):
    lines = []
    while not any(line.startswith(f"epoch {n:2d}") for line in lines):  # training is well under way
        line = proc.stdout.readline()
        assert line, f"training ended early: {proc.stderr.read()}"
        lines.append(line)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_training_and_keeps_the_run(env, tmp_path, capsys, sig):
    """Ctrl-C or SIGTERM stops at the next step; the run is evaluated and saved as 'stopped', and
    `resume` carries it on in the same folder."""
    out = tmp_path / "run"
    proc = start_training(env, out)
    try:
        wait_for_epoch(proc, 2)
        proc.send_signal(sig)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1 and "Traceback" not in stderr and "stopping after this step" in stderr
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert metrics["status"] == "stopped" and 2 <= metrics["epochs"] < 200
    info = Run(out).info()
    assert info.status == "stopped" and info.test_accuracy == pytest.approx(metrics["test_accuracy"])
    os.environ["LENET_DATA_DIR"] = env["_ROOT"] + "/data"
    code, stdout, _ = lenet(capsys, "evaluate", out, "--json")
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"])


def test_kill_9_of_train_leaves_an_interrupted_run_that_resume_finishes(env, root, tmp_path, capsys):
    out = tmp_path / "run"
    proc = start_training(env, out)
    try:
        wait_for_epoch(proc, 2)
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    info = Run(out).info()
    assert info.status == "interrupted" and info.epochs_done >= 2
    kept = info.epochs_done
    # Carry it on to a few more epochs than it had (a shorter plan keeps the test quick).
    config = json.loads((out / "config.json").read_text())
    config["epochs"] = kept + 2
    (out / "config.json").write_text(json.dumps(config))
    code, stdout, err = lenet(capsys, "resume", out, "--json", *data(root))
    assert code == 0, err
    assert "resuming" in stdout and json.loads(stdout.strip().splitlines()[-1])["status"] == "finished"
    info = Run(out).info()
    assert info.epochs_done == kept + 2 and info.steps_done == (kept + 2) * 16
    steps, _ = Run(out).steps()
    assert steps.tolist() == list(range(1, info.steps_done + 1))
    assert [m.epoch for m in Run(out).epochs()] == list(range(1, kept + 3))


def test_the_console_script_works_from_any_folder(env, tmp_path):
    """`lenet` is installed into the environment by `make setup` (pip install -e .)."""
    lenet_bin = Path(sys.executable).with_name("lenet")
    assert lenet_bin.exists(), "run `make setup`: it installs the package and its `lenet` command"
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(lenet_bin), "summary"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "61,706" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lenet_core", "summary"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "61,706" in r.stdout
