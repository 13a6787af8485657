"""The Ray executor end to end, on a small Ray that the test starts on this machine (1 CPU, a small
object store): a short run finishes in the same run folder, with the same contents, as the local
pool writes for the same settings."""
import json

import pytest

from lenet_core.cli import main
from lenet_core.executors import LocalPool
from lenet_core.model import preset
from lenet_core.runs import Run
from lenet_core.train import TrainConfig
from synthetic import synthetic_idx
from waiting import wait_for

CONFIG = TrainConfig(model=preset("modern").replace(conv_channels=(4, 8), dense_widths=(32,)), dataset="mnist",
                     batch_size=32, epochs=2, lr=0.05, optimizer="momentum", device="cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic_idx(root / "mnist", n_train=256, n_test=64)
    return root


def contents(run: Run) -> dict:
    info = run.info()
    timing = ("samples_per_s", "epoch_time")
    return {"status": info.status, "epochs": [{k: v for k, v in m.to_dict().items() if k not in timing}
                                              for m in run.epochs()],
            "steps": run.steps()[1].tolist(), "final": info.final,
            # TensorBoard names its files by time and host: the same file, another name
            "files": sorted("events.out.tfevents" if p.name.startswith("events.out.tfevents") else p.name
                            for p in run.path.iterdir())}


def test_the_cli_trains_on_ray_into_the_same_folder_the_local_pool_writes(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_OFFLINE", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a Ray of the test's own, on loopback
    monkeypatch.setenv("LENET_RAY_CPUS", "1")

    local = Run.create(CONFIG, tmp_path / "runs")
    pool = LocalPool(per_device=1, data_dir=data_dir, devices=["cpu"])
    try:
        pool.submit(local)
        wait_for(lambda: not local.info().live)
    finally:
        pool.shutdown()

    out = tmp_path / "on-ray"
    code = main(["train", "--executor", "ray", "--preset", "modern", "--conv-channels", "4,8", "--dense-widths", "32",
                 "--dataset", "mnist", "--batch-size", "32", "--epochs", "2", "--lr", "0.05", "--optimizer", "momentum",
                 "--device", "cpu", "--data-dir", str(data_dir), "--out", str(out), "--json"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "submitted to Ray" in stdout and json.loads(stdout.strip().splitlines()[-1])["status"] == "finished"
    on_ray = Run(out)
    assert on_ray.info().config == local.info().config
    assert json.loads((out / "status.json").read_text())["worker"]["pid"] != json.loads(
        (local.path / "status.json").read_text())["worker"]["pid"]
    # Same seed, same engine: the same run wherever it trained (up to the last bits of sums that
    # one thread adds in another order than two).
    ray_run, pool_run = contents(on_ray), contents(local)
    for key in ("status", "files"):
        assert ray_run[key] == pool_run[key]
    assert ray_run["steps"] == pytest.approx(pool_run["steps"], rel=1e-3)
    for a, b in zip(ray_run["epochs"], pool_run["epochs"], strict=True):
        assert a == pytest.approx(b, rel=1e-3)
    assert ray_run["final"]["test_accuracy"] == pytest.approx(pool_run["final"]["test_accuracy"], abs=0.02)


def test_a_run_on_ray_asks_for_a_share_of_a_gpu_only_where_there_is_one(monkeypatch):
    from lenet_core.ray_executor import RayExecutor

    class Recorded:
        asked = None

        def options(self, **kw):
            self.asked = kw
            return self

        def remote(self, *args):
            return object()

    for gpus, expected in ((0, {"num_cpus": 1.0}), (2, {"num_cpus": 1.0, "num_gpus": 0.1})):
        executor = RayExecutor.__new__(RayExecutor)  # no cluster: only the choice of resources is tested
        executor.ray = type("FakeRay", (), {"cluster_resources": staticmethod(lambda g=gpus: {"CPU": 4, "GPU": g})})
        executor.cpus, executor.gpu_share, executor.data_dir = 1.0, 0.1, None
        executor._task, executor._refs = Recorded(), {}
        import threading

        executor._lock = threading.Lock()
        executor.submit(Run("/tmp/nowhere"))
        assert executor._task.asked == expected
        assert executor.slots == (20 if gpus else 4)
