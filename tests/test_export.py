"""ONNX export: every kind of model LeNet Lab has gives one graph whose probabilities and conv maps
are PyTorch's, in a file the browser's runtime (IR version <= 13) accepts; `lenet export` as a user
runs it, bad input included."""
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import lenet_core.data
from lenet_core.activations import activations
from lenet_core.checkpoint import Checkpoint, load_checkpoint
from lenet_core.cli import main
from lenet_core.export import onnx_bytes
from lenet_core.model import PRESETS, LeNet, ModelConfig
from lenet_core.runs import Run
from lenet_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
ODD = ModelConfig(conv_channels=(6, 12, 16), kernel_size=3, activation="tanh", pooling="max")


def shipped(name: str) -> LeNet:
    return load_checkpoint(ROOT / "models" / name / "checkpoint.pt").model


def check_against_torch(model: LeNet, data: bytes) -> None:
    proto = onnx.load_from_string(data)
    assert proto.ir_version <= 13  # onnxruntime-web 1.30 refuses 14
    session = onnxruntime.InferenceSession(data)
    names = [o.name for o in session.get_outputs()]
    layers = min(2, len(model.config.conv_channels))
    assert names == ["probs"] + [f"conv{i}" for i in range(1, layers + 1)]
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32))
    got = dict(zip(names, session.run(None, {"image": x.numpy()})))
    acts = activations(model.eval(), x)
    probs = torch.softmax(acts["output"], dim=1).numpy()
    assert np.abs(got["probs"] - probs).max() <= 1e-5
    assert abs(float(got["probs"].sum()) - 1) < 1e-5
    for i in range(1, layers + 1):
        want = acts[f"conv{i}_act"].numpy()
        assert got[f"conv{i}"].shape == want.shape
        assert np.abs(got[f"conv{i}"] - want).max() <= 1e-4


@pytest.mark.parametrize("name", ["digits", "fashion-classic", "fashion-modern"])
def test_shipped_models_export_and_match_pytorch(name):
    model = shipped(name)
    check_against_torch(model, onnx_bytes(model))


@pytest.mark.parametrize("config", [*PRESETS.values(), ODD, ModelConfig(conv_channels=(4,), dense_widths=())],
                         ids=[*PRESETS, "3conv-k3-tanh-max", "1conv-no-dense"])
def test_any_architecture_the_controls_allow_exports(config):
    torch.manual_seed(1)
    model = LeNet(config)
    check_against_torch(model, onnx_bytes(model))


def lenet(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_lenet_export_writes_a_run_folders_model(capsys, tmp_path):
    torch.manual_seed(2)
    model = LeNet(ODD)
    config = TrainConfig(model=ODD, dataset="mnist")
    run = Run.create(config, tmp_path / "runs", name="odd")
    run.save_checkpoint(Checkpoint(config, model, "mnist", lenet_core.data.DATASETS["mnist"][2]))
    out = tmp_path / "odd.onnx"
    code, stdout, err = lenet(capsys, "export", run.path, "--out", out)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    check_against_torch(model, out.read_bytes())


def test_lenet_export_bad_input_is_one_error_line(capsys, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((ROOT / "models" / "digits" / "checkpoint.pt").read_bytes()[:5000])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [(damaged, ["--out", tmp_path / "x.onnx"], "damaged.pt"),
             (tmp_path / "missing.pt", [], "does not exist"),
             (tmp_path, [], "no checkpoint.pt"),  # a folder that is no run
             (ROOT / "models" / "digits", ["--out", damaged / "m.onnx"], "could not write"),  # under a file
             (ROOT / "models" / "digits", ["--out", tmp_path], "is a folder")]
    if os.geteuid() != 0:  # root writes anywhere; a read-only mount stands in below for everyone
        cases.append((ROOT / "models" / "digits", ["--out", locked / "m.onnx"], "could not write"))
    cases.append((ROOT / "models" / "digits", ["--out", "/proc/m.onnx"], "could not write"))
    for source, extra, words in cases:
        code, stdout, err = lenet(capsys, "export", source, *extra)
        assert code == 2, (source, extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (source, err)
        assert "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("name", ["digits", "fashion-classic", "fashion-modern"])
def test_shipped_onnx_files_hold_their_checkpoints(name):
    """models/*/model.onnx, which the app serves without exporting: made from the checkpoint beside
    it (else `lenet export models/NAME --out models/NAME/model.onnx` makes it again)."""
    from lenet_core.export import checkpoint_sha256

    data = (ROOT / "models" / name / "model.onnx").read_bytes()
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert props["checkpoint_sha256"] == checkpoint_sha256(ROOT / "models" / name)
    check_against_torch(shipped(name), data)


def test_the_train_page_offers_a_runs_model_as_onnx(tmp_path, monkeypatch, tiny_data_dir):
    from streamlit.testing.v1 import AppTest

    from lenet_app import server
    from lenet_app.onnx_models import onnx_download
    from lenet_app.session import owner_of

    monkeypatch.setenv("LENET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LENET_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("LENET_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(4)
    model = LeNet(ODD)
    config = TrainConfig(model=ODD, dataset="mnist")
    run = Run.create(config, tmp_path / "runs", name="odd", owner=owner_of("browser-a"))
    run.save_checkpoint(Checkpoint(config, model, "mnist", lenet_core.data.DATASETS["mnist"][2]))
    run.set_status("finished", "Finished.")
    try:
        at = AppTest.from_file(str(ROOT / "lenet_lab.py"), default_timeout=60)
        at.session_state["lenet_session_token"] = "browser-a"
        at.run()
        at.switch_page("views/train.py").run()
        assert not at.exception, at.exception
        buttons = [b for b in at.get("download_button") if b.proto.label == "ONNX"]
        assert len(buttons) == 1
    finally:
        server.stop_executor()
    check_against_torch(model, onnx_download(run.path))  # what the button's click sends
    (run.path / "checkpoint.pt").write_bytes(b"damaged")
    assert onnx_download(run.path).startswith(b"LeNet Lab could not export this run's model: ")
