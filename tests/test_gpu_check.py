"""benchmarks/gpu_check.sh, the one script a lent GPU machine runs: without a GPU it says so and
measures nothing; its dry run takes every step on the CPU, so the script is known to work before
GPU minutes are spent on it."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(tmp_path, **env):
    return subprocess.run([str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, **env})


def test_without_a_gpu_it_says_so_and_measures_nothing(tmp_path):
    r = run(tmp_path, CUDA_VISIBLE_DEVICES="")
    assert r.returncode == 3
    assert "no CUDA GPU found" in r.stdout and "nothing was measured" in (tmp_path / "no-gpu.txt").read_text()
    assert not (tmp_path / "summary.txt").exists()


def test_its_dry_run_takes_every_step_on_the_cpu(tmp_path):
    r = run(tmp_path, CUDA_VISIBLE_DEVICES="", DRY_RUN="1")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary] == ["tests", "train", "throughput", "share", "draw"]
    assert all(" rc=0 " in line for line in summary), summary
    assert "gpu_train_s" in summary[1] and "ratio" in summary[2] and "share_total_samples_per_s" in summary[3]
    assert "draw_server_ms" in summary[4]
